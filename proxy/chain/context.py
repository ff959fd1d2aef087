"""Per-request context: identity, typed state, decisions and headers of one request.

Plugin instances are shared by all requests of a policy revision and hold no per-request
state; whatever a plugin must remember between hooks of one request lives here, under a
typed ``StateKey`` so mypy checks what goes in and comes out.

State is scoped to the *step*, not the plugin type: a policy may hold several steps of one type
(an enforced budget and a shadow candidate beside it), and each must see only its own booking.
``ctx.get`` / ``ctx.set`` therefore file a value under the step the chain marked active
(``ctx.active.plugin_id``), so a plugin keeps one module-level key name and cannot collide
with another step of its type. A key meant to be shared by every step of the request (a scan
cache) says so: ``StateKey(name, shared=True)``.
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
    from proxy.chain.identity import Identity
    from proxy.chain.trace import RequestTrace

T = TypeVar("T")


class StateKey(Generic[T]):
    """A typed key into the request's state: ``KEY = StateKey[list[str]]("pii.spans")``.

    By default the value belongs to the step that set it (see the module doc); ``shared=True``
    makes it one value for the whole request, seen by every step (caches only: a shared key
    written by a shadow step is dropped with the rest of that step's effects).
    """

    __slots__ = ("name", "shared")

    def __init__(self, name: str, *, shared: bool = False) -> None:
        self.name = name
        self.shared = shared

    def __repr__(self) -> str:
        return f"StateKey({self.name!r}{', shared=True' if self.shared else ''})"


@dataclass(frozen=True, slots=True)
class ActiveStep:
    """Which plugin step is running, so decisions are stamped without the plugin's help."""

    plugin_id: str
    mode: str


_NO_STEP = ActiveStep("sidecar", "enforce")

#: The price (USD) a ``passthrough:`` rule puts on one pass-through request, set by the route
#: before the rule's budget step runs: a pass-through body has no tokens to count, so a budget
#: step charges this fixed amount (and counts the request once) instead of pricing tokens.
#: Shared: the route sets it outside any step, the budget step reads it.
PASSTHROUGH_COST: StateKey[float] = StateKey("passthrough.cost_usd", shared=True)


@dataclass(slots=True)
class Scratch:
    """What a shadow step found on the request when it started, put back when it leaves.

    The shadow buffer: while a shadow step runs, its writable view of the request (request-wide
    state, response and upstream headers, the fields a step may set) is a scratch copy, so the
    step reads the live values and decides exactly as it would enforced, and the chain drops
    whatever it wrote. What is *kept* is what a shadow step is for: its decisions (stamped
    ``mode=shadow``) and its own step-scoped state (no other step can read it, and a shadow
    budget needs its booking in ``on_complete`` to release the slots it counted).
    """

    state: dict[str, Any]
    response_headers: dict[str, str]
    upstream_headers: dict[str, str]
    model: str
    tenant: str | None
    identity: Identity | None
    target: str | None
    deadline: float | None
    usage: dict[str, int] | None
    cost_usd: float | None


@dataclass(slots=True)
class RequestContext:
    request_id: str
    route: Route
    headers: Mapping[str, str]
    revision: str = ""
    model: str = ""
    tenant: str | None = None
    stream: bool = False
    # The verified caller (``clients:``); when set, the only source of tenant, user and key id.
    identity: Identity | None = None
    started: float = field(default_factory=time.perf_counter)
    decisions: list[Decision] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)  # request-wide (shared keys, the routes)
    step_state: dict[str, dict[str, Any]] = field(default_factory=dict)  # step id -> its own state
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
    rollouts: dict[str, float] | None = None  # promoted steps' percentages as this request saw them

    def get(self, key: StateKey[T], default: T | None = None) -> T | None:
        """The value of ``key`` for the active step (or the request, for a shared key)."""
        if key.shared:
            return cast("T | None", self.state.get(key.name, default))
        own = self.step_state.get(self.active.plugin_id)
        return default if own is None else cast("T | None", own.get(key.name, default))

    def set(self, key: StateKey[T], value: T) -> None:
        """Store ``key`` for the active step (or the request, for a shared key)."""
        if key.shared:
            self.state[key.name] = value
            return
        own = self.step_state.get(self.active.plugin_id)
        if own is None:
            own = self.step_state[self.active.plugin_id] = {}
        own[key.name] = value

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

    # -- steps (called by the chain, never by plugins) -------------------------------------
    def enter_step(self, active: ActiveStep) -> Scratch | None:
        """Mark ``active`` as the running step; for a shadow step, open the scratch buffer.

        Returns what ``leave_step`` needs to drop the shadow step's effects (None: enforcing,
        nothing to drop, no copy made).
        """
        self.active = active
        if active.mode != "shadow":
            return None
        scratch = Scratch(
            self.state,
            self.response_headers,
            self.upstream_headers,
            self.model,
            self.tenant,
            self.identity,
            self.target,
            self.deadline,
            self.usage,
            self.cost_usd,
        )
        self.state = dict(self.state)
        self.response_headers = dict(self.response_headers)
        self.upstream_headers = dict(self.upstream_headers)
        return scratch

    def leave_step(self, scratch: Scratch | None, previous: ActiveStep = _NO_STEP) -> None:
        """End the running step: drop a shadow step's effects, make ``previous`` active again.

        Measurements a shadow step was the only one to make (``usage``, ``cost_usd`` of a request
        no enforcing step priced) are kept, so a shadow budget still feeds the access log and the
        cost metrics; an enforcing step's value always wins.
        """
        self.active = previous
        if scratch is None:
            return
        self.state = scratch.state
        self.response_headers = scratch.response_headers
        self.upstream_headers = scratch.upstream_headers
        self.model = scratch.model
        self.tenant = scratch.tenant
        self.identity = scratch.identity
        self.target = scratch.target
        self.deadline = scratch.deadline
        if scratch.usage is not None:
            self.usage = scratch.usage
        if scratch.cost_usd is not None:
            self.cost_usd = scratch.cost_usd

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
        """True while a shadow-mode step runs.

        Informational only (logs, tests): the chain already drops a shadow step's effects, so a
        plugin must not branch on it to decide what to do; no built-in plugin reads it.
        """
        return self.active.mode == "shadow"
