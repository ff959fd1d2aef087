"""``calibrate``: threshold sweeps over labelled traffic, a suggested threshold, the HTML report."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import pytest

from proxy.__main__ import main
from proxy.chain import Plugin, PluginConfig, Reply, RequestContext
from proxy.chain.registry import default_registry
from proxy.errors import Rejected
from proxy.models import ChatRequest
from proxy.models.chat import Route
from proxy.observability import calibrate
from proxy.observability.calibrate import Point, at, label_for, suggest
from proxy.observability.calibrate_report import render
from proxy.observability.replay import TrafficRecord, load_traffic

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "calibration"


class ScoreConfig(PluginConfig):
    type: Literal["test_score"] = "test_score"
    threshold: float = 0.5


class ScorePlugin(Plugin[ScoreConfig]):
    """Scores a prompt by the number written in it: ``score=0.42``. Honours ``record_scores``."""

    Config = ScoreConfig

    async def on_request(self, req: ChatRequest, ctx: RequestContext) -> Reply | None:
        for slot in req.text_slots():
            m = re.search(r"score=([0-9.]+)", slot.text)
            if m is None:
                continue
            score, threshold = float(m.group(1)), self.config.threshold
            if score >= threshold:
                ctx.record("number", "block", score=score, threshold=threshold)
                raise Rejected("no", code="number")
            if ctx.record_scores:
                ctx.record("number", "allow", score=score, threshold=threshold)
        return None


NEG = [0.1, 0.2, 0.3, 0.4]
POS = [0.35, 0.5, 0.6]
POINTS: list[Point] = [(s, False) for s in NEG] + [(s, True) for s in POS]


def test_metrics_at_a_threshold() -> None:
    row = at(POINTS, 0.35)
    assert (row.tp, row.fp, row.fn, row.tn) == (3, 1, 0, 3)
    assert row.precision == 0.75 and row.recall == 1.0 and row.fpr == 0.25
    assert row.trigger_rate == pytest.approx(4 / 7)
    assert at(POINTS, 0.99).precision is None  # nothing triggers: precision undefined, not 0


def test_suggested_threshold_is_the_lowest_within_the_target() -> None:
    # One false positive in four allowed: exclude 0.3 (the second-highest negative) and take
    # everything above it; halfway to the next score, 0.35.
    assert suggest(POINTS, 0.25) == 0.325
    t = suggest(POINTS, 0.25)
    assert t is not None and at(POINTS, t).fpr == 0.25 and at(POINTS, t).recall == 1.0
    # None allowed: above the highest negative (0.4), up to the next score (0.5).
    assert suggest(POINTS, 0.0) == 0.45 and at(POINTS, 0.45).recall == pytest.approx(2 / 3)
    assert suggest(POINTS, 0.01) == 0.45  # 1% of four negatives is still zero of them
    assert suggest([(0.2, True), (0.7, True)], 0.01) == 0.2  # no negatives: catch everything
    assert suggest([(0.9, False)], 0.0) == 0.9001  # nothing above the negative
    assert suggest([], 0.01) is None


def test_among_thresholds_with_equal_recall_the_fewest_false_positives_win() -> None:
    points: list[Point] = [(0.1, False), (0.2, False), (0.5, True), (0.6, True)]
    # 0.15 would be within a 50% target and catch both positives; 0.35 catches both with no
    # false positive at all.
    assert suggest(points, 0.5) == 0.35
    assert at(points, 0.35).fpr == 0.0 and at(points, 0.35).recall == 1.0


def _rec(label: Any = None, labels: dict[str, bool] | None = None) -> TrafficRecord:
    return TrafficRecord("r", Route.CHAT, {}, label=label, labels=labels or {})


def test_labels_name_rules_by_plugin_rule_or_category() -> None:
    assert label_for(_rec(("injection",)), "injection", "injection", "prompt_injection") is True
    assert label_for(_rec(("benign",)), "injection", "injection", "prompt_injection") is False
    assert label_for(_rec(("violence",)), "mod", "moderation", "input_violence") is True
    assert label_for(_rec(("violence",)), "mod", "moderation", "input_self-harm") is False
    assert label_for(_rec(("injection",)), "mod", "moderation", "input_violence") is False
    assert label_for(_rec(None), "mod", "moderation", "input_violence") is None
    per_rule = _rec(("benign",), {"mod/input_violence": True})
    assert label_for(per_rule, "mod", "moderation", "input_violence") is True
    assert label_for(_rec(None, {"violence": False}), "mod", "moderation", "output_violence") is False


def _labelled(tmp_path: Path) -> Path:
    rows = [
        {
            "request": {"model": "m", "messages": [{"role": "user", "content": f"score={s}"}]},
            "label": "benign",
        }
        for s in NEG
    ]
    rows += [
        {
            "request": {"model": "m", "messages": [{"role": "user", "content": f"score={s}"}]},
            "label": "number",
        }
        for s in POS
    ]
    rows.append(
        {"request": {"model": "m", "messages": [{"role": "user", "content": "score=0.9"}]}}
    )  # unlabelled
    path = tmp_path / "l.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_calibrate_end_to_end_on_a_known_set(tmp_path: Path) -> None:
    registry = default_registry()
    registry.register(ScorePlugin)
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nplugins:\n  - {type: test_score, id: num, threshold: 0.5}\n")
    result = calibrate.run(policy, _labelled(tmp_path), target_fpr=0.25, registry=registry)
    (cal,) = result.rules
    assert (cal.plugin, cal.rule, cal.threshold) == ("num", "number", 0.5)
    assert sorted(cal.points) == sorted(POINTS) and cal.unlabelled == 1
    assert cal.suggested == 0.325
    text = result.text()
    assert "num / number: 7 labelled (3 positive, 4 negative), 1 unlabelled" in text
    assert "0.3250      0.750   1.000  0.250         0.571  <- suggested" in text
    assert "0.5000      1.000   0.667  0.000         0.286  <- current" in text
    html = render(result)
    assert html.count("<svg") == 2 and 'data-rule="num/number"' in html


def test_the_shipped_labelled_examples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.html"
    args = ["calibrate", "--policy", str(EXAMPLES / "candidate.yaml"), "--target-fpr", "0.05"]
    assert main([*args, "--json", "--html", str(report), str(EXAMPLES / "traffic_labelled.jsonl")]) == 0
    result = json.loads(capsys.readouterr().out)
    records = load_traffic(EXAMPLES / "traffic_labelled.jsonl")
    rules = {f"{r['plugin']}/{r['rule']}": r for r in result["rules"]}
    inj = rules["injection/prompt_injection"]
    # Every labelled record is scored; the counts are the file's labels.
    assert inj["positives"] == sum(1 for r in records if r.label and "injection" in r.label)
    assert inj["positives"] + inj["negatives"] == len(records)
    assert rules["moderation/input_violence"]["positives"] == sum(
        1 for r in records if r.label and "violence" in r.label
    )
    for rule in rules.values():
        if not rule["positives"]:
            continue
        best = rule["suggested"]
        # The suggestion keeps within the target, and no sweep threshold that also does catches more.
        assert best["fpr"] <= 0.05
        within = [row for row in rule["sweep"] if row["fpr"] <= 0.05]
        assert all(row["recall"] <= best["recall"] for row in within)
        assert all(row["fpr"] >= best["fpr"] for row in within if row["recall"] == best["recall"])
    html = report.read_text()
    assert html.count("<section") == len(rules) and html.count("<svg") == 2 * len(rules)
    assert "<script" not in html and not re.search(r"(src|href)=\"https?:", html)  # self-contained
