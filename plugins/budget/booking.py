"""What one request reserved, and the arithmetic that books and corrects it.

A request reserves its worst case up front (prompt estimate + the completion cap, priced); after
the call every charge is corrected to the real usage, or refunded when nothing was served. The
``Booking`` travels in the request context (step-scoped state) from ``on_request`` to
``on_complete``; everything here is pure so it is tested without a backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from plugins.budget.config import LimitSpec
from proxy.budget.backends import Charge, Reservation, SlotCheck, WindowCheck
from proxy.chain import StateKey
from proxy.tokens.pricing import Price


@dataclass
class Booking:
    """What this request reserved, to be corrected in ``on_complete``."""

    checks: list[tuple[LimitSpec, WindowCheck]]
    charges: list[Charge]
    slots: list[SlotCheck]
    prompt_tokens: int
    completion_reserve: int
    price: Price | None
    wants_usage: bool
    fixed_cost: float | None = None  # pass-through: the rule's price; no tokens are counted
    defaulted: bool = False  # the reserve is default_max_tokens (the request set no output cap)
    streamed_text: list[str] = field(default_factory=list)
    response_text: str | None = None


BOOKING: StateKey[Booking] = StateKey("budget.booking")


def amount(limit: LimitSpec, prompt: int, completion: int, price: Price | None) -> float:
    """What a request of ``prompt`` + ``completion`` tokens costs against ``limit``."""
    m = limit.measure
    if m == "requests":
        return 1.0
    if m == "tokens":
        return float(prompt + completion)
    if m == "input_tokens":
        return float(prompt)
    if m == "output_tokens":
        return float(completion)
    if price is None:
        return 0.0
    return (prompt * price.input + completion * price.output) / 1_000_000


def lowered_completion(
    checks: Sequence[tuple[LimitSpec, WindowCheck]],
    result: Reservation,
    prompt: int,
    completion: int,
    price: Price | None,
    body: Mapping[str, Any],
    min_max_tokens: int,
) -> int | None:
    """The largest completion every lowerable limit still allows, if it is worth asking for."""
    n = max(1, int(body.get("n") or 1)) if isinstance(body.get("n"), int) else 1
    best = completion
    for (lim, _), state in zip(checks, result.states, strict=True):
        if lim.on_exceed != "lower_max_tokens":
            if state.used + amount(lim, prompt, completion, price) > state.limit:
                return None  # a limit that cannot be lowered refuses anyway
            continue
        room = state.remaining
        if lim.measure == "tokens":
            room -= prompt
        elif lim.measure == "cost_usd":
            if price is None or price.output == 0:
                continue
            room = (room - prompt * price.input / 1_000_000) * 1_000_000 / price.output
        best = min(best, math.floor(room))
    per_choice = best // n
    if per_choice < min_max_tokens or best >= completion:
        return None
    return per_choice * n


def corrections(booking: Booking, usage: tuple[int, int] | None) -> list[tuple[Charge, float]]:
    """Charge the real amounts; ``usage`` None means nothing was served: give everything back."""
    if usage is None:
        return [
            (charge, -check.amount)
            for (_, check), charge in zip(booking.checks, booking.charges, strict=True)
            if check.amount
        ]
    if booking.fixed_cost is not None:
        return []  # pass-through: charged exactly at reservation
    prompt, completion = usage
    out = []
    for (lim, check), charge in zip(booking.checks, booking.charges, strict=True):
        actual = amount(lim, prompt, int(completion), booking.price)
        if actual != check.amount:
            out.append((charge, actual - check.amount))
    return out
