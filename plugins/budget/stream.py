"""The budget's stream filter: it only watches, it never holds text back.

It collects the streamed text (the fallback count when the provider reports no usage) and drops
the usage chunk the budget asked the provider for when the client did not ask for it itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from plugins.budget.booking import Booking
from proxy.models import StreamEvent, TextDelta, Usage


class UsageFilter:
    """Collects streamed text (fallback count) and hides the usage chunk the client did not ask for."""

    __slots__ = ("_booking",)

    def __init__(self, booking: Booking) -> None:
        self._booking = booking

    async def on_event(self, event: StreamEvent) -> Sequence[StreamEvent]:
        if isinstance(event, TextDelta):
            self._booking.streamed_text.append(event.text)
        elif isinstance(event, Usage) and not self._booking.wants_usage:
            return []
        return [event]

    async def on_end(self) -> Sequence[StreamEvent]:
        return []
