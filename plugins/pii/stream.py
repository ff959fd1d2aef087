"""Streamed answers: restore placeholders per choice, then (``scan_output``) scan each sentence.

Both run inside the one per-choice ``TextStreamFilter`` (``proxy.chain.textfilter``): the restore
is a synchronous ``HoldBack`` (held only from an unclosed ``<`` or ``[``), the output scan an
``AwaitedWindow`` (``proxy.guards``) whose windows are scanned through the plugin's inline-or-pool
path before they are released, so a model call never runs on the event loop and output PII is
caught before it leaves. With both, each choice's buffer chains them (``_RestoreThenScan``).
Tool-call arguments (``restore_tool_arguments``) are restored per call, JSON-escaped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from proxy.chain import HoldBack, RequestContext, TextStreamFilter, sentence_boundary
from proxy.detectors.pii import Span, restore, stream_split
from proxy.guards import AwaitedWindow
from proxy.models import Finish, StreamEvent, ToolCallDelta

from .vault import PiiState

#: ``PiiPlugin.scan_output``: (texts, state) -> (texts, new spans).
ScanOutput = Callable[[Sequence[str], PiiState], Awaitable[tuple[list[str], list[Span]]]]


def record_restore(ctx: RequestContext, restored: int, unknown: int) -> None:
    if restored or unknown:
        ctx.record(
            "restore",
            "restore",
            detail={"restored": restored, "unknown_placeholders": unknown},
        )


class _RestoreThenScan:
    """One choice's buffer when both restore and scanning are on: restored text feeds the scan."""

    __slots__ = ("_restore", "_scan")

    def __init__(self, restore_hb: HoldBack, scan: AwaitedWindow) -> None:
        self._restore, self._scan = restore_hb, scan

    @property
    def pending(self) -> str:
        return self._restore.pending + self._scan.pending

    async def feed(self, text: str) -> str:
        return await self._scan.feed(self._restore.feed(text))

    async def flush(self) -> str:
        return await self._scan.flush(self._restore.flush())


class PiiStream:
    """Per request: tool-argument restore in front of the per-choice text filter."""

    def __init__(
        self,
        ctx: RequestContext,
        state: PiiState,
        scan: ScanOutput | None,
        record_output: Callable[[RequestContext, Sequence[Span]], None],
        max_hold: int,
        tool_args: bool,
    ) -> None:
        self._ctx, self._state, self._scan_output = ctx, state, scan
        self._record_output = record_output
        self._restored = self._unknown = 0
        self.hits: list[Span] = []
        mapping = state.mapping
        split = sentence_boundary(max_hold)
        if mapping and scan is not None:
            self._text = TextStreamFilter(
                lambda: _RestoreThenScan(
                    HoldBack(stream_split, self._restore_text), AwaitedWindow(split, self._scan)
                )
            )
        elif scan is not None:
            self._text = TextStreamFilter(lambda: AwaitedWindow(split, self._scan))
        else:
            self._text = TextStreamFilter(lambda: HoldBack(stream_split, self._restore_text))
        self._tools: dict[tuple[int, int], HoldBack] = {}
        self._tool_args = tool_args and bool(mapping)

    def _restore_text(self, text: str) -> str:
        out, r, u = restore(text, self._state.mapping)
        self._restored += r
        self._unknown += u
        return out

    def _restore_json(self, text: str) -> str:
        out, r, u = restore(text, self._state.mapping, escape=True)
        self._restored += r
        self._unknown += u
        return out

    async def _scan(self, text: str) -> str:
        assert self._scan_output is not None
        (scanned,), hits = await self._scan_output([text], self._state)
        self.hits += hits
        return scanned

    def _flush_tools(self, index: int | None) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for (i, call), hb in list(self._tools.items()):
            if index is None or i == index:
                rest = hb.flush()
                if rest:
                    out.append(ToolCallDelta(i, call, rest))
                del self._tools[(i, call)]
        return out

    async def _through(self, events: Sequence[StreamEvent]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in events:
            out.extend(await self._text.on_event(ev))
        return out

    async def on_event(self, event: StreamEvent) -> Sequence[StreamEvent]:
        if self._tool_args and isinstance(event, ToolCallDelta):
            key = (event.index, event.call_index)
            hb = self._tools.get(key)
            if hb is None:
                hb = self._tools[key] = HoldBack(stream_split, self._restore_json)
            return await self._text.on_event(replace(event, arguments=hb.feed(event.arguments)))
        if self._tool_args and isinstance(event, Finish):
            return await self._through([*self._flush_tools(event.index), event])
        return await self._text.on_event(event)

    async def on_end(self) -> Sequence[StreamEvent]:
        out = await self._through(self._flush_tools(None))
        out.extend(await self._text.on_end())
        record_restore(self._ctx, self._restored, self._unknown)
        if self._scan_output is not None:
            self._record_output(self._ctx, self.hits)
        return out
