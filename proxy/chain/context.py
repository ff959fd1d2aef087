"""Per-request context: identity, typed state, decisions and headers of one request.

Plugin instances are shared by all requests of a policy revision and hold no per-request
state; whatever a plugin must remember between hooks of one request lives here, under a
typed ``StateKey`` so mypy checks what goes in and comes out.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from proxy.chain.decisions import Decision
from proxy.errors import UpstreamTimeout
from proxy.models.chat import Route


def deadline_exceeded() -> UpstreamTimeout:
    """The error every deadline check raises (the same one the upstream wrappers raise)."""
    return UpstreamTimeout("The request deadline was exceeded.", code="deadline_exceeded")


def past(deadline: float | None) -> bool:
    """True once ``deadline`` (``time.monotonic()``; None: no deadline) has passed; thread-safe."""
    return deadline is not None and time.monotonic() >= deadline


if TYPE_CHECKING:
    from proxy.observability.tracing import RequestTrace

T = TypeVar("T")


class StateKey(Generic[T]):
    """A typed key into ``RequestContext.state``: ``KEY = StateKey[list[str]]("pii.spans")``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"StateKey({self.name!r})"


@dataclass(frozen=True, slots=True)
class ActiveStep:
    """Which plugin step is running, so decisions are stamped without the plugin's help."""

    plugin_id: str
    mode: str


_NO_STEP = ActiveStep("sidecar", "enforce")


@dataclass(slots=True)
class RequestContext:
    request_id: str
    route: Route
    headers: Mapping[str, str]
    revision: str = ""
    model: str = ""
    tenant: str | None = None
    stream: bool = False
    started: float = field(default_factory=time.perf_counter)
    decisions: list[Decision] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)
    upstream_headers: dict[str, str] = field(default_factory=dict)
    active: ActiveStep = _NO_STEP
    first_byte_sent: bool = False
    target: str | None = None
    deadline: float | None = None  # absolute, time.monotonic(); set by the timeout step
    usage: dict[str, int] | None = None  # reconciled token usage (set by a budget step)
    cost_usd: float | None = None  # priced cost of this request (set by a budget step)
    # Calibration (``policy-sidecar calibrate``): score-based plugins also record an ``allow``
    # decision with the score when nothing triggered, so thresholds can be swept offline.
    record_scores: bool = False
    # The text a decision was about, by ``id(decision)``: lives only as long as the request, for
    # the decision log's ``text: hash | redacted``; never copied into the record itself.
    scanned: dict[int, str] | None = None
    # Telemetry (proxy/observability): filled by the routes and the Router, read at the end.
    trace: RequestTrace | None = None  # None: not traced (tracing off or not sampled)
    attempts: int = 0  # upstream attempts (retries and fallbacks included)
    upstream_s: float = 0.0  # seconds inside upstream attempts (streams: until the first chunk)
    first_token_at: float | None = None  # perf_counter when the first output text reached the client
    response_model: str | None = None  # the model the provider says answered
    canary_bucket: float | None = None  # 0 <= x < 100, from the request id; set on first canary step

    def get(self, key: StateKey[T], default: T | None = None) -> T | None:
        return cast("T | None", self.state.get(key.name, default))

    def set(self, key: StateKey[T], value: T) -> None:
        self.state[key.name] = value

    def record(
        self,
        rule: str,
        action: str,
        *,
        score: float | None = None,
        threshold: float | None = None,
        latency_ms: float | None = None,
        detail: Mapping[str, Any] | None = None,
        text: str | None = None,
    ) -> Decision:
        """Record a decision; the chain stamps plugin id, mode and revision.

        ``text``: what was scanned, kept beside the record (``scanned``) and never in it.
        """
        decision = Decision(
            request_id=self.request_id,
            revision=self.revision,
            plugin=self.active.plugin_id,
            rule=rule,
            action=action,
            mode=self.active.mode,
            score=score,
            threshold=threshold,
            latency_ms=latency_ms,
            detail=dict(detail) if detail else {},
        )
        self.decisions.append(decision)
        if text is not None:
            if self.scanned is None:
                self.scanned = {}
            self.scanned[id(decision)] = text
        return decision

    def check_deadline(self) -> None:
        """Raise the request's timeout (504 ``deadline_exceeded``) once its deadline has passed.

        For request-side work that may be long (many texts to scan): a guard calls it between
        items or batches, so a request past its deadline stops costing CPU instead of finishing
        its scans only to be answered 504 afterwards.
        """
        if past(self.deadline):
            raise deadline_exceeded()

    @property
    def shadow(self) -> bool:
        """True while a shadow-mode step runs (plugins may skip expensive side effects)."""
        return self.active.mode == "shadow"
