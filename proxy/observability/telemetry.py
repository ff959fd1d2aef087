"""The process's telemetry: tracing and metrics, built once at startup, wired in as an observer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from proxy.observability.metrics import Metrics
from proxy.observability.tracing import Tracing

if TYPE_CHECKING:
    from proxy.chain.context import RequestContext
    from proxy.chain.plugin import Outcome
    from proxy.policy.compiler import CompiledPolicy
    from proxy.policy.store import PolicyStore


@dataclass
class Telemetry:
    tracing: Tracing
    metrics: Metrics

    @classmethod
    def from_env(cls, store: PolicyStore) -> Telemetry:
        return cls(Tracing.from_env(), Metrics(store))

    def observe(self, policy: CompiledPolicy, ctx: RequestContext, outcome: Outcome) -> None:
        """The request observer: end the request span (when traced), then update metrics."""
        trace = ctx.trace
        try:
            if trace is not None:
                trace.finish(ctx, outcome)
        finally:
            self.metrics.observe(policy, ctx, outcome)
