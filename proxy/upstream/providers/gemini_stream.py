"""Gemini ``streamGenerateContent?alt=sse`` -> provider-neutral stream events.

Each SSE event carries a whole ``GenerateContentResponse`` slice: text parts are deltas,
function calls arrive complete (one event per call, never split), ``usageMetadata`` is
cumulative and ``finishReason`` marks the end of a candidate. Gemini sends no ``[DONE]``: the
stream is complete once every candidate seen has finished, so ``done`` (the OpenAI codec's cue
for ``[DONE]``) is set then; a stream cut before that ends without ``[DONE]``, which the chain
reports as an incomplete upstream answer.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from proxy.models.stream import ErrorEvent, Finish, StreamEvent, TextDelta, ToolCallDelta, Usage
from proxy.upstream.providers.gemini import (
    finish_reason_to_openai,
    gemini_error_to_openai,
    new_call_id,
    usage_to_openai,
)
from proxy.upstream.sse import SSEEvent, malformed

__all__ = ["GeminiStreamDecoder"]


class GeminiStreamDecoder:
    """Gemini SSE -> events. One instance per stream; ``flush()`` at the end emits the usage."""

    __slots__ = ("_calls", "_finished", "_open", "_started", "_usage", "done", "message_id", "model")

    def __init__(self, model: str) -> None:
        self.model = model
        self.message_id: str | None = None
        self.done = False
        self._started = False
        self._usage: dict[str, Any] | None = None
        self._calls: dict[int, int] = {}  # candidate index -> tool calls so far
        self._open: set[int] = set()
        self._finished: set[int] = set()

    def openai_chunk_template(self, created: int | None = None) -> dict[str, Any]:
        return {
            "id": self.message_id or f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()) if created is None else created,
            "model": self.model,
        }

    def decode(self, sse: SSEEvent) -> list[StreamEvent]:
        if not sse.data.strip():
            return []
        try:
            payload = orjson.loads(sse.data)
        except orjson.JSONDecodeError:
            raise malformed(sse.data) from None
        if not isinstance(payload, dict):
            raise malformed(sse.data)
        if isinstance(payload.get("error"), dict):
            self.done = True
            return [
                ErrorEvent(gemini_error_to_openai(payload, int(payload["error"].get("code") or 500))["error"])
            ]
        self.message_id = self.message_id or payload.get("responseId")
        self.model = payload.get("modelVersion") or self.model
        if isinstance(payload.get("usageMetadata"), dict):
            self._usage = payload["usageMetadata"]
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            events.append(TextDelta(0, "", {"delta": {"role": "assistant"}}))
        candidates = payload.get("candidates") or ()
        for pos, cand in enumerate(candidates):
            events.extend(self._candidate(cand.get("index", pos), cand))
        if not candidates and (payload.get("promptFeedback") or {}).get("blockReason"):
            self._finished.add(0)
            events.append(Finish(0, "content_filter"))
        if self._finished and self._finished >= self._open:
            self.done = True
        return events

    def _candidate(self, index: int, cand: dict[str, Any]) -> list[StreamEvent]:
        self._open.add(index)
        events: list[StreamEvent] = []
        for part in (cand.get("content") or {}).get("parts") or ():
            if part.get("thought"):
                continue
            if isinstance(part.get("text"), str) and part["text"]:
                events.append(TextDelta(index, part["text"]))
            elif isinstance(part.get("functionCall"), dict):
                call = part["functionCall"]
                n = self._calls.get(index, 0)
                self._calls[index] = n + 1
                args = orjson.dumps(call.get("args") or {}).decode()
                events.append(
                    ToolCallDelta(index, n, args, call.get("id") or new_call_id(), call.get("name"))
                )
        reason = finish_reason_to_openai(cand.get("finishReason"))
        if reason is not None:
            if reason == "stop" and self._calls.get(index):
                reason = "tool_calls"
            self._finished.add(index)
            events.append(Finish(index, reason))
        return events

    def flush(self) -> list[StreamEvent]:
        """The usage, once, at the end (OpenAI sends it after the finish chunks)."""
        return [Usage(usage_to_openai(self._usage))] if self._usage is not None else []
