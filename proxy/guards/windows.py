"""Awaited windows: stream text released only after an async check or scan has seen it.

``HoldBack``'s transform is synchronous, so a guard whose check is a coroutine (moderation's
remote layers, PII output scanning in the CPU pool) cannot use it to *decide* on a window. This
buffer splits with a ``HoldBack`` policy (e.g. ``sentence_boundary``) and awaits ``settle`` on
each released window; it plugs into ``proxy.chain.TextStreamFilter`` as an ``AsyncTextBuffer``,
which keeps the per-choice ordering rules in one place. Order is kept because the chain awaits
one event at a time.

``hold=False`` is the "check after release" mode: text goes out at once and each window is
checked as it completes (no latency, but a violation is only caught after the client saw it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from proxy.chain import HoldBack
from proxy.chain.holdback import SplitPolicy

#: Given a window of text, returns what may be released (the same text, or a rewrite); may raise.
Settle = Callable[[str], Awaitable[str]]


class AwaitedWindow:
    """Per choice, per request. ``settle`` sees every character exactly once, window by window."""

    __slots__ = ("_hb", "_hold", "_settle")

    def __init__(self, split: SplitPolicy, settle: Settle, hold: bool = True) -> None:
        self._hb = HoldBack(split)
        self._settle = settle
        self._hold = hold

    @property
    def pending(self) -> str:
        return self._hb.pending if self._hold else ""

    async def feed(self, text: str) -> str:
        ready = self._hb.feed(text)
        if not self._hold:
            if ready:
                await self._settle(ready)
            return text
        return await self._settle(ready) if ready else ""

    async def flush(self, more: str = "") -> str:
        """Settle what is held (plus ``more``, text arriving with the end) as one last window."""
        rest = self._hb.flush() + more
        if not rest:
            return ""
        settled = await self._settle(rest)
        return settled if self._hold else ""
