"""Anthropic Messages streams <-> provider-neutral stream events.

* ``AnthropicStreamDecoder``: an Anthropic upstream's SSE -> events, which the OpenAI
  ``ChatStreamCodec`` re-encodes for an OpenAI client (template from ``openai_chunk_template``).
* ``AnthropicStreamEncoder``: events (from an OpenAI upstream) -> the SSE an Anthropic SDK client
  expects, with the block bookkeeping the protocol requires.

Unlike the OpenAI codecs these translate rather than round-trip, so nothing is passed through
verbatim: a ``RawEvent`` holds the *other* wire format and would break the client. Dropped on
decode: ``ping``, thinking / signature / citation deltas, server-tool blocks. Dropped on encode:
``RawEvent`` (e.g. Azure's ``prompt_filter_results``) and every choice but index 0 (a Messages
stream has one message; ``n > 1`` is refused when the request is translated).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from proxy.models.stream import ErrorEvent, Finish, StreamEvent, TextDelta, ToolCallDelta, Usage
from proxy.upstream.providers.anthropic import (
    error_object_to_anthropic,
    error_object_to_openai,
    finish_reason_to_anthropic,
    stop_reason_to_openai,
    usage_to_anthropic,
    usage_to_openai,
)
from proxy.upstream.sse import SSEEvent, encode_event, malformed

__all__ = ["AnthropicStreamDecoder", "AnthropicStreamEncoder"]


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


class AnthropicStreamDecoder:
    """Anthropic SSE -> events for choice 0. One instance per stream.

    ``message_id`` and ``model`` come from ``message_start`` for the OpenAI chunks' top-level
    fields; ``done`` is set by ``message_stop`` (the OpenAI codec's ``[DONE]`` is due then).
    """

    __slots__ = ("_calls", "_usage", "done", "message_id", "model")

    def __init__(self) -> None:
        self.message_id: str | None = None
        self.model: str | None = None
        self.done = False
        self._usage: dict[str, Any] = {}
        self._calls: dict[int, int] = {}  # content block index -> tool call index

    def openai_chunk_template(self, created: int | None = None) -> dict[str, Any]:
        """Top-level fields for ``ChatStreamCodec.template``: Anthropic events carry no id or model."""
        return {
            "id": self.message_id or f"msg_{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()) if created is None else created,
            "model": self.model or "",
        }

    def decode(self, sse: SSEEvent) -> list[StreamEvent]:
        payload = _loads(sse.data)
        if not isinstance(payload, dict):
            if not sse.data.strip():
                return []
            raise malformed(sse.data)
        kind = payload.get("type") or sse.event
        if kind == "message_start":
            message = payload.get("message") or {}
            self.message_id = message.get("id")
            self.model = message.get("model")
            self._usage.update({k: v for k, v in (message.get("usage") or {}).items() if v is not None})
            # OpenAI streams open with a role-only delta; some clients build the message from it.
            return [TextDelta(0, "", {"delta": {"role": "assistant"}})]
        if kind == "content_block_start":
            return self._block_start(payload)
        if kind == "content_block_delta":
            delta = payload.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                return [TextDelta(0, delta["text"])]
            call = self._calls.get(payload.get("index", 0))
            if delta.get("type") == "input_json_delta" and call is not None and delta.get("partial_json"):
                return [ToolCallDelta(0, call, delta["partial_json"])]
            return []
        if kind == "message_delta":
            # message_delta usage is cumulative; fields it omits keep their message_start value.
            usage = payload.get("usage") or {}
            self._usage.update({k: v for k, v in usage.items() if v is not None})
            events: list[StreamEvent] = []
            reason = (payload.get("delta") or {}).get("stop_reason")
            if reason is not None:
                events.append(Finish(0, stop_reason_to_openai(reason)))
            events.append(Usage(usage_to_openai(self._usage)))
            return events
        if kind == "message_stop":
            self.done = True
            return []
        if kind == "error":
            return [ErrorEvent(error_object_to_openai(payload.get("error")))]
        return []

    def _block_start(self, payload: dict[str, Any]) -> list[StreamEvent]:
        block = payload.get("content_block") or {}
        if block.get("type") == "text":
            return [TextDelta(0, block["text"])] if block.get("text") else []
        if block.get("type") == "tool_use":
            call = len(self._calls)
            self._calls[payload.get("index", 0)] = call
            # The API sends ``input: {}`` here and the JSON in deltas; a full input is kept.
            args = orjson.dumps(block["input"]).decode() if block.get("input") else ""
            return [ToolCallDelta(0, call, args, block.get("id"), block.get("name"))]
        return []


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    return encode_event(orjson.dumps(payload), kind)


class AnthropicStreamEncoder:
    """Events -> Anthropic SSE. One instance per stream.

    ``message_start`` is sent lazily, on the first event, so a Usage that arrives first still
    lands in it. Text opens a text block; each new tool call closes the open block and opens a
    ``tool_use`` block. OpenAI sends usage in a chunk *after* the finish chunk, while Anthropic
    carries both in one ``message_delta``: a ``Finish`` is held until the ``Usage`` or
    ``encode_done()``.
    """

    __slots__ = (
        "_blocks",
        "_closed",
        "_delta_sent",
        "_finished",
        "_next_block",
        "_open",
        "_open_kind",
        "_started",
        "_stop",
        "_usage",
        "message_id",
        "model",
    )

    def __init__(self, model: str, message_id: str | None = None) -> None:
        self.model = model
        self.message_id = message_id or f"msg_{uuid.uuid4().hex[:24]}"
        self._started = False
        self._open: int | None = None
        self._open_kind: str | None = None
        self._next_block = 0
        self._blocks: dict[int, int] = {}  # tool call index -> content block index
        self._usage: dict[str, Any] | None = None
        self._stop: str | None = None
        self._finished = False
        self._delta_sent = False
        self._closed = False

    def encode(self, events: list[StreamEvent]) -> bytes:
        out: list[bytes] = []
        for ev in events:
            if self._closed:
                break
            if isinstance(ev, TextDelta):
                if ev.index == 0 and not self._finished:
                    self._text(out, ev.text)
            elif isinstance(ev, ToolCallDelta):
                if ev.index == 0 and not self._finished:
                    self._tool(out, ev)
            elif isinstance(ev, Finish):
                if ev.index == 0 and not self._finished:
                    self._start(out)
                    self._close_block(out)
                    self._finished = True
                    self._stop = finish_reason_to_anthropic(ev.reason)
                    if self._usage is not None:
                        self._message_delta(out)
            elif isinstance(ev, Usage):
                self._usage = usage_to_anthropic(ev.data)
                if self._finished:
                    self._message_delta(out)
            elif isinstance(ev, ErrorEvent):
                # Anthropic ends a stream at an error event: no block stop, no message_stop.
                error = error_object_to_anthropic(ev.error)
                out.append(_event("error", {"type": "error", "error": error}))
                self._closed = True
            # RawEvent holds the other wire format: never forwarded.
        return b"".join(out)

    def encode_done(self) -> bytes:
        """End of the upstream stream: close what is open, then ``message_stop``.

        A stream that ended without a finish gets ``stop_reason: null`` rather than a guess.
        """
        if self._closed:
            return b""
        out: list[bytes] = []
        self._start(out)
        self._close_block(out)
        self._message_delta(out)
        out.append(_event("message_stop", {"type": "message_stop"}))
        self._closed = True
        return b"".join(out)

    def _start(self, out: list[bytes]) -> None:
        if self._started:
            return
        self._started = True
        usage = self._usage or {}
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": usage.get("input_tokens", 0),
                "output_tokens": 0,
                "cache_creation_input_tokens": usage.get("cache_creation_input_tokens", 0),
                "cache_read_input_tokens": usage.get("cache_read_input_tokens", 0),
            },
        }
        out.append(_event("message_start", {"type": "message_start", "message": message}))

    def _open_block(self, out: list[bytes], block: dict[str, Any], kind: str) -> int:
        self._close_block(out)
        index = self._next_block
        self._next_block += 1
        self._open, self._open_kind = index, kind
        out.append(
            _event(
                "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
            )
        )
        return index

    def _close_block(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(_event("content_block_stop", {"type": "content_block_stop", "index": self._open}))
            self._open, self._open_kind = None, None

    def _text(self, out: list[bytes], text: str) -> None:
        self._start(out)
        if not text:  # a role-only delta: nothing to show, and Anthropic has no empty blocks
            return
        if self._open_kind != "text":
            self._open_block(out, {"type": "text", "text": ""}, "text")
        delta = {"type": "text_delta", "text": text}
        out.append(
            _event(
                "content_block_delta", {"type": "content_block_delta", "index": self._open, "delta": delta}
            )
        )

    def _tool(self, out: list[bytes], ev: ToolCallDelta) -> None:
        self._start(out)
        index = self._blocks.get(ev.call_index)
        if index is None:
            block = {
                "type": "tool_use",
                "id": ev.id or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": ev.name or "",
                "input": {},
            }
            index = self._blocks[ev.call_index] = self._open_block(out, block, "tool")
        # OpenAI sends each call's fragments contiguously; a late fragment for an earlier call
        # still goes to that call's block (SDK accumulators index by block), best effort.
        if ev.arguments:
            delta = {"type": "input_json_delta", "partial_json": ev.arguments}
            out.append(
                _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            )

    def _message_delta(self, out: list[bytes]) -> None:
        if self._delta_sent:
            return
        self._delta_sent = True
        usage: dict[str, Any] = {"output_tokens": 0}
        if self._usage is not None:
            usage = {
                "output_tokens": self._usage["output_tokens"],
                "input_tokens": self._usage["input_tokens"],
                "cache_creation_input_tokens": self._usage["cache_creation_input_tokens"],
                "cache_read_input_tokens": self._usage["cache_read_input_tokens"],
            }
        payload = {
            "type": "message_delta",
            "delta": {"stop_reason": self._stop, "stop_sequence": None},
            "usage": usage,
        }
        out.append(_event("message_delta", payload))
