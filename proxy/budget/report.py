"""Usage read-outs of a budget step: ``GET /admin/plugins/<id>`` and the caller's ``/sidecar/budget``.

Only the limits whose key parts are all known from the query are shown (a per-user limit cannot
be read for "a tenant"); the others are listed under ``not_shown``. Reset times follow the same
rule as the headers (``explain.capped_reset``: at most one window).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from proxy.budget.backends import Backend, WindowCheck
from proxy.budget.explain import capped_reset
from proxy.budget.windows import WINDOWS


class LimitLike(Protocol):
    """What the report needs of a limit (the plugin's ``LimitSpec``)."""

    @property
    def name(self) -> str: ...
    @property
    def key(self) -> tuple[str, ...]: ...
    @property
    def window(self) -> str | None: ...
    @property
    def measure(self) -> str: ...
    @property
    def amount_limit(self) -> float: ...
    @property
    def concurrent(self) -> int | None: ...


async def usage_report(
    backend: Backend,
    limits: Sequence[LimitLike],
    key: Callable[[Any, Mapping[str, str]], str],
    given: Mapping[str, str | None],
) -> dict[str, Any]:
    """Used / remaining / reset per limit for the identity ``given`` (None parts are unknown)."""
    parts = {k: v for k, v in given.items() if v is not None}
    known = set(parts)
    shown = [lim for lim in limits if set(lim.key) <= known]
    windowed = [lim for lim in shown if lim.measure != "concurrent"]
    concurrent = [lim for lim in shown if lim.measure == "concurrent"]
    states = await backend.peek(
        [
            WindowCheck(key(lim, parts), WINDOWS[lim.window or "minute"], lim.amount_limit, 0.0)
            for lim in windowed
        ]
    )
    counts = await backend.peek_slots([key(lim, parts) for lim in concurrent])
    rows: list[dict[str, Any]] = [
        {
            "name": lim.name,
            "measure": lim.measure,
            "window": lim.window,
            "limit": st.limit,
            "used": round(st.used, 6),
            "remaining": round(st.remaining, 6),
            "reset_seconds": round(capped_reset(st), 3),
        }
        for lim, st in zip(windowed, states, strict=True)
    ]
    rows += [
        {
            "name": lim.name,
            "measure": "concurrent",
            "limit": lim.concurrent,
            "used": n,
            "remaining": max(0, (lim.concurrent or 0) - n),
        }
        for lim, n in zip(concurrent, counts, strict=True)
    ]
    return {
        "identity": parts,
        "limits": rows,
        "not_shown": [lim.name for lim in limits if lim not in shown],
    }
