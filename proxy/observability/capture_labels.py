"""Review labels as the promotion book's label source: staged rollout meets the review page.

``promote: {max_false_positive_rate: ...}`` rolls a rule back when reviewers mark too many of its
hits benign (``proxy.policy.promotion.LabelSource``). The labels live in the capture store the
review page appends to (``capture_store``), so this module counts, per step, the captured hits
since the promotion started and how many of them reviewers labelled benign, with the same rules
the review page uses to decide what a rule "said" and what a label means (``review.said_yes``,
``review.verdict``).

The book asks on the request path (at most every 30 s per step). Reading a store of many
megabytes there would stall the event loop, so the count is refreshed on a worker thread and the
book gets the last finished count — at worst one refresh behind, which is what a rollout that
waits ``min_minutes`` per stage can afford. ``refresh()`` runs the count synchronously (tests,
the CLI).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from proxy.observability import capture_store
from proxy.observability.review import rules_of, said_yes, verdict
from proxy.policy.compiler import CompiledPolicy

log = logging.getLogger("policy_sidecar.capture")

Counts = tuple[int, int]  # (false positives, labelled hits)


def count_labelled_hits(
    records: list[dict[str, Any]], labels: dict[str, dict[str, Any]], step_id: str, since: float
) -> Counts:
    """Among ``records`` captured at or after ``since``: the step's hits that carry a label, and
    how many of those the label calls wrong (benign, or ``labels[rule] = false``)."""
    false_positives = labelled = 0
    for raw in records:
        ts = raw.get("ts")
        if not isinstance(ts, int | float) or ts < since:
            continue
        found = labels.get(str(raw.get("id")))
        if found is None:
            continue
        for decision in rules_of(raw).values():
            if decision.get("plugin") != step_id or not said_yes(decision):
                continue
            answer = verdict(found, decision)
            if answer is None:
                continue
            labelled += 1
            false_positives += answer is False
    return false_positives, labelled


class CaptureLabels:
    """``LabelSource`` over one capture directory; counts refreshed off the event loop."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._counts: dict[tuple[str, float], Counts] = {}
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    def labelled_hits(self, step_id: str, since: float) -> Counts:
        """The last finished count for ``(step_id, since)``; starts a refresh in the background."""
        key = (step_id, since)
        with self._lock:
            known = self._counts.setdefault(key, (0, 0))
            busy = self._worker is not None and self._worker.is_alive()
            if not busy:
                worker = threading.Thread(target=self._refresh_logged, name="capture-labels", daemon=True)
                self._worker = worker
                worker.start()
        return known

    def refresh(self) -> None:
        """Recount every key asked for so far (one read of the store for all of them)."""
        with self._lock:
            keys = list(self._counts)
        records = capture_store.read_records(self.root)
        labels = capture_store.read_labels(self.root)
        fresh = {key: count_labelled_hits(records, labels, *key) for key in keys}
        with self._lock:
            self._counts.update(fresh)

    def _refresh_logged(self) -> None:
        try:
            self.refresh()
        except Exception:  # a broken store must not take the rollout down; the book sees old counts
            log.exception("counting review labels in %s failed", self.root)


def attach_to_promotions(policy: CompiledPolicy, root: Path) -> None:
    """Give the policy's promotion book this capture store as its label source, unless the book
    already reads another source someone installed on purpose. Cheap: called per captured request."""
    book = policy.promotions
    if book is None or not policy.promotion_keys:
        return
    current = book.labels
    if current is None or (isinstance(current, CaptureLabels) and current.root != root):
        book.labels = CaptureLabels(root)
