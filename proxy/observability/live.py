"""The live page's numbers: per-minute ring buffers fed by a Sidecar observer.

An operator watching a shadow rule before enforcing it wants "what did it do in the last
minutes", not totals since start (``/admin/decisions``) nor a metrics stack. So each of the
last ``minutes`` minutes keeps requests, 5xx errors, refusals (4xx) and decision counts by
(plugin, rule, mode, action); a slot is reset when its minute comes round again, so memory is
bounded by the window and the number of distinct rules, never by traffic.

Observers run on the event loop and so does the admin route that reads the snapshot, so there
is no lock. The clock is injectable so tests never wait for a real minute.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from proxy.chain.context import RequestContext
    from proxy.chain.plugin import Outcome
    from proxy.policy.compiler import CompiledPolicy
    from proxy.policy.store import PolicyStore


class Sidecar(Protocol):
    """What the live page needs of ``proxy.runtime.Sidecar`` (the runtime sits above this layer)."""

    @property
    def store(self) -> PolicyStore: ...

    @property
    def observers(self) -> list[Callable[[CompiledPolicy, RequestContext, Outcome], None]]: ...


DecisionKey = tuple[str, str, str, str]  # plugin, rule, mode, action


class _Minute:
    __slots__ = ("decisions", "errors", "minute", "refused", "requests", "saved")

    def __init__(self, minute: int) -> None:
        self.minute = minute
        self.requests = 0
        self.errors = 0
        self.refused = 0
        self.decisions: Counter[DecisionKey] = Counter()
        # Cache answers (mode -> hits, tokens, usd saved): what a shadow cache would save.
        self.saved: dict[str, list[float]] = {}


class LiveStats:
    """A ``Sidecar`` observer; ``snapshot()`` is what ``/admin/live.json`` serves."""

    def __init__(self, minutes: int = 15, clock: Callable[[], float] = time.time) -> None:
        self.minutes = minutes
        self._clock = clock
        self._ring: list[_Minute | None] = [None] * minutes

    def _slot(self, minute: int) -> _Minute:
        i = minute % self.minutes
        slot = self._ring[i]
        if slot is None or slot.minute != minute:
            slot = self._ring[i] = _Minute(minute)
        return slot

    def __call__(self, policy: CompiledPolicy, ctx: RequestContext, outcome: Outcome) -> None:
        slot = self._slot(int(self._clock() // 60))
        slot.requests += 1
        if outcome.status >= 500:
            slot.errors += 1
        elif outcome.status >= 400:
            slot.refused += 1
        for d in ctx.decisions:
            slot.decisions[(d.plugin, d.rule, d.mode, d.action)] += 1
            if "saved_prompt_tokens" in d.detail:
                row = slot.saved.setdefault(d.mode, [0, 0, 0.0])
                row[0] += 1
                row[1] += d.detail["saved_prompt_tokens"] + d.detail.get("saved_completion_tokens", 0)
                row[2] += d.detail.get("saved_usd", 0.0)

    def series(self) -> list[_Minute]:
        """The window's minutes, oldest first; minutes without traffic are empty slots."""
        now = int(self._clock() // 60)
        out = []
        for minute in range(now - self.minutes + 1, now + 1):
            slot = self._ring[minute % self.minutes]
            out.append(slot if slot is not None and slot.minute == minute else _Minute(minute))
        return out

    def snapshot(self, sidecar: Sidecar | None = None) -> dict[str, Any]:
        minutes = self.series()
        rules: dict[tuple[str, str], dict[str, Any]] = {}
        for i, slot in enumerate(minutes):
            for (plugin, rule, mode, action), n in slot.decisions.items():
                row = rules.setdefault(
                    (plugin, rule),
                    {
                        "plugin": plugin,
                        "rule": rule,
                        "enforce": Counter(),
                        "shadow": Counter(),
                        "shadow_per_minute": [0] * len(minutes),
                        "enforce_per_minute": [0] * len(minutes),
                    },
                )
                kind = "shadow" if mode == "shadow" else "enforce"
                row[kind][action] += n
                row[f"{kind}_per_minute"][i] += n
        cache: dict[str, dict[str, float]] = {}
        for slot in minutes:
            for mode, (hits, tokens, usd) in slot.saved.items():
                total = cache.setdefault(mode, {"hits": 0, "tokens": 0, "usd": 0.0})
                total["hits"] += hits
                total["tokens"] += tokens
                total["usd"] = round(total["usd"] + usd, 8)
        body: dict[str, Any] = {
            "now": self._clock(),
            "cache": cache,  # answers from a cache step (shadow: would-be hits) and what they saved
            "window_minutes": self.minutes,
            "minutes": [
                {"minute": s.minute * 60, "requests": s.requests, "errors": s.errors, "refused": s.refused}
                for s in minutes
            ],
            "rules": [
                {**row, "enforce": dict(row["enforce"]), "shadow": dict(row["shadow"])}
                for _key, row in sorted(rules.items())
            ],
        }
        if sidecar is not None and sidecar.store.ready:
            store = sidecar.store
            current = store.current
            body["policy"] = {
                "revision": current.revision,
                "source": current.source,
                "steps": [
                    {"id": s.id, "type": s.plugin.config.type, "mode": s.mode} for s in current.chain.steps
                ],
                "promotions": store.promotions.snapshot(current.promotion_keys),
                "promotion_history": store.promotions.history[-20:],
                "last_reload": store.last_reload,
                "last_error": store.last_error,
                "reloads": {"ok": store.reloads_ok, "failed": store.reloads_failed},
            }
        return body


def live_for(sidecar: Sidecar) -> LiveStats:
    """The sidecar's ``LiveStats`` observer, attached on first use (one per sidecar)."""
    for observer in sidecar.observers:
        if isinstance(observer, LiveStats):
            return observer
    live = LiveStats()
    sidecar.observers.append(live)
    return live


def attach_calibration_observers(sidecar: Sidecar) -> None:
    """Attach the live page's counters, the decision log and sampled capture (idempotent)."""
    from proxy.observability.capture import Capture, CaptureMetrics
    from proxy.observability.decision_log import DecisionLog

    live_for(sidecar)
    if not any(isinstance(o, DecisionLog) for o in sidecar.observers):
        sidecar.observers.append(DecisionLog())
    if not any(isinstance(o, Capture) for o in sidecar.observers):
        capture = Capture()
        sidecar.observers.append(capture)
        telemetry = getattr(sidecar, "telemetry", None)  # metrics: the capture counters at scrape time
        if telemetry is not None:
            telemetry.metrics.registry.register(CaptureMetrics(capture))


def capture_for(sidecar: Sidecar) -> Any:
    """The sidecar's ``Capture`` observer (None before ``attach_calibration_observers``)."""
    from proxy.observability.capture import Capture

    return next((o for o in sidecar.observers if isinstance(o, Capture)), None)
