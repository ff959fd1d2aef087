"""A ready-made stream filter for plugins that rewrite or inspect streamed text.

It keeps one ``HoldBack`` per choice index (choices stream independently and interleave), and
lets any non-text event of a choice (tool call, finish) pass only after the text held back
before it, so the client never sees events out of order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from proxy.chain.holdback import HoldBack
from proxy.models.stream import Finish, StreamEvent, TextDelta, ToolCallDelta


class TextStreamFilter:
    """Per-request filter: ``make_holdback`` builds a fresh HoldBack for each choice."""

    __slots__ = ("_extra", "_held", "_make")

    def __init__(self, make_holdback: Callable[[], HoldBack]) -> None:
        self._make = make_holdback
        self._held: dict[int, HoldBack] = {}
        # Wire fields of the last delta per choice (e.g. Responses API item_id/content_index),
        # so text released later is encoded into the same output part.
        self._extra: dict[int, Mapping[str, Any] | None] = {}

    def _flush(self, index: int) -> list[StreamEvent]:
        hb = self._held.get(index)
        if hb is None:
            return []
        rest = hb.flush()
        return [TextDelta(index, rest, self._extra.get(index))] if rest else []

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
            if event.extra is not None:
                self._extra[event.index] = event.extra
            released = hb.feed(event.text)
            if released or event.extra:
                return [TextDelta(event.index, released, event.extra)]
            return []
        if isinstance(event, (Finish, ToolCallDelta)):
            return [*self._flush(event.index), event]
        return [*self._flush_all(), event]

    async def on_end(self) -> Sequence[StreamEvent]:
        return self._flush_all()
