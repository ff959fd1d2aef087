"""Confidence of a suggested threshold (Wilson intervals, too few labels) and the review CLI."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from proxy.__main__ import main
from proxy.observability import capture_store
from proxy.observability.calibrate import RuleCalibration, confidence_text
from proxy.observability.calibrate_stats import effective_n, needed, wilson


def test_wilson_interval_known_values() -> None:
    low, high = wilson(0.5, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    low, high = wilson(0.0, 100)
    assert low == 0.0 and high == pytest.approx(0.0370, abs=1e-3)  # near the "rule of three"
    assert wilson(0.3, 0) == (0.0, 1.0)


def test_effective_n_and_labels_needed() -> None:
    assert effective_n([1.0] * 10) == pytest.approx(10)
    assert effective_n([1.0] * 9 + [91.0]) < 2  # one record carries almost all the weight
    n = needed(0.0, 0.01)
    assert n is not None and wilson(0.0, n)[1] <= 0.01 < wilson(0.0, n - 1)[1]
    assert needed(0.02, 0.01) is None  # the rate itself is over the target


def _cal(negatives: int, positives: int) -> RuleCalibration:
    points = [(0.1, False)] * negatives + [(0.9, True)] * positives
    return RuleCalibration("injection", "injection", "prompt_injection", 0.5, list(points), 0, 0.01)


def test_too_few_labels_is_said_and_enough_is_not() -> None:
    few = _cal(20, 5)
    conf = few.confidence()
    assert conf is not None and conf["enough_labels"] is False
    assert conf["negatives_needed"] == needed(0.0, 0.01)
    assert any("too few labels" in line for line in confidence_text(few))
    many = _cal(1000, 50)
    conf = many.confidence()
    assert conf is not None and conf["enough_labels"] is True
    assert conf["fpr"]["ci95"][1] <= 0.01
    assert not any("too few" in line for line in confidence_text(many))


def _store(root: Path) -> None:
    for rid in ("a", "b"):
        body = {"model": "m", "messages": [{"role": "user", "content": rid}]}
        row = {"id": rid, "request": body, "weight": 2.0}
        capture_store.append(root, orjson.dumps(row), 1 << 20)


def test_review_export_import_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "capture"
    _store(root)
    out = tmp_path / "export.jsonl"
    assert main(["review", "export", "--capture", str(root), "--out", str(out)]) == 0
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert [x["id"] for x in lines] == ["a", "b"]
    lines[0]["label"] = "injection"  # labelled elsewhere; b left alone
    out.write_bytes(b"\n".join(orjson.dumps(x) for x in lines))
    assert main(["review", "import", "--capture", str(root), "--reviewer", "ana", str(out)]) == 0
    assert capture_store.read_labels(root) == {"a": {"labels": {}, "label": "injection"}}
    assert main(["review", "export", "--capture", str(root), "--unlabelled", "--out", str(out)]) == 0
    assert [orjson.loads(x)["id"] for x in out.read_bytes().splitlines()] == ["b"]


def test_review_import_is_all_or_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "capture"
    _store(root)
    bad = tmp_path / "labels.jsonl"
    bad.write_text('{"id": "a", "label": "benign"}\n{"id": "zzz", "label": "benign"}\n')
    assert main(["review", "import", "--capture", str(root), str(bad)]) == 1
    assert f"{bad}:2" in capsys.readouterr().err
    assert capture_store.read_labels(root) == {}
    assert main(["review", "export", "--capture", str(tmp_path / "missing")]) == 1


def test_review_key_prints_a_usable_key(capsys: pytest.CaptureFixture[str]) -> None:
    from proxy.observability.capture_crypto import parse_key

    assert main(["review", "key"]) == 0
    assert len(parse_key(capsys.readouterr().out)) == 32


def test_check_warns_when_the_capture_key_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\nupstreams:\n  default:\n    base_url: builtin:demo\n"
        f"observability:\n  capture:\n    dir: {tmp_path}\n    text: encrypted\n    key_env: H16_KEY\n"
        "plugins: []\n"
    )
    monkeypatch.delenv("H16_KEY", raising=False)
    assert main(["check", str(policy)]) == 0
    assert "H16_KEY is not set" in capsys.readouterr().err
    monkeypatch.setenv("H16_KEY", "anything")
    assert main(["check", str(policy)]) == 0
    assert "H16_KEY" not in capsys.readouterr().err
