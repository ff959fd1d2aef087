"""The fake upstream's Anthropic Messages API (``POST /v1/messages``), stream and non-stream.

It answers exactly as the OpenAI side of the fake would (same scenarios, same default reply),
translated with the project's own Anthropic codecs, so tests can put an Anthropic target
behind the sidecar, or an Anthropic SDK in front of it, without a network.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.responses import Response

from proxy.demo.fake_scenario import MODEL_IDS, Scenario, approx_tokens, chat_last_user, new_id, pieces
from proxy.models.stream import Finish, StreamEvent, TextDelta, ToolCallDelta, Usage
from proxy.upstream.providers.anthropic import (
    anthropic_request_to_openai,
    openai_error_to_anthropic,
    openai_response_to_anthropic,
)
from proxy.upstream.providers.anthropic_stream import AnthropicStreamEncoder


def anthropic_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = openai_error_to_anthropic(
        {"error": {"message": message, "type": "fake", "param": None, "code": None}}, status
    )
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def messages(body: dict[str, Any], sc: Scenario, status: int) -> Response:
    from proxy.demo.fake_upstream import _finish, _reply_parts, _stream

    chat = anthropic_request_to_openai(body)
    model = str(body.get("model") or MODEL_IDS[0])
    text, calls = _reply_parts(sc, chat_last_user(chat.get("messages")), model)
    finish = sc.finish_reason or ("tool_calls" if calls else "stop")
    prompt = approx_tokens(orjson.dumps(chat.get("messages")).decode())
    completion = approx_tokens(" ".join([text or "", *(c["arguments"] for c in calls)]))
    usage = sc.usage or {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if not body.get("stream"):
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in calls
            ]
        completion_body = {
            "id": new_id("chatcmpl-fake-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage,
        }
        return _finish(openai_response_to_anthropic(completion_body), sc, status)
    encoder = AnthropicStreamEncoder(model, new_id("msg_fake"))
    events: list[StreamEvent] = [TextDelta(0, piece) for piece in pieces(text or "", sc.chunk_size)]
    for k, call in enumerate(calls):
        events.append(ToolCallDelta(0, k, "", call["id"], call["name"]))
        events += [ToolCallDelta(0, k, frag) for frag in pieces(call["arguments"], sc.chunk_size)]
    events += [Finish(0, finish), Usage(usage)]
    encoded = [encoder.encode([ev]) for ev in events]
    encoded = [chunk for chunk in encoded if chunk] + [encoder.encode_done()]
    return _stream(encoded, sc, b'event: content_block_delta\ndata: {"type": \n\n', status)
