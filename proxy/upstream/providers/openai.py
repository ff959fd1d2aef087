"""OpenAI wire formats <-> provider-neutral stream events.

Two codecs, used only when at least one stream filter is active (otherwise the bytes are
piped through untouched):

* ``ChatStreamCodec`` for ``chat.completion.chunk`` streams;
* ``ResponsesStreamCodec`` for Responses API events.

Decoding keeps every field it does not interpret (``extra`` on events, the chunk template,
``RawEvent`` for unknown events), so re-encoding preserves what the provider sent. One chunk
may carry several events (several choices, content plus finish); they are re-encoded one
chunk per event, which every OpenAI client accepts.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.models.stream import ErrorEvent, Finish, RawEvent, StreamEvent, TextDelta, ToolCallDelta, Usage
from proxy.upstream.sse import SSEEvent, SSEParser, encode_event, malformed

DONE = b"[DONE]"
_DONE_EVENT = b"data: [DONE]\n\n"


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


class ChatStreamCodec:
    """``chat.completion.chunk`` SSE <-> events. One instance per stream."""

    __slots__ = ("done", "ended", "template")

    def __init__(self) -> None:
        self.template: dict[str, Any] | None = None
        self.done = False
        #: the upstream ended the stream properly: ``[DONE]``, or an in-band error event
        self.ended = False

    def decode(self, sse: SSEEvent) -> list[StreamEvent]:
        data = sse.data
        if data == DONE:
            self.done = self.ended = True
            return []
        chunk = _loads(data)
        if not isinstance(chunk, dict):
            if not data.strip():
                return []  # an empty event (a keep-alive): nothing to forward
            raise malformed(data)
        if isinstance(chunk.get("error"), dict):
            self.ended = True
            return [ErrorEvent(chunk["error"])]
        events: list[StreamEvent] = []
        for choice in chunk.get("choices") or ():
            events.extend(self._choice_events(choice))
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            events.append(Usage(usage))
        if not events:
            # Nothing for the filters (e.g. Azure's prompt_filter_results chunk): pass it verbatim,
            # and do not let its placeholder id/model become the template of later chunks.
            return [RawEvent(encode_event(data, sse.event))]
        # The latest chunk's top-level fields (id, model, fingerprint, vendor extras) are what
        # re-encoded chunks carry.
        self.template = {k: v for k, v in chunk.items() if k not in ("choices", "usage")}
        return events

    @staticmethod
    def _choice_events(choice: dict[str, Any]) -> list[StreamEvent]:
        index = choice.get("index", 0)
        delta = choice.get("delta") or {}
        events: list[StreamEvent] = []
        content = delta.get("content")
        # A non-string content (``null`` beside tool calls) is kept as it came.
        other_delta = {
            k: v
            for k, v in delta.items()
            if k != "tool_calls" and not (k == "content" and isinstance(content, str))
        }
        other_choice = {
            k: v for k, v in choice.items() if k not in ("index", "delta", "finish_reason") and v is not None
        }
        tool_calls = delta.get("tool_calls")
        if (
            isinstance(content, str)
            or other_delta
            or other_choice
            or not (tool_calls or choice.get("finish_reason"))
        ):
            extra = {"delta": other_delta, "choice": other_choice} if (other_delta or other_choice) else None
            events.append(TextDelta(index, content if isinstance(content, str) else "", extra))
        for call in tool_calls or ():
            fn = call.get("function") or {}
            events.append(
                ToolCallDelta(
                    index,
                    call.get("index", 0),
                    fn.get("arguments") or "",
                    call.get("id"),
                    fn.get("name"),
                    {k: v for k, v in call.items() if k not in ("index", "id", "function")} or None,
                )
            )
        if choice.get("finish_reason") is not None:
            events.append(Finish(index, choice["finish_reason"]))
        return events

    def _chunk(self, **fields: Any) -> bytes:
        chunk = dict(self.template or {"object": "chat.completion.chunk"})
        chunk.update(fields)
        return encode_event(orjson.dumps(chunk))

    def encode(self, events: list[StreamEvent]) -> bytes:
        out: list[bytes] = []
        for ev in events:
            if isinstance(ev, TextDelta):
                extra = ev.extra or {}
                delta = dict(extra.get("delta") or {})
                if ev.text or "content" not in delta:
                    delta["content"] = ev.text
                choice = {
                    "index": ev.index,
                    "delta": delta,
                    **(extra.get("choice") or {}),
                    "finish_reason": None,
                }
                out.append(self._chunk(choices=[choice]))
            elif isinstance(ev, ToolCallDelta):
                call: dict[str, Any] = {"index": ev.call_index, **(ev.extra or {})}
                fn: dict[str, Any] = {"arguments": ev.arguments}
                if ev.id is not None:
                    call["id"] = ev.id
                    call.setdefault("type", "function")
                if ev.name is not None:
                    fn["name"] = ev.name
                call["function"] = fn
                out.append(
                    self._chunk(
                        choices=[{"index": ev.index, "delta": {"tool_calls": [call]}, "finish_reason": None}]
                    )
                )
            elif isinstance(ev, Finish):
                out.append(
                    self._chunk(choices=[{"index": ev.index, "delta": {}, "finish_reason": ev.reason}])
                )
            elif isinstance(ev, Usage):
                out.append(self._chunk(choices=[], usage=dict(ev.data)))
            elif isinstance(ev, ErrorEvent):
                out.append(encode_event(orjson.dumps({"error": dict(ev.error)})))
            else:
                out.append(ev.data)
        return b"".join(out)

    def encode_done(self) -> bytes:
        return _DONE_EVENT if self.done else b""


#: Events after which a Responses API stream is over (it sends no ``[DONE]``).
RESPONSES_TERMINAL_EVENTS = frozenset(
    {"response.completed", "response.incomplete", "response.failed", "error"}
)

_TEXT_DONE_EVENTS = frozenset(
    {
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
        "response.incomplete",
        "response.failed",
    }
)


class ResponsesStreamCodec:
    """Responses API events <-> events.

    Only ``response.output_text.delta`` becomes a ``TextDelta``; every other event passes as
    a ``RawEvent``. Events that repeat the full text (``output_text.done``, ``completed`` ...)
    are patched with the text the filters actually let through, so a redaction in the deltas
    cannot leak back through the final summary event.
    """

    __slots__ = ("_last_seq", "_sent", "done", "ended")

    _META = ("item_id", "content_index")

    def __init__(self) -> None:
        self.done = False
        #: a terminal event arrived (``response.completed`` / ``incomplete`` / ``failed``,
        #: ``error``, or ``[DONE]``): an end without one is an upstream failure
        self.ended = False
        self._sent: dict[tuple[int, int], list[str]] = {}
        self._last_seq = 0

    def decode(self, sse: SSEEvent) -> list[StreamEvent]:
        if sse.data == DONE:
            self.done = self.ended = True
            return []
        payload = _loads(sse.data)
        if not isinstance(payload, dict):
            if not sse.data.strip():
                return []
            raise malformed(sse.data)
        kind = payload.get("type")
        if kind in RESPONSES_TERMINAL_EVENTS:
            self.ended = True
        if isinstance(payload.get("sequence_number"), int):
            self._last_seq = payload["sequence_number"]
        if kind == "response.output_text.delta" and isinstance(payload.get("delta"), str):
            meta = {k: payload[k] for k in self._META if k in payload}
            extra = {
                k: v for k, v in payload.items() if k not in ("delta", "output_index", "type", *self._META)
            }
            return [TextDelta(int(payload.get("output_index", 0)), payload["delta"], extra, meta)]
        if kind == "error":
            return [ErrorEvent({k: v for k, v in payload.items() if k != "type"})]
        return [RawEvent(encode_event(sse.data, sse.event), kind if isinstance(kind, str) else None)]

    def _patch(self, payload: dict[str, Any]) -> None:
        kind = payload["type"]
        if kind == "response.output_text.done":
            key = (int(payload.get("output_index", 0)), int(payload.get("content_index", 0)))
            self._replace_text(payload, key)
        elif kind == "response.content_part.done":
            key = (int(payload.get("output_index", 0)), int(payload.get("content_index", 0)))
            part = payload.get("part")
            if isinstance(part, dict):
                self._replace_text(part, key)
        elif kind == "response.output_item.done":
            self._patch_item(int(payload.get("output_index", 0)), payload.get("item"))
        else:
            response = payload.get("response")
            if isinstance(response, dict):
                for oi, item in enumerate(response.get("output") or ()):
                    self._patch_item(oi, item)

    def _patch_item(self, output_index: int, item: Any) -> None:
        if not isinstance(item, dict):
            return
        for ci, part in enumerate(item.get("content") or ()):
            if isinstance(part, dict):
                self._replace_text(part, (output_index, ci))

    def _replace_text(self, holder: dict[str, Any], key: tuple[int, int]) -> None:
        """Put the text the client really got; logprobs of a changed text would leak the original."""
        if key not in self._sent or "text" not in holder:
            return
        sent = "".join(self._sent[key])
        if holder["text"] != sent:
            holder["text"] = sent
            if holder.get("logprobs"):
                holder["logprobs"] = []

    def encode(self, events: list[StreamEvent]) -> bytes:
        out: list[bytes] = []
        for ev in events:
            if isinstance(ev, TextDelta):
                meta = ev.meta or {}
                key = (ev.index, int(meta.get("content_index", 0)))
                self._sent.setdefault(key, []).append(ev.text)
                # Text a filter released carries no extra: give it the fields clients require.
                extra = ev.extra or {"sequence_number": self._last_seq, "logprobs": []}
                payload = {
                    "type": "response.output_text.delta",
                    **extra,
                    **meta,
                    "output_index": ev.index,
                    "delta": ev.text,
                }
                out.append(encode_event(orjson.dumps(payload), "response.output_text.delta"))
            elif isinstance(ev, RawEvent):
                if ev.event in _TEXT_DONE_EVENTS and self._sent:
                    sse = _single_event(ev.data)
                    done = _loads(sse) if sse is not None else None
                    if isinstance(done, dict):
                        self._patch(done)
                        out.append(encode_event(orjson.dumps(done), ev.event))
                        continue
                out.append(ev.data)
            elif isinstance(ev, ErrorEvent):
                # The event's own ``type`` is "error" (an error object's type must not replace it).
                payload = {**{k: v for k, v in ev.error.items() if k != "type"}, "type": "error"}
                out.append(encode_event(orjson.dumps(payload), "error"))
            # Usage / Finish / ToolCallDelta are not produced by this decoder.
        return b"".join(out)

    def encode_done(self) -> bytes:
        return _DONE_EVENT if self.done else b""


def _single_event(raw: bytes) -> bytes | None:
    """The data of one encoded SSE event (all its ``data:`` lines, joined as the spec says)."""
    events = SSEParser().feed(raw)
    return events[0].data if events else None
