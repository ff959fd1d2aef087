"""The process-wide objects every route needs, built once at startup."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from proxy.chain.decisions import DecisionSink
from proxy.policy.store import PolicyStore
from proxy.settings import Settings

if TYPE_CHECKING:
    from proxy.chain.context import RequestContext
    from proxy.chain.plugin import Outcome
    from proxy.observability.telemetry import Telemetry
    from proxy.policy.compiler import CompiledPolicy

#: Called once per finished request (after complete hooks and decision records), on the event
#: loop; must be cheap and must not raise. Metrics, the live page and sinks subscribe here.
RequestObserver = Callable[["CompiledPolicy", "RequestContext", "Outcome"], None]

log = logging.getLogger("policy_sidecar.access")


@dataclass
class Sidecar:
    settings: Settings
    store: PolicyStore
    sink: DecisionSink
    draining: bool = False
    observers: list[RequestObserver] = field(default_factory=list)
    telemetry: Telemetry | None = None  # tracing + metrics (build_sidecar sets it)
    #: Streams being sent right now (``routes.pipeline``); ``cut_streams`` ends them at shutdown.
    live_streams: set[LiveStream] = field(default_factory=set)

    def publish(self, policy: CompiledPolicy, ctx: RequestContext, outcome: Outcome) -> None:
        """A finished request's decision records to the sink, then every observer (each guarded:
        one failing observer never stops the others). Every route ends its requests through here."""
        if ctx.decisions:
            self.sink.emit(ctx.decisions)
        for observe in self.observers:
            try:
                observe(policy, ctx, outcome)
            except Exception:
                log.exception("request observer failed")

    def cut_streams(self) -> int:
        """End every live stream with an in-band error (the shutdown grace period is running out).

        Without this, uvicorn cancels what is left at the grace deadline and the client sees a
        stream that stops mid-body, with no error event. Returns how many streams were cut.
        """
        streams = list(self.live_streams)
        for stream in streams:
            stream.cut()
        return len(streams)


class LiveStream(Protocol):
    def cut(self) -> None: ...
