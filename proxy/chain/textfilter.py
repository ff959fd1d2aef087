"""The per-choice text stream filter: one implementation for every plugin that holds text back.

It keeps one text buffer per choice index (choices stream independently and interleave), and
lets any non-text event of a choice (tool call, finish) pass only after the text held back
before it, so the client never sees events out of order.

The buffer may be synchronous (``HoldBack``, ``RegexRewriter``: a pure rewrite) or asynchronous
(``AsyncTextBuffer``: a window that must be *awaited* before it is released, e.g. a moderation
check or a PII scan that runs in the CPU pool). Guards used to carry their own copies of this
loop because ``HoldBack``'s transform is synchronous; they now all pass an async buffer here
(``proxy.guards`` has the ready-made ones), so hold-back semantics live in one place.

Why it lives in ``proxy.chain`` and not ``proxy.guards``: any plugin (not only a content guard)
that rewrites streamed text needs it, next to ``HoldBack``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from proxy.chain.holdback import TextBuffer
from proxy.models.stream import Finish, StreamEvent, TextDelta, ToolCallDelta


class AsyncTextBuffer(Protocol):
    """A per-choice buffer whose release is awaited (a check or scan decides what goes out)."""

    @property
    def pending(self) -> str: ...

    async def feed(self, text: str) -> str: ...

    async def flush(self) -> str: ...


AnyTextBuffer = TextBuffer | AsyncTextBuffer


def role_only(event: TextDelta) -> list[StreamEvent]:
    """The OpenAI ``delta.role`` of a delta whose text is held back or dropped, as an empty delta.

    The first chat chunk carries the role; a client SDK expects it even when the text it came
    with is still held, so a filter that withholds text passes the role on its own."""
    role = ((event.extra or {}).get("delta") or {}).get("role")
    return [TextDelta(event.index, "", {"delta": {"role": role}}, event.meta)] if role else []


class TextStreamFilter:
    """Per-request filter: ``make_holdback`` builds a fresh (sync or async) buffer for each choice."""

    __slots__ = ("_held", "_make", "_meta")

    def __init__(self, make_holdback: Callable[[], AnyTextBuffer]) -> None:
        self._make = make_holdback
        self._held: dict[int, AnyTextBuffer] = {}
        # Location of the last delta per choice (Responses API item_id / content_index), so
        # text released later is encoded into the same output part.
        self._meta: dict[int, Mapping[str, Any] | None] = {}

    async def _flush(self, index: int) -> list[StreamEvent]:
        hb = self._held.get(index)
        if hb is None:
            return []
        out = hb.flush()
        rest = out if isinstance(out, str) else await out
        return [TextDelta(index, rest, None, self._meta.get(index))] if rest else []

    async def _flush_all(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for index in sorted(self._held):
            out.extend(await self._flush(index))
        return out

    async def on_event(self, event: StreamEvent) -> Sequence[StreamEvent]:
        if isinstance(event, TextDelta):
            hb = self._held.get(event.index)
            if hb is None:
                hb = self._held[event.index] = self._make()
            if event.meta is not None:
                self._meta[event.index] = event.meta
            untouched = not hb.pending
            fed = hb.feed(event.text)  # a sync buffer's str costs no extra coroutine
            released = fed if isinstance(fed, str) else await fed
            if untouched and released == event.text:
                return [event]  # passed as it came: its text-bound fields still apply
            # Held or rewritten: fields bound to the original text (logprobs ...) must go.
            if released:
                return [TextDelta(event.index, released, None, event.meta)]
            return role_only(event)
        if isinstance(event, (Finish, ToolCallDelta)):
            return [*(await self._flush(event.index)), event]
        return [*(await self._flush_all()), event]

    async def on_end(self) -> Sequence[StreamEvent]:
        return await self._flush_all()
