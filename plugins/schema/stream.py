"""The ``schema`` stream filter: act on the wrapper's verdict up front, or validate the stream at the end."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from proxy.chain import RequestContext, role_only
from proxy.contracts import Plan, StreamAssembler, evaluate
from proxy.models import Finish, RawEvent, Route, StreamEvent, TextDelta

from .repair import Settled

if TYPE_CHECKING:
    from .plugin import SchemaPlugin

_TEXT_DONE = frozenset(
    {"response.output_text.done", "response.content_part.done", "response.output_item.done"}
)


class SchemaStream:
    """Per-request stream filter.

    With the wrapper's verdict (``buffer``, enforce) it acts on the first event, before any
    byte reached the client, so a rejection is still a proper HTTP 502. Without one
    (``validate_at_end``, or shadow) it assembles the stream and acts at the end: a rejection
    then becomes the in-band error event.
    """

    def __init__(
        self, plugin: SchemaPlugin, plan: Plan, ctx: RequestContext, settled: Settled | None
    ) -> None:
        self._plugin = plugin
        self._plan = plan
        self._ctx = ctx
        self._settled = settled
        self._acted = False
        self._assembler = StreamAssembler() if settled is None else None
        self._normalized = dict(settled.verdict.normalized) if settled is not None else {}
        self._responses = ctx.route is Route.RESPONSES
        self._where: dict[int, tuple[int, Any]] = {}  # choice -> (event index, meta) of its text

    async def on_event(self, event: StreamEvent) -> Sequence[StreamEvent]:
        if self._assembler is not None:
            self._assembler.feed(event)
            return [event]
        if not self._acted:
            self._acted = True
            assert self._settled is not None
            self._plugin.act(self._plan, self._settled.verdict, self._settled.attempts, self._ctx)
        if not self._normalized:
            return [event]
        # Lenient extraction found clean JSON: swallow the text as it came, and put the clean
        # JSON where the text ends (chat: before the choice's finish; Responses: before the
        # first "done" event, which the codec then patches to what the client really got).
        if isinstance(event, TextDelta):
            choice = 0 if self._responses else event.index
            if choice not in self._normalized:
                return [event]
            self._where.setdefault(choice, (event.index, event.meta))
            return role_only(event)
        if isinstance(event, Finish) and event.index in self._normalized:
            return [*self._release(event.index), event]
        if isinstance(event, RawEvent) and event.event in _TEXT_DONE:
            return [*self._release(None), event]
        return [event]

    def _release(self, choice: int | None) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for key in sorted(self._normalized) if choice is None else [choice]:
            text = self._normalized.pop(key)
            index, meta = self._where.get(key, (key, None))
            out.append(TextDelta(index, text, None, meta))
        return out

    async def on_end(self) -> Sequence[StreamEvent]:
        if self._assembler is not None:
            verdict = evaluate(self._plan, self._assembler.output())
            self._plugin.act(self._plan, verdict, 1, self._ctx)
            return []
        return self._release(None)
