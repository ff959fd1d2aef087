"""``circuit_breaker``: stop calling a target that keeps failing, and probe it back to health.

Per target (upstream name): **closed** -> **open** when, over the last ``window`` seconds, at
least ``min_calls`` calls were made and the failure ratio reached ``failure_ratio``, or after
``consecutive_failures`` failures in a row; **open** fails fast (503 ``circuit_open``, which a
fallback step routes around) for ``open_for`` seconds; then **half-open** lets
``half_open_probes`` calls through: a success closes the circuit, a failure opens it again.
State survives policy reloads (it is a shared resource keyed by the step id) and every
transition is a decision record.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from proxy.chain import Deps, PluginConfig, RequestContext, UpstreamPolicy
from proxy.chain.failures import classes_as_text, classify_exception, classify_response
from proxy.chain.upstream import Upstream
from proxy.errors import UpstreamError, UpstreamUnavailable
from proxy.models.upstream import UpstreamRequest, UpstreamResponse

Counted = Literal["timeout", "connect", "bad_response", "429", "5xx"]


class CircuitBreakerConfig(PluginConfig):
    """Per-target circuit breaker (put it inside retry, so each attempt counts)."""

    type: Literal["circuit_breaker"] = "circuit_breaker"
    failure_ratio: float = Field(default=0.5, gt=0, le=1)
    min_calls: int = Field(default=10, ge=1, description="calls in the window before the ratio counts")
    window: float = Field(default=30.0, gt=0, description="seconds of history for the ratio")
    consecutive_failures: int = Field(default=5, ge=1)
    open_for: float = Field(default=30.0, gt=0, description="seconds an open circuit fails fast")
    half_open_probes: int = Field(default=1, ge=1)
    failure_on: Annotated[tuple[Counted, ...], BeforeValidator(classes_as_text)] = (
        "timeout",
        "connect",
        "bad_response",
        "5xx",
    )


@dataclass
class _Circuit:
    state: str = "closed"
    opened_at: float = 0.0
    consecutive: int = 0
    probes: int = 0
    calls: deque[tuple[float, bool]] = field(default_factory=deque)
    failures: int = 0  # failures among ``calls``, kept as a running total (no scan per call)


class CircuitBreakerPlugin(UpstreamPolicy[CircuitBreakerConfig]):
    Config = CircuitBreakerConfig

    def __init__(self, config: CircuitBreakerConfig, deps: Deps) -> None:
        super().__init__(config, deps)
        self.circuits: dict[str, _Circuit] = deps.resource(f"circuit_breaker:{config.step_id}", dict)

    def wrap(self, inner: Upstream) -> Upstream:
        return _Breaker(inner, self)

    def circuit(self, target: str) -> _Circuit:
        circuit = self.circuits.get(target)
        if circuit is None:
            circuit = self.circuits[target] = _Circuit()
        return circuit


class _Breaker:
    def __init__(self, inner: Upstream, plugin: CircuitBreakerPlugin) -> None:
        self._inner = inner
        self._plugin = plugin
        self._cfg = plugin.config
        self._counted = frozenset(plugin.config.failure_on)

    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        name = (
            request.target.upstream
            if request.target
            else (request.candidates[0].upstream if request.candidates else "default")
        )
        circuit = self._plugin.circuit(name)
        now = time.monotonic()
        probing = self._admit(circuit, name, now, ctx)
        try:
            resp = await self._inner.send(request, ctx)
        except UpstreamError as exc:
            self._after(circuit, name, classify_exception(exc) not in self._counted, probing, ctx)
            raise
        self._after(circuit, name, classify_response(resp) not in self._counted, probing, ctx)
        return resp

    def _admit(self, c: _Circuit, name: str, now: float, ctx: RequestContext) -> bool:
        if c.state == "open":
            wait = c.opened_at + self._cfg.open_for - now
            if wait > 0:
                raise UpstreamUnavailable(
                    "The upstream provider is failing; its circuit is open.",
                    code="circuit_open",
                    headers={"retry-after": str(max(1, round(wait)))},
                )
            self._move(c, "half_open", name, ctx)
        if c.state == "half_open":
            if c.probes >= self._cfg.half_open_probes:
                raise UpstreamUnavailable(
                    "The upstream provider is being probed; try again shortly.",
                    code="circuit_open",
                    headers={"retry-after": "1"},
                )
            c.probes += 1
            return True
        return False

    def _after(self, c: _Circuit, name: str, ok: bool, probing: bool, ctx: RequestContext) -> None:
        now = time.monotonic()
        if probing:
            c.probes = max(0, c.probes - 1)
            if ok:
                self._move(c, "closed", name, ctx)
            else:
                self._open(c, name, now, ctx)
            return
        c.calls.append((now, ok))
        c.failures += not ok
        while c.calls and c.calls[0][0] < now - self._cfg.window:
            c.failures -= not c.calls.popleft()[1]
        c.consecutive = 0 if ok else c.consecutive + 1
        if c.state != "closed" or ok:
            return
        ratio_trip = (
            len(c.calls) >= self._cfg.min_calls and c.failures / len(c.calls) >= self._cfg.failure_ratio
        )
        if ratio_trip or c.consecutive >= self._cfg.consecutive_failures:
            self._open(c, name, now, ctx)

    def _open(self, c: _Circuit, name: str, now: float, ctx: RequestContext) -> None:
        c.opened_at = now
        self._move(c, "open", name, ctx)

    @staticmethod
    def _move(c: _Circuit, state: str, name: str, ctx: RequestContext) -> None:
        if c.state == state:
            return
        previous, c.state = c.state, state
        if state == "closed":
            c.calls.clear()
            c.failures = 0
            c.consecutive = 0
        ctx.record(f"circuit_{state}", "flag", detail={"target": name, "from": previous})
