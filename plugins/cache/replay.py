"""Stream <-> non-stream: one stored form (a chat completion body) for both kinds of clients.

A streamed answer is assembled from the stream events the cache step saw (after the guards)
into a chat completion; replaying a stored answer to a streaming client is a wire-format job,
done below the chain by ``proxy.models.completion_stream``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

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
