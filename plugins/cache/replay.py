"""Stream <-> non-stream: one stored form (a chat completion body) for both kinds of clients.

A streamed answer is assembled from the stream events the cache step saw (after the guards)
into a chat completion; a stored answer is replayed to a streaming client as
``chat.completion.chunk`` SSE events, with a usage chunk when the request asked for one
(``stream_options.include_usage``), and ``[DONE]``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from proxy.models.stream import ErrorEvent, Finish, StreamEvent, TextDelta, ToolCallDelta, Usage


def complete(body: dict[str, Any]) -> bool:
    """A whole answer: at least one choice, and every choice ended with a finish reason."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        return False
    return all(isinstance(c, dict) and c.get("finish_reason") is not None for c in choices)


def text_only(body: dict[str, Any]) -> bool:
    """One choice with plain text (what the Anthropic stream replay of a local reply can carry)."""
    choices = body.get("choices") or []
    if len(choices) != 1:
        return False
    msg = choices[0].get("message") or {}
    return not msg.get("tool_calls") and isinstance(msg.get("content"), str)


def _event(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _choice(base: dict[str, Any], index: int, delta: dict[str, Any], finish: Any) -> bytes:
    return _event({**base, "choices": [{"index": index, "delta": delta, "finish_reason": finish}]})


def to_sse(body: dict[str, Any], include_usage: bool) -> bytes:
    """The stored answer as an OpenAI chat completion stream."""
    base = {
        "id": body.get("id") or f"chatcmpl-cache-{uuid.uuid4().hex[:16]}",
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


class Assembler:
    """Collects one stream's events into a chat completion body (None when it was not whole)."""

    def __init__(self) -> None:
        self._text: dict[int, list[str]] = {}
        self._calls: dict[int, dict[int, dict[str, Any]]] = {}
        self._finish: dict[int, str | None] = {}
        self._usage: dict[str, Any] | None = None
        self.broken = False

    def see(self, ev: StreamEvent) -> None:
        if isinstance(ev, TextDelta):
            self._text.setdefault(ev.index, []).append(ev.text)
        elif isinstance(ev, ToolCallDelta):
            self._text.setdefault(ev.index, [])
            call = self._calls.setdefault(ev.index, {}).setdefault(
                ev.call_index, {"id": None, "type": "function", "function": {"name": None, "arguments": ""}}
            )
            if ev.id is not None:
                call["id"] = ev.id
            if ev.name is not None:
                call["function"]["name"] = ev.name
            call["function"]["arguments"] += ev.arguments
        elif isinstance(ev, Finish):
            self._text.setdefault(ev.index, [])
            self._finish[ev.index] = ev.reason
        elif isinstance(ev, Usage):
            self._usage = dict(ev.data)
        elif isinstance(ev, ErrorEvent):
            self.broken = True

    def body(self, model: str) -> dict[str, Any] | None:
        if self.broken or not self._text:
            return None
        choices = []
        for index in sorted(self._text):
            if self._finish.get(index) is None:
                return None
            calls = self._calls.get(index)
            message: dict[str, Any] = {"role": "assistant", "content": "".join(self._text[index]) or None}
            if calls:
                message["tool_calls"] = [calls[i] for i in sorted(calls)]
            elif message["content"] is None:
                message["content"] = ""
            choices.append({"index": index, "message": message, "finish_reason": self._finish[index]})
        return {
            "id": f"chatcmpl-cache-{uuid.uuid4().hex[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": self._usage,
        }
