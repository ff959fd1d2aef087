"""The request-trace port: what the lower layers report to a request's trace.

``proxy.chain`` and ``proxy.upstream`` sit below ``proxy.observability`` and must not import it,
not even for type hints (see the layers in the README's architecture section). So the chain
declares here, as a protocol, the few calls it and the layers above it make on ``ctx.trace``,
and ``proxy.observability.tracing.RequestTrace`` implements them (mypy checks the fit where
the routes store a trace in the context). Starlette's rule: the bottom exposes hooks, the
top fills them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from proxy.models.upstream import Candidate, UpstreamRequest

if TYPE_CHECKING:
    from proxy.chain.context import RequestContext
    from proxy.chain.plugin import Outcome


@dataclass(frozen=True, slots=True)
class HookRecord:
    """One plugin hook as the chain ran it: enough for a span made after the fact."""

    step_id: str
    plugin_type: str
    hook: str  # on_request | on_response | ...
    mode: str  # enforce | shadow: the mode the hook actually ran in
    result: str  # ok | edited | reply | rejected | error
    started_ns: int  # time.perf_counter_ns() when the hook started
    decisions: int  # decisions the hook recorded


class RequestTrace(Protocol):
    """A sampled request's trace, as the chain, the upstream router and the routes use it."""

    input_messages: list[dict[str, str]] | None
    output_messages: list[dict[str, str]] | None

    @property
    def trace_id(self) -> str: ...

    def hook_done(self, record: HookRecord) -> None:
        """A plugin hook finished (called by the chain for every traced hook)."""

    def start_attempt(
        self, request: UpstreamRequest, target: Candidate, attempt: int, provider: str
    ) -> tuple[Any, UpstreamRequest]:
        """An upstream attempt starts: an opaque token for ``end_attempt`` and the request to send."""

    def end_attempt(self, attempt: Any, status: int | None, error: BaseException | None) -> None:
        """The attempt ended with the upstream's status, or an error."""

    def finish(self, ctx: RequestContext, outcome: Outcome) -> None:
        """The request ended: the trace is complete."""
