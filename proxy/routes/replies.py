"""Shape a plugin's local ``Reply`` as the client's wire format (JSON or a stream)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from proxy.chain.plugin import Reply
from proxy.models.chat import Route
from proxy.upstream.sse import encode_event


def _chat_body(content: str, model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-local-{uuid.uuid4().hex[:16]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def _responses_body(content: str, model: str) -> dict[str, Any]:
    return {
        "id": f"resp_local_{uuid.uuid4().hex[:16]}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": model,
        "output": [
            {
                "type": "message",
                "id": f"msg_local_{uuid.uuid4().hex[:8]}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": content, "annotations": []}],
            }
        ],
        "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0},
    }


def reply_body(reply: Reply, route: Route, model: str) -> dict[str, Any]:
    if reply.body is not None:
        return reply.body
    content = reply.content or ""
    return _responses_body(content, model) if route is Route.RESPONSES else _chat_body(content, model)


def reply_stream(reply: Reply, route: Route, model: str) -> bytes:
    """The whole local reply as one SSE payload, in the shape the client's SDK expects."""
    if reply.stream is not None and route is Route.CHAT:
        return reply.stream
    body = reply_body(reply, route, model)
    if route is Route.RESPONSES:
        events: list[tuple[str, dict[str, Any]]] = [
            ("response.created", {"response": {**body, "status": "in_progress", "output": []}})
        ]
        item = body["output"][0]
        text = item["content"][0]["text"]
        events += [
            (
                "response.output_item.added",
                {"output_index": 0, "item": {**item, "content": [], "status": "in_progress"}},
            ),
            (
                "response.output_text.delta",
                {"item_id": item["id"], "output_index": 0, "content_index": 0, "delta": text, "logprobs": []},
            ),
            (
                "response.output_text.done",
                {"item_id": item["id"], "output_index": 0, "content_index": 0, "text": text, "logprobs": []},
            ),
            ("response.output_item.done", {"output_index": 0, "item": item}),
            ("response.completed", {"response": body}),
        ]
        return b"".join(
            encode_event(orjson.dumps({"type": kind, "sequence_number": i, **data}), kind)
            for i, (kind, data) in enumerate(events)
        )
    base: dict[str, Any] = {k: body[k] for k in ("id", "created", "model") if k in body}
    base["object"] = "chat.completion.chunk"
    message = body["choices"][0]["message"] if body.get("choices") else {"content": ""}
    chunks = [
        {
            **base,
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": message.get("content") or ""},
                    "finish_reason": None,
                }
            ],
        },
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    return b"".join(encode_event(orjson.dumps(c)) for c in chunks) + b"data: [DONE]\n\n"
