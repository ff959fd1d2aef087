"""Feeds staged promotion with live traffic and reports what it does.

``PromotionObserver`` is a ``Sidecar`` observer: for each finished request, each promoted step
of the request's policy revision that applied to it counts one request, and one hit when it
acted (a block, redaction, ... — enforced or "would have" in shadow: the rate must not drop just
because the step is still in shadow). Then the book evaluates those steps (a few comparisons).

Every stage change becomes, in one place (``announce``):
* a log line (``policy_sidecar.promotion``; a rollback is a warning),
* a decision record (plugin = the step, rule ``promotion_promote`` / ``promotion_rollback``,
  action ``flag``, the reason and counts in ``detail``) through the decision sink, so the
  decision log, ``/admin/decisions`` and the live page's rule table see it,
* a metric: ``sidecar_promotion_transitions_total`` and the ``sidecar_promotion_percent`` gauge
  (read at scrape time from the book, ``proxy.observability.metrics``),
* a history entry persisted with the state (``/admin/live.json`` → ``promotions``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from proxy.chain.decisions import Decision, DecisionSink
from proxy.policy.promotion import Transition

if TYPE_CHECKING:
    from proxy.chain.context import RequestContext
    from proxy.chain.plugin import Outcome
    from proxy.policy.compiler import CompiledPolicy
    from proxy.policy.store import PolicyStore

log = logging.getLogger("policy_sidecar.promotion")

#: Actions that count as the step "acting" on a request (its block rate's numerator).
ACTING = frozenset({"block", "limit", "redact", "mask", "hash", "reroute", "reply", "stop", "repair"})


class Sidecar(Protocol):
    """What promotion needs of ``proxy.runtime.Sidecar`` (the runtime sits above this layer)."""

    @property
    def store(self) -> PolicyStore: ...

    @property
    def sink(self) -> DecisionSink: ...

    @property
    def observers(self) -> list[Callable[[CompiledPolicy, RequestContext, Outcome], None]]: ...


class PromotionObserver:
    def __call__(self, policy: CompiledPolicy, ctx: RequestContext, outcome: Outcome) -> None:
        book = policy.promotions
        if book is None or not policy.promoted:
            return
        for step, key in zip(policy.promoted, policy.promotion_keys, strict=True):
            if step.applies(ctx):
                hit = any(d.plugin == step.id and d.action in ACTING for d in ctx.decisions)
                book.observe(key, hit)
        book.tick(policy.promotion_keys)


def announcer(sink: DecisionSink) -> Callable[[Transition], None]:
    """The book listener that logs a transition and records it as a decision."""

    def announce(t: Transition) -> None:
        extra = {"step": t.step_id, "from_percent": t.from_percent, "to_percent": t.to_percent}
        if t.kind == "rollback":
            log.warning("promotion rolled back %s to shadow: %s", t.step_id, t.reason, extra=extra)
        else:
            moved = "promotion moved %s to %g%% (%s): %s"
            log.info(moved, t.step_id, t.to_percent, t.status, t.reason, extra=extra)
        detail = {
            "from_percent": t.from_percent,
            "to_percent": t.to_percent,
            "status": t.status,
            "reason": t.reason,
            "requests": t.requests,
            "hits": t.hits,
            **t.extra,
        }
        rule = f"promotion_{t.kind}"
        sink.emit([Decision("promotion", "", t.step_id, rule, "flag", "enforce", detail=detail)])

    return announce


def attach_promotion(sidecar: Sidecar) -> None:
    """Wire the store's promotion book to traffic and to the log / records (idempotent)."""
    if any(isinstance(o, PromotionObserver) for o in sidecar.observers):
        return
    sidecar.observers.append(PromotionObserver())
    sidecar.store.promotions.listeners.append(announcer(sidecar.sink))
