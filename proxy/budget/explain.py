"""What a budget decision tells the client: OpenAI's ``x-ratelimit-*`` headers and refusal messages.

Kept apart from the plugin so the rules that make headers and messages *agree with the decision*
live in one small place:

* ``reset`` never exceeds the limit's window. The sliding-window counter forgets the current
  window's total gradually over the next window (so its estimate can need up to two windows to
  drop to zero), but a client reads ``reset`` as "when this window has forgotten what I spent",
  which for a window of one minute is at most one minute. Retry-After is capped the same way,
  so on a 429 ``reset`` and ``Retry-After`` say the same thing.
* On a refusal the headers describe the limit that refused, and the message says what the
  request needed, so ``remaining`` (what is left) reads against ``requested`` (more than that).
* A token or cost reservation that came from ``default_max_tokens`` (the request set no output
  cap) says so, and says how to change it: most "this request alone exceeds the limit" surprises
  are 4,096 tokens reserved for an answer nobody asked to be that long.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from proxy.budget.windows import WindowState, format_duration

HEADER_KIND = {"requests": "requests", "cost_usd": "usd"}  # every other measure reports as tokens
UNITS = {
    "requests": "requests",
    "tokens": "tokens",
    "input_tokens": "input tokens",
    "output_tokens": "output tokens",
    "cost_usd": "USD",
}
# Measures whose amount includes the completion reserve (so default_max_tokens matters).
RESERVE_MEASURES = frozenset({"tokens", "output_tokens", "cost_usd"})


@dataclass(frozen=True, slots=True)
class Demand:
    """What one request asked of a limit, for the refusal message."""

    amount: float  # charged to the refusing limit
    prompt: int  # estimated prompt tokens
    completion: int  # reserved for the answer (cap x n)
    defaulted: bool  # the reserve is default_max_tokens: the request set no output cap
    default_max_tokens: int


def capped_reset(state: WindowState) -> float:
    """Seconds until the window has forgotten what is counted now, at most one window."""
    return min(float(state.window), state.reset_after())


def capped_wait(wait: float, state: WindowState) -> float:
    """Retry-After for a refused request: the estimator's exact wait, at most one window."""
    return min(float(state.window), wait)


def _fmt(kind: str, value: float) -> str:
    return f"{value:.6f}" if kind == "usd" else str(math.floor(value))


def headers_for(
    limits: Sequence[tuple[str, WindowState]], reset_override: float | None = None
) -> dict[str, str]:
    """OpenAI's header names; per kind, the limit closest to exhaustion is reported.

    ``limits`` pairs a measure with its state; ``reset_override`` (a refusal's Retry-After)
    replaces the reset so both headers agree. Runs on every budgeted request: each state's
    ``remaining`` is worked out once and the header names are prepared (issue 17).
    """
    tightest: dict[str, tuple[float, float, WindowState]] = {}
    for measure, state in limits:
        kind = HEADER_KIND.get(measure, "tokens")
        remaining = state.remaining
        ratio = remaining / state.limit if state.limit else 0.0
        best = tightest.get(kind)
        if best is None or ratio < best[0]:
            tightest[kind] = (ratio, remaining, state)
    headers = {}
    for kind, (_, remaining, state) in tightest.items():
        reset = capped_reset(state) if reset_override is None else reset_override
        limit_name, remaining_name, reset_name = _HEADER_NAMES.get(kind) or _header_names(kind)
        headers[limit_name] = _fmt(kind, state.limit)
        headers[remaining_name] = _fmt(kind, remaining)
        headers[reset_name] = format_duration(reset)
    return headers


def _header_names(kind: str) -> tuple[str, str, str]:
    return (f"x-ratelimit-limit-{kind}", f"x-ratelimit-remaining-{kind}", f"x-ratelimit-reset-{kind}")


_HEADER_NAMES = {kind: _header_names(kind) for kind in ("requests", "tokens", "usd")}


def _amount(measure: str, value: float, rounding: Callable[[float], int] = math.ceil) -> str:
    """A count in words. What a request needs rounds up; what is left rounds down (``floor``),
    as the ``x-ratelimit-remaining-*`` header does, so message and header always agree."""
    if measure == "cost_usd":
        return f"${value:,.6f}".rstrip("0").rstrip(".")
    unit = UNITS.get(measure, measure)
    n = rounding(value)
    return f"{n:,} {unit[:-1] if unit.endswith('s') and n == 1 else unit}"


def refusal_message(
    name: str, measure: str, window: str | None, state: WindowState, demand: Demand, alone: bool
) -> str:
    """The 429 message: which limit, what is left, what the request needed and why."""
    per = f" per {window}" if window else ""
    head = f"This request alone exceeds the '{name}' limit" if alone else f"Rate limit '{name}' reached"
    text = (
        f"{head} ({_amount(measure, state.limit)}{per}): it needs {_amount(measure, demand.amount)}, "
        f"{_amount(measure, state.remaining, math.floor)} remain."
    )
    if measure in RESERVE_MEASURES and demand.completion:
        if demand.defaulted:
            text += (
                f" The request sets no max_tokens, so default_max_tokens "
                f"({demand.default_max_tokens:,}) was reserved for the answer; set max_tokens or "
                "max_completion_tokens (max_output_tokens on /v1/responses) on the request, or "
                "lower default_max_tokens in the budget step."
            )
        else:
            text += (
                f" {demand.completion:,} tokens are reserved for the answer (max_tokens x n); "
                "a lower max_tokens needs less."
            )
    return text
