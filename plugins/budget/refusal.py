"""How a budget says no: 429 (or 503 when its state is unreachable and it fails closed).

The message, ``Retry-After`` and ``x-ratelimit-*`` headers are computed from the same window
state, so they agree with the decision (see ``proxy.budget.explain``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from plugins.budget.config import TOKEN_MEASURES, LimitSpec
from proxy.budget.backends import BackendUnavailable, Reservation, SlotCheck, WindowCheck
from proxy.budget.explain import Demand, capped_wait, headers_for, refusal_message
from proxy.budget.windows import seconds_until_fits
from proxy.chain import RequestContext
from proxy.errors import RateLimited, Rejected


def backend_down(
    ctx: RequestContext, exc: BackendUnavailable, mode: Literal["fail_open", "fail_closed"]
) -> None:
    """Record the outage; fail_open admits the request, fail_closed refuses it with a 503."""
    if mode == "fail_open":
        ctx.record("backend_unavailable", "allow", detail={"error": type(exc).__name__})
        return None
    ctx.record("backend_unavailable", "block", detail={"error": type(exc).__name__})
    raise Rejected(
        "Budget state is unavailable; try again shortly.",
        status=503,
        code="budget_unavailable",
        headers={"retry-after": "1"},
    )


def deny(
    checks: Sequence[tuple[LimitSpec, WindowCheck]],
    concurrent: Sequence[LimitSpec],
    slots: Sequence[SlotCheck],
    result: Reservation,
    demand: Demand,
    ctx: RequestContext,
) -> None:
    """Refuse with headers and a message that agree with the decision (see proxy.budget.explain)."""
    if result.denied_window is not None:
        lim, check = checks[result.denied_window]
        state = result.states[result.denied_window]
        wait = seconds_until_fits(state.prev, state.cur, state.now, state.window, check.limit, check.amount)
        demand = Demand(
            check.amount, demand.prompt, demand.completion, demand.defaulted, demand.default_max_tokens
        )
        detail = {"measure": lim.measure, "window": lim.window, "requested": check.amount}
        if demand.defaulted and lim.measure in TOKEN_MEASURES:
            detail["default_max_tokens"] = demand.default_max_tokens
        ctx.record(lim.name, "limit", detail=detail)
        message = refusal_message(lim.name, lim.measure, lim.window, state, demand, wait is None)
        if wait is None:
            raise Rejected(
                message,
                status=429,
                code="request_exceeds_limit",
                headers=headers_for([(lim.measure, state)]),
            )
        retry = max(capped_wait(wait, state), 1.0)
        raise RateLimited(message, retry_after=retry, headers=headers_for([(lim.measure, state)], retry))
    index = result.denied_slot or 0
    lim = concurrent[index]
    ctx.record(lim.name, "limit", detail={"measure": "concurrent"})
    raise RateLimited(
        f"Concurrency limit '{lim.name}' reached ({slots[index].limit} requests in flight at once).",
        retry_after=1.0,
        headers={
            "x-ratelimit-limit-concurrent": str(slots[index].limit),
            "x-ratelimit-remaining-concurrent": "0",
        },
    )
