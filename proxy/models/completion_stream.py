"""A whole chat completion as the ``chat.completion.chunk`` stream a provider would have sent.

For answers that exist whole before a streaming client asks for them (a cached answer, a stale
answer served by the fallback's cached tier): one chunk with the role and the text per choice,
one per tool call, one with the finish reason, a usage chunk when the request asked for it
(``stream_options.include_usage``), then ``[DONE]``. Wire format, so it lives below the chain,
beside the models: plugins may use it, and the upstream codecs parse what it produces.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson


def _event(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _choice(base: dict[str, Any], index: int, delta: dict[str, Any], finish: Any) -> bytes:
    return _event({**base, "choices": [{"index": index, "delta": delta, "finish_reason": finish}]})


def completion_to_sse(body: dict[str, Any], include_usage: bool) -> bytes:
    """``body`` (a ``chat.completion``) as an OpenAI chat completion stream, ``[DONE]`` included."""
    base = {
        "id": body.get("id") or f"chatcmpl-replay-{uuid.uuid4().hex[:16]}",
        "object": "chat.completion.chunk",
        "created": body.get("created") or int(time.time()),
        "model": body.get("model") or "",
    }
    if body.get("system_fingerprint"):
        base["system_fingerprint"] = body["system_fingerprint"]
    out: list[bytes] = []
    for choice in body.get("choices") or []:
        index = choice.get("index", 0)
        msg = choice.get("message") or {}
        delta: dict[str, Any] = {"role": "assistant", "content": msg.get("content")}
        if msg.get("refusal") is not None:
            delta["refusal"] = msg["refusal"]
        out.append(_choice(base, index, delta, None))
        for i, call in enumerate(msg.get("tool_calls") or []):
            piece = {
                "index": i,
                "id": call.get("id"),
                "type": call.get("type", "function"),
                "function": call.get("function") or {},
            }
            out.append(_choice(base, index, {"tool_calls": [piece]}, None))
        out.append(_choice(base, index, {}, choice.get("finish_reason")))
    if include_usage and isinstance(body.get("usage"), dict):
        out.append(_event({**base, "choices": [], "usage": body["usage"]}))
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)
