"""``replay``: recorded traffic through a policy's own chain, offline, candidate against baseline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from proxy.__main__ import main
from proxy.errors import ConfigError
from proxy.observability import replay
from proxy.observability.replay import load_traffic

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "calibration"

# An upstream nobody listens on: replay must never try to reach it.
HEAD = "version: 1\nupstreams: {default: {base_url: 'http://127.0.0.1:9', connect_timeout: 0.2}}\n"
TWO_RULES = (
    HEAD
    + "plugins:\n"
    + "  - {type: blocklist, id: foo, keywords: [foo], action: block, scan_response: false}\n"
    + "  - {type: blocklist, id: bar, keywords: [bar], action: block, scan_response: false}\n"
    + "  - {type: blocklist, id: out, keywords: [leak], action: redact, scan_request: false}\n"
)


def _write(tmp_path: Path, name: str, rows: list[dict[str, Any]]) -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _chat(text: str) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}]}


def _answer(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


@pytest.fixture
def traffic(tmp_path: Path) -> Path:
    return _write(
        tmp_path,
        "t.jsonl",
        [
            {"id": "both", "request": _chat("foo and bar"), "response": _answer("a leak here")},
            {"id": "bar", "request": _chat("only bar")},
            {"id": "clean", "request": _chat("nothing"), "response": _answer("leak, leak")},
            {"id": "bad", "request": {"messages": []}},
        ],
    )


def _counts(report: replay.ReplayReport) -> dict[str, dict[str, int]]:
    return {
        row["plugin"]: {a: row[a]["candidate"] for a in ("block", "redact") if row[a]["candidate"]}
        for row in report.rules
    }


def test_forced_shadow_lets_every_rule_see_every_request(tmp_path: Path, traffic: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(TWO_RULES)
    report = replay.run(policy, traffic)
    # "both" is counted by foo and by bar; its recorded answer is still checked (shadow).
    assert _counts(report) == {"foo": {"block": 1}, "bar": {"block": 2}, "out": {"redact": 2}}
    assert report.invalid == 1 and report.records == 4 and report.with_response == 2
    assert report.candidate["requests"] == {"block": 2, "redact": 2, "flag": 0}


def test_as_configured_stops_at_the_first_enforced_refusal(tmp_path: Path, traffic: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(TWO_RULES)
    report = replay.run(policy, traffic, as_configured=True)
    # foo refuses "both" first: bar never sees it, and its answer is never checked.
    assert _counts(report) == {"foo": {"block": 1}, "bar": {"block": 1}, "out": {"redact": 1}}
    assert report.candidate["outcomes"] == {"refused": 2, "passed": 1, "invalid": 1}


def test_candidate_against_baseline_reports_the_delta(tmp_path: Path, traffic: Path) -> None:
    candidate, baseline = tmp_path / "c.yaml", tmp_path / "b.yaml"
    candidate.write_text(TWO_RULES)
    baseline.write_text(HEAD + "plugins:\n  - {type: blocklist, id: bar, keywords: [and], action: block}\n")
    report = replay.run(candidate, traffic, baseline)
    rows = {r["plugin"]: r for r in report.rules}
    assert rows["bar"]["block"] == {"candidate": 2, "baseline": 1, "delta": 1}
    assert rows["foo"]["block"] == {"candidate": 1, "baseline": 0, "delta": 1}
    text = replay.format_report(report)
    assert "bar / request_match" in text and "2 / 1 / +1" in text


def test_a_streamed_request_replays_its_answer_through_the_stream_filters(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        HEAD + "plugins:\n  - {type: blocklist, id: w, keywords: [supercalifragilistic], action: redact}\n"
    )
    answer = _answer("and the word is supercalifragilistic, said Mary")  # longer than one delta
    rows = [
        {"id": "s", "request": {**_chat("hi"), "stream": True}, "response": answer},
        {"id": "n", "request": _chat("hi"), "response": answer},
    ]
    report = replay.run(policy, _write(tmp_path, "t.jsonl", rows))
    assert report.streamed == 1
    rules = {r["rule"]: r["redact"]["candidate"] for r in report.rules}
    assert rules == {"stream_match": 1, "response_match": 1}


def test_traffic_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"request": {"model": "m", "messages": []}}\n\n{"request": 3}\n')
    with pytest.raises(ConfigError) as info:
        load_traffic(path)
    assert f"{path}:3" in str(info.value)
    path.write_text("not json\n")
    with pytest.raises(ConfigError, match=":1"):
        load_traffic(path)


def test_the_shipped_examples_replay(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--policy", str(EXAMPLES / "candidate.yaml"), "--baseline", str(EXAMPLES / "baseline.yaml")]
    assert main(["replay", *args, "--json", str(EXAMPLES / "traffic.jsonl")]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {(r["plugin"], r["rule"]): r for r in report["rules"]}
    assert report["records"] == len(load_traffic(EXAMPLES / "traffic.jsonl"))
    assert report["invalid"] == 0
    # Deterministic rules: one recorded prompt carries a key, two name a competitor (shadow rule
    # that only the candidate has).
    assert rows[("secrets", "request_match")]["redact"] == {"candidate": 1, "baseline": 1, "delta": 0}
    assert rows[("competitor-names", "request_match")]["block"] == {"candidate": 2, "baseline": 0, "delta": 2}
    # The candidate lowers the injection threshold: it can only block more, never less.
    injection = rows[("injection", "prompt_injection")]["block"]
    assert injection["baseline"] >= 5 and injection["delta"] >= 0
    # Only the candidate checks answers.
    outputs = [r for (p, rule), r in rows.items() if p == "moderation" and rule.startswith("output_")]
    assert outputs and all(r[a]["baseline"] == 0 for r in outputs for a in ("block", "flag"))
    assert main(["replay", *args, str(EXAMPLES / "traffic.jsonl")]) == 0
    assert "competitor-names / request_match" in capsys.readouterr().out


def test_cli_reports_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "t.jsonl"
    bad.write_text("[1]\n")
    assert main(["replay", "--policy", str(EXAMPLES / "candidate.yaml"), str(bad)]) == 1
    assert "t.jsonl:1" in capsys.readouterr().err
