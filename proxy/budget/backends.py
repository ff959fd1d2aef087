"""Budget state: the backend protocol and the in-memory backend (the embedded default).

Every check of one request is decided in one atomic step (``reserve``): either all limits
admit the request and all are charged, or none is. That is what makes several limits per
request safe under concurrency, and what the Redis backend does in one Lua call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from proxy.budget.windows import WindowState, window_index


class BackendUnavailable(Exception):
    """The shared state cannot be reached (Redis down or too slow)."""


class WindowCheck(NamedTuple):
    """Charge ``amount`` to the sliding window ``window`` (seconds) of ``key``, up to ``limit``.

    These request-path records are immutable named tuples rather than frozen dataclasses: a
    frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, about 1 µs per
    object, and every budgeted request builds several (issue 17). ``Charge`` stays a dataclass:
    its ``index`` field would shadow ``tuple.index``."""

    key: str
    window: int
    limit: float
    amount: float


class SlotCheck(NamedTuple):
    """Hold one of ``limit`` concurrent slots of ``key`` as lease ``lease_id`` (expires after ``ttl``)."""

    key: str
    limit: int
    lease_id: str
    ttl: float


@dataclass(frozen=True, slots=True)
class Charge:
    """Where a reservation was booked, so a later correction hits the same window counter."""

    counter: str
    window: int
    index: int


@dataclass
class Reservation:
    allowed: bool
    states: list[WindowState]  # per window check: counters after charging (or as found, if denied)
    charges: list[Charge]  # per window check
    slot_counts: list[int] = field(default_factory=list)  # per slot check: holders after acquiring
    denied_window: int | None = None  # index of the first window check that did not fit
    denied_slot: int | None = None  # index of the first slot check that was full


def counter_key(key: str, window: int, index: int) -> str:
    return f"{key}:w{window}:{index}"


class Backend(Protocol):
    async def reserve(self, windows: Sequence[WindowCheck], slots: Sequence[SlotCheck]) -> Reservation: ...

    async def adjust(self, corrections: Sequence[tuple[Charge, float]]) -> None: ...

    async def release(self, slots: Sequence[SlotCheck]) -> None: ...

    async def peek(self, windows: Sequence[WindowCheck]) -> list[WindowState]: ...

    async def peek_slots(self, keys: Sequence[str]) -> list[int]: ...

    async def aclose(self) -> None: ...


class MemoryBackend:
    """Per-process state. Old window counters and expired leases are swept, so nothing grows forever.

    ``reserve`` never awaits, so on one event loop it is atomic without a lock.
    """

    def __init__(self, clock: Callable[[], float] = time.time, sweep_every: int = 1024) -> None:
        self._clock = clock
        self._counters: dict[str, tuple[float, float]] = {}  # counter -> (value, expires_at)
        self._slots: dict[str, dict[str, float]] = {}  # key -> lease id -> expires_at
        self._ops = 0
        self._sweep_every = sweep_every

    def _get(self, counter: str, now: float) -> float:
        entry = self._counters.get(counter)
        if entry is None or entry[1] <= now:
            return 0.0
        return entry[0]

    def _add(self, counter: str, amount: float, expires_at: float, now: float) -> float:
        value = self._get(counter, now) + amount
        self._counters[counter] = (value, expires_at)
        return value

    def _holders(self, key: str, now: float) -> dict[str, float]:
        leases = self._slots.setdefault(key, {})
        for lease, expires in list(leases.items()):
            if expires <= now:
                del leases[lease]
        return leases

    def _states(
        self, windows: Sequence[WindowCheck], now: float, extra: Sequence[float]
    ) -> list[WindowState]:
        states = []
        for check, add in zip(windows, extra, strict=True):
            i = window_index(now, check.window)
            cur = self._get(counter_key(check.key, check.window, i), now) + add
            prev = self._get(counter_key(check.key, check.window, i - 1), now)
            states.append(WindowState(prev, cur, now, check.window, check.limit))
        return states

    async def reserve(self, windows: Sequence[WindowCheck], slots: Sequence[SlotCheck]) -> Reservation:
        now = self._clock()
        self._maybe_sweep(now)
        # Runs on every budgeted request (issue 17): each check's window index and its two counter
        # keys are worked out once, and the counters are read with inline dict lookups (what
        # ``_get`` does) instead of a method call per read. Same arithmetic as ``estimate``.
        counters = self._counters
        charges = []
        prev_keys = []
        for check in windows:
            window = check.window
            index = math.floor(now / window)
            base = f"{check.key}:w{window}:"
            charges.append(Charge(f"{base}{index}", window, index))
            prev_keys.append(f"{base}{index - 1}")
        for i, (check, charge, prev_key) in enumerate(zip(windows, charges, prev_keys, strict=True)):
            window, index = check.window, charge.index
            entry = counters.get(prev_key)
            prev = entry[0] if entry is not None and entry[1] > now else 0.0
            entry = counters.get(charge.counter)
            cur = (entry[0] if entry is not None and entry[1] > now else 0.0) + 0.0
            used = prev * (1.0 - (now - index * window) / window) + cur
            if used + check.amount > check.limit:
                states = self._charged_states(windows, charges, now)
                return Reservation(False, states, charges, denied_window=i)
        counts = []
        for i, slot in enumerate(slots):
            holders = self._holders(slot.key, now)
            if slot.lease_id not in holders and len(holders) >= slot.limit:
                return Reservation(
                    False,
                    self._charged_states(windows, charges, now),
                    charges,
                    [len(self._holders(s.key, now)) for s in slots],
                    denied_slot=i,
                )
            counts.append(len(holders))
        for check, charge in zip(windows, charges, strict=True):
            self._add(charge.counter, check.amount, (charge.index + 2) * check.window, now)
        for i, slot in enumerate(slots):
            self._holders(slot.key, now)[slot.lease_id] = now + slot.ttl
            counts[i] = len(self._slots[slot.key])
        states = []
        for check, charge, prev_key in zip(windows, charges, prev_keys, strict=True):
            entry = counters.get(prev_key)
            prev = entry[0] if entry is not None and entry[1] > now else 0.0
            entry = counters.get(charge.counter)
            cur = (entry[0] if entry is not None and entry[1] > now else 0.0) + 0.0
            states.append(WindowState(prev, cur, now, check.window, check.limit))
        return Reservation(True, states, charges, counts)

    def _charged_states(
        self, windows: Sequence[WindowCheck], charges: Sequence[Charge], now: float
    ) -> list[WindowState]:
        """``_states`` for ``reserve``, reusing the counter keys its charges already hold."""
        get = self._get
        return [
            WindowState(
                get(counter_key(check.key, check.window, charge.index - 1), now),
                get(charge.counter, now) + 0.0,
                now,
                check.window,
                check.limit,
            )
            for check, charge in zip(windows, charges, strict=True)
        ]

    async def adjust(self, corrections: Sequence[tuple[Charge, float]]) -> None:
        now = self._clock()
        for charge, delta in corrections:
            if delta:
                self._add(charge.counter, delta, (charge.index + 2) * charge.window, now)

    async def release(self, slots: Sequence[SlotCheck]) -> None:
        for slot in slots:
            leases = self._slots.get(slot.key)
            if leases is not None:
                leases.pop(slot.lease_id, None)
                if not leases:
                    del self._slots[slot.key]

    async def peek(self, windows: Sequence[WindowCheck]) -> list[WindowState]:
        return self._states(windows, self._clock(), [0.0] * len(windows))

    async def peek_slots(self, keys: Sequence[str]) -> list[int]:
        now = self._clock()
        return [len(self._holders(key, now)) for key in keys]

    def _maybe_sweep(self, now: float) -> None:
        self._ops += 1
        if self._ops % self._sweep_every:
            return
        for counter in [c for c, (_, exp) in self._counters.items() if exp <= now]:
            del self._counters[counter]
        for key in list(self._slots):
            if not self._holders(key, now):
                del self._slots[key]

    def size(self) -> int:
        return len(self._counters) + len(self._slots)

    async def aclose(self) -> None:
        return None
