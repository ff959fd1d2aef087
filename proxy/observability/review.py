"""What the review page shows: captured records by rule and score band, labels, agreement.

Why bands relative to each rule's threshold (``observability.capture.band`` wide): a reviewer's
time is best spent just either side of the threshold, where a label can move it; "far above"
and "far below" are there to check the easy cases are really easy.

Agreement is with the policy that captured each record: a rule "said yes" when its score reached
its threshold (or, for rules without a score, when it acted: block, redact, flag...). The page
shows, per rule, how many labelled records the rule got right, plain and weighted by inclusion
(the weighted figure estimates agreement on the whole traffic, not on the sample).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from proxy.detectors.moderation.rules import CATEGORIES
from proxy.models.chat import Route
from proxy.observability import capture_store
from proxy.observability.calibrate import label_for
from proxy.observability.replay import TrafficRecord

BANDS = ("far below", "just below", "just above", "far above", "unscored")
QUIET = frozenset({"allow"})


def band_of(score: float | None, threshold: float | None, width: float) -> str:
    if score is None or threshold is None:
        return "unscored"
    d = score - threshold
    if d < -width:
        return "far below"
    if d < 0:
        return "just below"
    return "just above" if d < width else "far above"


def said_yes(decision: dict[str, Any]) -> bool:
    score, threshold = decision.get("score"), decision.get("threshold")
    if isinstance(score, int | float) and isinstance(threshold, int | float):
        return score >= threshold
    return decision.get("action") not in QUIET


def rules_of(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per ``plugin/rule``, the record's strongest decision (highest score, else any acting one)."""
    out: dict[str, dict[str, Any]] = {}
    for d in raw.get("decisions") or []:
        if not isinstance(d, dict) or "plugin" not in d or "rule" not in d:
            continue
        if d.get("score") is None and d.get("action") in QUIET:
            continue  # nothing to review: an unscored allow
        key = f"{d['plugin']}/{d['rule']}"
        seen = out.get(key)
        if seen is None or (d.get("score") or 0.0) > (seen.get("score") or 0.0):
            out[key] = d
    return out


def verdict(labels: dict[str, Any] | None, decision: dict[str, Any]) -> bool | None:
    """The reviewer's answer for this rule (calibrate's label rules), or None when unlabelled."""
    if labels is None:
        return None
    label = labels.get("label")
    record = TrafficRecord(
        "",
        Route.CHAT,
        {},
        label=(label,) if isinstance(label, str) else None,
        labels=labels.get("labels") or {},
    )
    plugin, rule = str(decision["plugin"]), str(decision["rule"])
    return label_for(record, plugin, plugin, rule)


def view(
    root: Path,
    width: float,
    *,
    rule: str | None = None,
    band: str | None = None,
    unlabelled_only: bool = False,
    limit: int = 200,
) -> dict[str, Any]:
    """The JSON the page renders: per-rule agreement over the whole store, and the newest matching
    records (text as stored: redacted, or sealed for the browser to open)."""
    records = capture_store.read_records(root)
    labels = capture_store.read_labels(root)
    stats: dict[str, dict[str, Any]] = {}
    shown: list[dict[str, Any]] = []
    for raw in records:
        rid = str(raw.get("id"))
        weight = float(raw.get("weight") or 1.0)
        lab = labels.get(rid)
        rows = []
        for key, d in sorted(rules_of(raw).items()):
            s = stats.setdefault(
                key,
                {"rule": key, "records": 0, "labelled": 0, "agree": 0, "weight": 0.0, "agree_weight": 0.0},
            )
            s["records"] += 1
            yes, truth = said_yes(d), verdict(lab, d)
            if truth is not None:
                s["labelled"] += 1
                s["weight"] += weight
                if truth == yes:
                    s["agree"] += 1
                    s["agree_weight"] += weight
            rows.append(
                {
                    "rule": key,
                    "plugin": d["plugin"],
                    "score": d.get("score"),
                    "threshold": d.get("threshold"),
                    "action": d.get("action"),
                    "mode": d.get("mode"),
                    "band": band_of(d.get("score"), d.get("threshold"), width),
                    "policy_says": yes,
                    "label": truth,
                }
            )
        if _matches(rows, rule, band) and not (unlabelled_only and lab is not None):
            shown.append(_record_view(raw, rows, lab))
    shown.reverse()  # newest first
    return {
        "records_total": len(records),
        "bands": list(BANDS),
        "categories": list(CATEGORIES),  # what a reviewer may call a harmful record
        "rules": [_agreement(s) for _, s in sorted(stats.items())],
        "records": shown[:limit],
    }


def _matches(rows: Iterable[dict[str, Any]], rule: str | None, band: str | None) -> bool:
    return any((rule is None or r["rule"] == rule) and (band is None or r["band"] == band) for r in rows)


def _agreement(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "rule": s["rule"],
        "records": s["records"],
        "labelled": s["labelled"],
        "agreement": s["agree"] / s["labelled"] if s["labelled"] else None,
        "weighted_agreement": s["agree_weight"] / s["weight"] if s["weight"] else None,
    }


#: What the page shows of a record besides its rules and text.
KEYS = ("id", "ts", "tenant", "route", "path", "status", "weight", "inclusion", "text", "response_truncated")


def _record_view(
    raw: dict[str, Any], rows: list[dict[str, Any]], lab: dict[str, Any] | None
) -> dict[str, Any]:
    out = {k: raw.get(k) for k in KEYS}
    out["rules"] = rows
    out["label"] = lab
    if isinstance(raw.get("sealed"), dict):
        out["sealed"] = raw["sealed"]  # opened in the reviewer's browser, with the key they hold
    else:
        out["request"], out["response"] = raw.get("request"), raw.get("response")
    return out
