"""Decision records: one structured record per plugin decision, and where they go.

Records feed the log, counters (for metrics), a bounded in-memory ring (admin read-out and
tests) and, later, span events and a JSONL sink. They never hold raw prompt text: plugins put
counts, types and scores in ``detail``, not values.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger("policy_sidecar.decisions")

#: Every action a built-in step records (the decision log's ``actions`` filter is checked against it).
ACTIONS = (
    "allow", "block", "redact", "mask", "hash", "flag", "reroute", "limit", "reply", "repair", "stop",
    "error",
)  # fmt: skip


@dataclass(slots=True)
class Decision:
    request_id: str
    revision: str
    plugin: str
    rule: str
    action: str
    mode: str
    score: float | None = None
    threshold: float | None = None
    latency_ms: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class DecisionSink:
    """Process-wide collector; survives policy reloads."""

    def __init__(self, keep: int = 1000) -> None:
        self.recent: deque[Decision] = deque(maxlen=keep)
        self.counts: Counter[tuple[str, str, str, str]] = Counter()

    def emit(self, decisions: Iterable[Decision]) -> None:
        for d in decisions:
            self.recent.append(d)
            self.counts[(d.plugin, d.rule, d.action, d.mode)] += 1
            # DEBUG, not INFO: at INFO every decision was printed up to three times (this line,
            # the decision log when it is on stdout, the access log's summary). The full record
            # belongs to the decision log (observability.decision_log) and /admin/decisions;
            # the access log names each decision of its request.
            if log.isEnabledFor(logging.DEBUG):
                log.debug("decision", extra=d.as_dict())

    def snapshot(self) -> list[dict[str, Any]]:
        return [
            {"plugin": p, "rule": r, "action": a, "mode": m, "count": n}
            for (p, r, a, m), n in sorted(self.counts.items())
        ]
