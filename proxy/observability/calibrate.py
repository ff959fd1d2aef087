"""``policy-sidecar calibrate``: sweep the thresholds of score-based rules over labelled traffic.

The scores come from the policy's own plugins, replayed offline through the chain (``replay``)
with every step in shadow and ``ctx.record_scores`` set, so a plugin that compares a score to a
threshold also records its score when nothing triggered. Any plugin that records ``score`` and
``threshold`` in its decisions (and honours ``record_scores``, like ``injection`` and
``moderation``) is calibrated; nothing here knows a plugin.

Per rule and record the highest score counts (a request with three user messages is one
example). A record's label decides whether it is a positive example for a rule:

* ``"labels": {"<plugin>/<rule>" | "<rule>" | "<plugin>" | "<category>": true|false}`` — per rule;
* ``"label": "benign"`` — negative for every rule;
* ``"label": "<name>"`` (or a list) — positive for the rules it names (plugin id or type, rule,
  or the category suffix of a rule: ``violence`` names ``input_violence``), negative for the rest;
* no label — not used.

A rule triggers when ``score >= threshold`` (the plugins' convention). The suggested threshold
catches the most positives while the false-positive rate on the negatives stays within the
target and, among those, has the fewest false positives; it is placed halfway between two
observed scores so it does not sit on an example.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxy.chain.registry import Registry
from proxy.observability.calibrate_stats import RateEstimate, needed
from proxy.observability.replay import Compiled, RecordRun, TrafficRecord, load_traffic, replay_all

#: (score, positive) or (score, positive, weight): a captured record weighs 1 / its inclusion
#: probability, so the sums below estimate counts on the whole traffic (Horvitz-Thompson).
Point = tuple[float, bool] | tuple[float, bool, float]


def weight(point: Point) -> float:
    return point[2] if len(point) > 2 else 1.0


def _names_rule(name: str, plugin: str, plugin_type: str, rule: str) -> bool:
    return name in (plugin, plugin_type, rule, f"{plugin}/{rule}") or rule.endswith(f"_{name}")


def label_for(record: TrafficRecord, plugin: str, plugin_type: str, rule: str) -> bool | None:
    """Is ``record`` a positive (True) or negative (False) example for this rule, or unlabelled."""
    for key in (f"{plugin}/{rule}", rule, plugin, plugin_type):
        if key in record.labels:
            return record.labels[key]
    for key, value in record.labels.items():
        if rule.endswith(f"_{key}"):
            return value
    if record.label is None:
        return None
    return any(_names_rule(n, plugin, plugin_type, rule) for n in record.label if n != "benign")


@dataclass
class Row:
    """Counts at one threshold; weighted sums (floats) when the points carry weights."""

    threshold: float
    tp: float
    fp: float
    fn: float
    tn: float

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def fpr(self) -> float | None:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else None

    @property
    def trigger_rate(self) -> float:
        n = self.tp + self.fp + self.fn + self.tn
        return (self.tp + self.fp) / n if n else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "precision": self.precision,
            "recall": self.recall,
            "fpr": self.fpr,
            "trigger_rate": self.trigger_rate,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
        }


def at(points: Sequence[Point], threshold: float) -> Row:
    tp = sum(weight(pt) for pt in points if pt[1] and pt[0] >= threshold)
    fp = sum(weight(pt) for pt in points if not pt[1] and pt[0] >= threshold)
    positives = sum(weight(pt) for pt in points if pt[1])
    negatives = sum(weight(pt) for pt in points if not pt[1])
    return Row(threshold, tp, fp, positives - tp, negatives - fp)


def _lowest_within(points: Sequence[Point], target_fpr: float) -> float:
    """The lowest threshold whose FPR on ``points`` is at most ``target_fpr`` (the most recall)."""
    negatives = sorted(((pt[0], weight(pt)) for pt in points if not pt[1]), reverse=True)
    allowed = target_fpr * sum(w for _, w in negatives) + 1e-9  # weight of negatives that may trigger
    seen = 0.0
    must_exclude: float | None = None  # the highest-scoring negative that must not trigger
    for score, w in negatives:
        if seen + w > allowed:
            must_exclude = score
            break
        seen += w
    if must_exclude is None:
        return min(pt[0] for pt in points)  # every negative may trigger: take everything
    above = [pt[0] for pt in points if pt[0] > must_exclude]
    if not above:
        return round(must_exclude + 1e-4, 4)  # nothing above it: trigger on nothing seen
    return _between(must_exclude, min(above))


def _between(low: float, high: float) -> float:
    """A round threshold in (low, high]: halfway, so it does not sit on an example's score."""
    mid = round((low + high) / 2, 4)
    return mid if low < mid <= high else high


def suggest(points: Sequence[Point], target_fpr: float) -> float | None:
    """The threshold that catches the most positives with FPR <= ``target_fpr``; among those, the
    one with the fewest false positives (None without points).

    Raising a threshold up to the lowest positive it still catches costs no recall and can only
    drop false positives, so the answer sits just under that positive, halfway to the next score.
    """
    if not points:
        return None
    lowest = _lowest_within(points, target_fpr)
    caught = [pt[0] for pt in points if pt[1] and pt[0] >= lowest]
    if not caught:
        return _lowest_within(points, 0.0)  # no recall to keep: take the fewest false positives
    floor = min(caught)
    below = [pt[0] for pt in points if pt[0] < floor]
    return _between(max(below), floor) if below else floor


def grid(points: Sequence[Point], step: float) -> list[float]:
    lo = min((pt[0] for pt in points), default=0.0)
    hi = max((pt[0] for pt in points), default=1.0)
    if lo >= 0.0 and hi <= 1.0:
        lo, hi = 0.0, 1.0
    n = max(1, round((hi - lo) / step))
    return [round(lo + i * (hi - lo) / n, 4) for i in range(1, n)]


@dataclass
class RuleCalibration:
    plugin: str
    plugin_type: str
    rule: str
    threshold: float | None
    points: list[Point]
    unlabelled: int
    target_fpr: float
    step: float = 0.1
    suggested: float | None = field(init=False)

    def __post_init__(self) -> None:
        self.suggested = suggest(self.points, self.target_fpr)

    @property
    def key(self) -> str:
        return f"{self.plugin}/{self.rule}"

    @property
    def positives(self) -> int:
        return sum(1 for pt in self.points if pt[1])

    @property
    def negatives(self) -> int:
        return len(self.points) - self.positives

    @property
    def weighted(self) -> bool:
        return any(weight(pt) != 1.0 for pt in self.points)

    def fpr_at(self, threshold: float) -> RateEstimate:
        """The (weighted) false-positive rate at ``threshold`` with its 95% Wilson interval."""
        negs = [pt for pt in self.points if not pt[1]]
        return RateEstimate.of([weight(pt) for pt in negs if pt[0] >= threshold], [weight(pt) for pt in negs])

    def recall_at(self, threshold: float) -> RateEstimate:
        pos = [pt for pt in self.points if pt[1]]
        return RateEstimate.of([weight(pt) for pt in pos if pt[0] >= threshold], [weight(pt) for pt in pos])

    def confidence(self) -> dict[str, Any] | None:
        """How sure the suggestion is: the FPR and recall intervals at the suggested threshold, and
        whether there are enough labels for the interval's upper bound to be within the target."""
        if self.suggested is None:
            return None
        fpr, recall = self.fpr_at(self.suggested), self.recall_at(self.suggested)
        enough = fpr.n_eff > 0 and fpr.high <= self.target_fpr and self.positives > 0
        out: dict[str, Any] = {"fpr": fpr.as_dict(), "recall": recall.as_dict(), "enough_labels": enough}
        if not enough:
            want = needed(fpr.rate or 0.0, self.target_fpr) if fpr.n_eff > 0 else needed(0.0, self.target_fpr)
            out["negatives_needed"] = want  # effective negative labels for the bound to fit the target
        return out

    def rows(self) -> list[Row]:
        return [at(self.points, t) for t in grid(self.points, self.step)]

    def marked_rows(self) -> list[tuple[Row, str]]:
        """The sweep plus the current and suggested thresholds, in order, each threshold once."""
        marks: dict[float, list[str]] = {r.threshold: [] for r in self.rows()}
        if self.threshold is not None:
            marks.setdefault(self.threshold, []).append("current")
        if self.suggested is not None:
            marks.setdefault(self.suggested, []).append("suggested")
        return [(at(self.points, t), ", ".join(m)) for t, m in sorted(marks.items())]

    def as_dict(self) -> dict[str, Any]:
        return {
            "plugin": self.plugin,
            "rule": self.rule,
            "threshold": self.threshold,
            "positives": self.positives,
            "negatives": self.negatives,
            "unlabelled": self.unlabelled,
            "current": at(self.points, self.threshold).as_dict() if self.threshold is not None else None,
            "suggested_threshold": self.suggested,
            "suggested": at(self.points, self.suggested).as_dict() if self.suggested is not None else None,
            "sweep": [r.as_dict() for r in self.rows()],
            "weighted": self.weighted,
            "confidence": self.confidence(),
        }


def collect(
    runs: Sequence[RecordRun], plugin_types: dict[str, str], target_fpr: float, step: float = 0.1
) -> list[RuleCalibration]:
    """Per score-based rule, the highest score of each record with its label."""
    scores: dict[tuple[str, str], dict[int, float]] = {}
    thresholds: dict[tuple[str, str], Counter[float]] = {}
    for i, run in enumerate(runs):
        for d in run.decisions:
            if d.score is None or d.threshold is None:
                continue
            key = (d.plugin, d.rule)
            per = scores.setdefault(key, {})
            per[i] = max(per.get(i, d.score), d.score)
            thresholds.setdefault(key, Counter())[d.threshold] += 1
    out = []
    for (plugin, rule), per_record in sorted(scores.items()):
        ptype = plugin_types.get(plugin, plugin)
        points: list[Point] = []
        unlabelled = 0
        for i, score in sorted(per_record.items()):
            record = runs[i].record
            label = label_for(record, plugin, ptype, rule)
            if label is None:
                unlabelled += 1
            elif record.weight != 1.0:
                points.append((score, label, record.weight))
            else:
                points.append((score, label))
        current = thresholds[(plugin, rule)].most_common(1)[0][0]
        out.append(RuleCalibration(plugin, ptype, rule, current, points, unlabelled, target_fpr, step))
    return out


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def confidence_text(cal: RuleCalibration) -> list[str]:
    """The suggestion's uncertainty in words (shared by the text output and the HTML report)."""
    conf = cal.confidence()
    if conf is None:
        return []
    fpr, recall = conf["fpr"], conf["recall"]
    weighted = "weighted by inclusion, " if cal.weighted else ""
    out = [
        f"fpr {_f(fpr['rate'])} (95% CI {_f(fpr['ci95'][0])}-{_f(fpr['ci95'][1])}, {weighted}"
        f"{fpr['n_eff']:g} effective negatives); recall {_f(recall['rate'])} "
        f"(95% CI {_f(recall['ci95'][0])}-{_f(recall['ci95'][1])})"
    ]
    if not conf["enough_labels"]:
        want = conf.get("negatives_needed")
        if not cal.positives:
            more = "label some positives"
        elif want:
            more = f"about {want} effective negatives are needed ({fpr['n_eff']:g} now)"
        else:
            more = "label more, or use a better-separating detector"
        out.append(
            f"too few labels: the false-positive rate could be above {cal.target_fpr:g}; {more} "
            "before enforcing this threshold"
        )
    return out


def _confidence_lines(cal: RuleCalibration) -> list[str]:
    return [f"  {line}" for line in confidence_text(cal)]


def format_text(cals: Sequence[RuleCalibration], target_fpr: float, records: int) -> str:
    lines = [f"calibrate: {records} records; target false-positive rate {target_fpr:g}", ""]
    quiet = []
    for cal in cals:
        if not cal.positives:
            quiet.append(cal)
            continue
        lines.append(
            f"{cal.plugin} / {cal.rule}: {len(cal.points)} labelled ({cal.positives} positive, "
            f"{cal.negatives} negative), {cal.unlabelled} unlabelled; current threshold {_f(cal.threshold)}"
        )
        lines.append("  threshold  precision  recall  fpr    trigger rate")
        for row, mark in cal.marked_rows():
            lines.append(
                f"  {row.threshold:>9.4f}  {_f(row.precision):>9}  {_f(row.recall):>6}  "
                f"{_f(row.fpr):>5}  {row.trigger_rate:>12.3f}{'  <- ' + mark if mark else ''}"
            )
        if cal.suggested is not None:
            s = at(cal.points, cal.suggested)
            lines.append(
                f"  suggested threshold for fpr <= {target_fpr:g}: {cal.suggested:.4f} "
                f"(precision {_f(s.precision)}, recall {_f(s.recall)}, fpr {_f(s.fpr)})"
            )
            if not s.tp:
                lines.append(
                    "  no threshold within the target catches any positive: more data, or a better detector"
                )
            lines.extend(_confidence_lines(cal))
        lines.append("")
    if quiet:
        lines.append("rules scored but without positive labels (only the false-positive rate is known):")
        for cal in quiet:
            cur = at(cal.points, cal.threshold) if cal.threshold is not None else None
            lines.append(
                f"  {cal.plugin} / {cal.rule}: {len(cal.points)} negatives, triggers at the current "
                f"threshold {_f(cal.threshold)}: {cur.fp if cur else '-'} "
                f"(fpr {_f(cur.fpr if cur else None)})"
            )
    if not cals:
        lines.append(
            "no score-based rule recorded a score: does the policy have injection or moderation steps?"
        )
    return "\n".join(lines)


@dataclass
class CalibrationRun:
    records: int
    target_fpr: float
    policy: str
    revision: str
    rules: list[RuleCalibration]

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "target_fpr": self.target_fpr,
            "policy": self.policy,
            "revision": self.revision,
            "rules": [c.as_dict() for c in self.rules],
        }

    def text(self) -> str:
        return format_text(self.rules, self.target_fpr, self.records)


def run(
    policy: Path,
    traffic: Path,
    *,
    target_fpr: float = 0.01,
    step: float = 0.1,
    registry: Registry | None = None,
) -> CalibrationRun:
    records = load_traffic(traffic)
    compiled = Compiled(policy, registry)
    candidate = compiled.compile(policy)
    types = {s.id: s.plugin.config.type for s in candidate.chain.steps}

    async def go() -> list[RecordRun]:
        try:
            return await replay_all(candidate, records, mode="shadow", record_scores=True)
        finally:
            await compiled.aclose()

    runs = asyncio.run(go())
    cals = collect(runs, types, target_fpr, step)
    return CalibrationRun(len(records), target_fpr, str(policy), candidate.revision, cals)
