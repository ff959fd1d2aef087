"""Sliding-window counter arithmetic, shared by the in-memory and Redis backends.

Why a sliding-window counter rather than a token bucket: budgets here are mostly *amounts*
(tokens, dollars) reserved before a call and corrected after it, per window that users name
("100k tokens per minute", "$50 per day"). A sliding-window counter keeps exactly two numbers
per key and window (this window's total and the previous one's), so a reservation is one
increment, a correction is one increment of the *same* window's counter (exact, whatever time
passed), and the Redis version is a couple of INCRBYFLOATs in one Lua call. A token bucket
would need a refill rate per amount and makes after-the-fact corrections awkward. The estimate
weights the previous window by the part of it still inside the sliding window, which smooths
the burst-at-the-boundary problem of fixed windows (Cloudflare's published approach; error is
small when traffic is roughly uniform).
"""

from __future__ import annotations

import math
from typing import NamedTuple

WINDOWS: dict[str, int] = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "month": 30 * 86400,  # sliding 30 days, not calendar months
}


def window_index(now: float, window: int) -> int:
    return math.floor(now / window)


def estimate(prev: float, cur: float, now: float, window: int) -> float:
    """Usage inside the sliding window that ends ``now``."""
    elapsed = now - window_index(now, window) * window
    return prev * (1.0 - elapsed / window) + cur


def seconds_until_fits(
    prev: float, cur: float, now: float, window: int, limit: float, amount: float
) -> float | None:
    """How long until ``amount`` fits, with no other traffic; None if it never can."""
    if amount > limit:
        return None
    room = limit - amount
    start = window_index(now, window) * window
    if cur <= room:
        if prev <= 0:
            return 0.0
        # prev * (1 - (t - start)/w) + cur <= room
        t = start + window * (1.0 - (room - cur) / prev)
        return max(0.0, t - now)
    # Wait for the next window, where this window's total becomes the weighted previous one.
    t = start + window + window * (1.0 - room / cur)
    return max(0.0, t - now)


def seconds_until_reset(cur: float, prev: float, now: float, window: int) -> float:
    """Until the sliding window holds nothing of what is counted now (OpenAI's reset header)."""
    start = window_index(now, window) * window
    if cur > 0:
        return start + 2 * window - now
    if prev > 0:
        return start + window - now
    return 0.0


def format_duration(seconds: float) -> str:
    """OpenAI's reset format: ``1s``, ``6m0s``, ``1h2m3s``, ``120ms``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    total = round(seconds)
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


class WindowState(NamedTuple):
    """One limit's counters as read at decision time (immutable; a named tuple for the reason
    ``proxy.budget.backends.WindowCheck`` gives)."""

    prev: float
    cur: float
    now: float
    window: int
    limit: float

    @property
    def used(self) -> float:
        """``estimate(prev, cur, now, window)``, inlined: read for every limit of every budgeted
        request (fit check, headers), and the two calls cost more than the arithmetic."""
        now, window = self.now, self.window
        elapsed = now - math.floor(now / window) * window
        return self.prev * (1.0 - elapsed / window) + self.cur

    @property
    def remaining(self) -> float:
        return max(0.0, self.limit - self.used)

    def reset_after(self) -> float:
        return seconds_until_reset(self.cur, self.prev, self.now, self.window)
