"""A ready-made stream filter for plugins that rewrite or inspect streamed text.

It keeps one ``TextBuffer`` per choice index (choices stream independently and interleave), and
lets any non-text event of a choice (tool call, finish) pass only after the text held back
before it, so the client never sees events out of order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from proxy.chain.holdback import TextBuffer
from proxy.models.stream import Finish, StreamEvent, TextDelta, ToolCallDelta


class TextStreamFilter:
    """Per-request filter: ``make_holdback`` builds a fresh TextBuffer for each choice."""

    __slots__ = ("_held", "_make", "_meta")

    def __init__(self, make_holdback: Callable[[], TextBuffer]) -> None:
        self._make = make_holdback
        self._held: dict[int, TextBuffer] = {}
        # Location of the last delta per choice (Responses API item_id / content_index), so
        # text released later is encoded into the same output part.
        self._meta: dict[int, Mapping[str, Any] | None] = {}

    def _flush(self, index: int) -> list[StreamEvent]:
        hb = self._held.get(index)
        if hb is None:
            return []
        rest = hb.flush()
        return [TextDelta(index, rest, None, self._meta.get(index))] if rest else []

    def _flush_all(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for index in sorted(self._held):
            out.extend(self._flush(index))
        return out

    async def on_event(self, event: StreamEvent) -> Sequence[StreamEvent]:
        if isinstance(event, TextDelta):
            hb = self._held.get(event.index)
            if hb is None:
                hb = self._held[event.index] = self._make()
            if event.meta is not None:
                self._meta[event.index] = event.meta
            untouched = not hb.pending
            released = hb.feed(event.text)
            if untouched and released == event.text:
                return [event]  # passed as it came: its text-bound fields still apply
            # Held or rewritten: fields bound to the original text (logprobs ...) must go.
            if released:
                return [TextDelta(event.index, released, None, event.meta)]
            if event.extra and "role" in (event.extra.get("delta") or {}):
                return [
                    TextDelta(event.index, "", {"delta": {"role": event.extra["delta"]["role"]}}, event.meta)
                ]
            return []
        if isinstance(event, (Finish, ToolCallDelta)):
            return [*self._flush(event.index), event]
        return [*self._flush_all(), event]

    async def on_end(self) -> Sequence[StreamEvent]:
        return self._flush_all()
