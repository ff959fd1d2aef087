"""Sampled capture: the sampler, weighted estimates on a known population, sealing, the store.

The population test is the point of inclusion weights: with sampling stratified toward the
threshold, the *unweighted* false-positive rate of the sample is far from the population's,
and the weighted (Horvitz-Thompson) estimate is close to it.
"""

from __future__ import annotations

import base64
import os
import random
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from proxy.chain.context import ActiveStep, RequestContext
from proxy.chain.plugin import Outcome
from proxy.errors import ConfigError, InvalidRequest
from proxy.models.chat import Route
from proxy.observability import capture_crypto, capture_store
from proxy.observability.calibrate import RuleCalibration, at
from proxy.observability.capture import Capture, Item, build_record, inclusion
from proxy.observability.replay import load_capture, load_traffic
from proxy.policy.observability import CaptureConfig

THRESHOLD = 0.5


def test_inclusion_peaks_at_the_threshold_and_falls_to_the_base_rate() -> None:
    cfg = CaptureConfig(dir="x", base_rate=0.01, peak_rate=1.0, band=0.1)
    assert inclusion([(0.5, 0.5)], cfg) == pytest.approx(1.0)
    assert inclusion([(0.55, 0.5)], cfg) > inclusion([(0.65, 0.5)], cfg) > inclusion([(0.9, 0.5)], cfg)
    assert inclusion([(0.0, 0.5)], cfg) == pytest.approx(0.01, abs=1e-4)
    assert inclusion([], cfg) == 0.01  # unscored requests: the uniform floor
    assert inclusion([(0.0, 0.5), (0.5, 0.5)], cfg) == pytest.approx(1.0)  # the closest rule decides


def _population(n: int, rng: random.Random) -> list[tuple[float, bool]]:
    """Mostly benign traffic far below the threshold, a few attacks far above, and a band of
    hard cases of both kinds around it (where the false positives are)."""
    out = []
    for _ in range(n):
        u = rng.random()
        if u < 0.90:
            out.append((rng.uniform(0.0, 0.2), False))
        elif u < 0.95:
            out.append((rng.uniform(0.8, 1.0), True))
        else:
            out.append((rng.uniform(0.35, 0.65), rng.random() < 0.5))
    return out


def test_weighted_estimates_match_a_known_population_and_unweighted_ones_do_not() -> None:
    rng = random.Random(19)
    population = _population(40_000, rng)
    negatives = [s for s, positive in population if not positive]
    true_fpr = sum(1 for s in negatives if s >= THRESHOLD) / len(negatives)
    true_trigger = sum(1 for s, _ in population if s >= THRESHOLD) / len(population)
    cfg = CaptureConfig(dir="x", base_rate=0.02, peak_rate=1.0, band=0.1)
    sample = []
    for score, positive in population:
        p = inclusion([(score, THRESHOLD)], cfg)
        if rng.random() < p:
            sample.append((score, positive, 1.0 / p))
    assert len(sample) < len(population) / 5  # a real sample, not the population
    weighted = at(sample, THRESHOLD)
    plain = at([(s, pos) for s, pos, _ in sample], THRESHOLD)
    assert weighted.fpr == pytest.approx(true_fpr, rel=0.15)
    assert plain.fpr is not None and plain.fpr > 3 * true_fpr  # near-threshold cases over-represented
    assert weighted.trigger_rate == pytest.approx(true_trigger, rel=0.15)
    assert abs(plain.trigger_rate - true_trigger) > 2 * abs(weighted.trigger_rate - true_trigger)
    cal = RuleCalibration("injection", "injection", "prompt_injection", THRESHOLD, list(sample), 0, 0.02)
    estimate = cal.fpr_at(THRESHOLD)
    assert estimate.low <= true_fpr <= estimate.high  # the interval covers the truth
    assert estimate.n_eff < sum(1 for _, pos, _ in sample if not pos)  # weights cost effective size


KEY = base64.b64encode(bytes(range(32))).decode()
OTHER = base64.b64encode(bytes(range(1, 33))).decode()


def _item(cfg: CaptureConfig, rid: str = "r1", text: str = "mail ann@example.com now") -> Item:
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    row: dict[str, Any] = {
        "id": rid,
        "route": "chat.completions",
        "weight": 4.0,
        "inclusion": 0.25,
        "decisions": [{"plugin": "injection", "rule": "prompt_injection", "score": 0.4, "threshold": 0.5}],
    }
    return Item(cfg, None, row, orjson.dumps(body), None)


def test_encryption_round_trip_and_wrong_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_CAPTURE_KEY", KEY)
    cfg = CaptureConfig(dir=str(tmp_path), text="encrypted", key_env="TEST_CAPTURE_KEY")
    record = build_record(_item(cfg))
    line = orjson.dumps(record)
    assert b"ann@example.com" not in line and b"request" not in line  # nothing in clear
    capture_store.append(tmp_path, line, 1 << 20)
    (opened,) = load_capture(tmp_path)  # what replay / calibrate read
    assert opened.request["messages"][0]["content"] == "mail ann@example.com now"
    assert opened.weight == 4.0
    monkeypatch.setenv("TEST_CAPTURE_KEY", OTHER)
    with pytest.raises(ConfigError, match="wrong key"):
        load_capture(tmp_path)
    # the same wrong key without the fingerprint to help: the cipher itself refuses
    sealed = dict(record["sealed"], kid=None)
    with pytest.raises(ConfigError, match="cannot decrypt"):
        capture_crypto.unseal(capture_crypto.parse_key(OTHER), "r1", sealed)
    # moved to another record id: the id is authenticated
    with pytest.raises(ConfigError, match="cannot decrypt"):
        capture_crypto.unseal(capture_crypto.parse_key(KEY), "r2", sealed)
    monkeypatch.delenv("TEST_CAPTURE_KEY")
    with pytest.raises(ConfigError, match="TEST_CAPTURE_KEY is not set"):
        load_traffic(tmp_path)


def test_bad_keys_are_refused_with_a_reason() -> None:
    with pytest.raises(ConfigError, match="not base64"):
        capture_crypto.parse_key("not a key!")
    with pytest.raises(ConfigError, match="32 bytes"):
        capture_crypto.parse_key(base64.b64encode(b"short").decode())
    assert len(capture_crypto.parse_key(capture_crypto.new_key())) == 32


def test_redacted_text_is_masked_by_the_pii_engine(tmp_path: Path) -> None:
    record = build_record(_item(CaptureConfig(dir=str(tmp_path))))
    content = record["request"]["messages"][0]["content"]
    assert "ann@example.com" not in content and "<EMAIL_ADDRESS>" in content
    assert record["request"]["model"] == "m" and record["request"]["messages"][0]["role"] == "user"


def test_without_a_pii_step_redaction_masks_the_default_set_only(tmp_path: Path) -> None:
    """Reviewers must read everyday text: places and nationalities stay, contact data goes."""
    text = "What is the capital of France? Translate to French and mail ann@example.com"
    record = build_record(_item(CaptureConfig(dir=str(tmp_path)), text=text))
    content = record["request"]["messages"][0]["content"]
    assert "capital of France" in content and "to French" in content
    assert "ann@example.com" not in content and "<EMAIL_ADDRESS>" in content


def test_segments_rotate_and_prune_by_size_and_age(tmp_path: Path) -> None:
    line = b"x" * 100
    for _ in range(10):
        capture_store.append(tmp_path, line, 350)  # three lines per segment
    files = capture_store.segments(tmp_path)
    assert len(files) == 4 and sum(len(p.read_bytes().splitlines()) for p in files) == 10
    gone = capture_store.prune(tmp_path, max_bytes=500, ttl_seconds=3600)
    assert gone == files[:2]  # oldest first, until under the cap
    old = time.time() - 7200
    os.utime(files[2], (old, old))
    assert capture_store.prune(tmp_path, max_bytes=10_000, ttl_seconds=3600) == [files[2]]
    assert capture_store.segments(tmp_path) == [files[3]]


def _ctx(rid: str, tenant: str | None, score: float) -> RequestContext:
    ctx = RequestContext(rid, Route.CHAT, {}, "rev", "m", tenant=tenant)
    ctx.active = ActiveStep("injection", "shadow")
    ctx.record("prompt_injection", "allow", score=score, threshold=0.5)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    ctx.state["capture.request"] = orjson.dumps(body)
    return ctx


def _policy(cfg: CaptureConfig) -> Any:
    return SimpleNamespace(
        capture_on=cfg.enabled,
        policy=SimpleNamespace(observability=SimpleNamespace(capture=cfg)),
        chain=SimpleNamespace(steps=[]),
        promotions=None,  # no promoted step: the capture store is not attached as a label source
        promotion_keys=(),
    )


def test_observer_samples_opts_out_tenants_and_counts_drops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = CaptureConfig(dir=str(tmp_path), base_rate=0.0, band=0.1, exclude_tenants=("private",), queue=2)
    capture = Capture(rng=lambda: 0.5)  # keeps exactly the requests with inclusion > 0.5
    blocked = threading.Event()
    monkeypatch.setattr(Capture, "write", lambda self, item: blocked.wait(10))  # a stuck disk
    policy, done = _policy(cfg), Outcome(200)
    capture(policy, _ctx("far", None, 0.0), done)
    capture(policy, _ctx("private", "private", 0.5), done)
    for i in range(6):
        capture(policy, _ctx(f"near{i}", "acme", 0.5), done)
    assert capture.counts["skipped"] == 1 and capture.counts["opted_out"] == 1
    # one record in the writer's hands, two waiting, the rest dropped: the request path never waits
    assert capture.counts["dropped"] >= 3
    blocked.set()
    capture.join()


def test_observer_writes_records_replay_can_read(tmp_path: Path) -> None:
    cfg = CaptureConfig(dir=str(tmp_path), base_rate=0.0, band=0.1)
    capture = Capture(rng=lambda: 0.0)
    capture(_policy(cfg), _ctx("r1", "acme", 0.45), Outcome(200))
    capture.join()
    assert capture.counts["kept"] == 1
    (record,) = load_traffic(tmp_path)
    assert record.id == "r1" and record.headers == {"x-tenant-id": "acme"}
    assert record.weight == pytest.approx(1 / inclusion([(0.45, 0.5)], cfg), rel=1e-4)
    capture.close()


def test_label_events_are_checked_and_merged(tmp_path: Path) -> None:
    known = {"r1", "r2"}
    with pytest.raises(InvalidRequest, match="No captured record"):
        capture_store.check_label_event({"id": "nope", "label": "benign"}, known)
    with pytest.raises(InvalidRequest, match="true or false"):
        capture_store.check_label_event({"id": "r1", "labels": {"x/y": "yes"}}, known)
    with pytest.raises(InvalidRequest, match="needs 'labels' or 'label'"):
        capture_store.check_label_event({"id": "r1"}, known)
    events = [
        capture_store.check_label_event({"id": "r1", "labels": {"injection/prompt_injection": True}}, known),
        capture_store.check_label_event({"id": "r1", "labels": {"injection/prompt_injection": False}}, known),
        capture_store.check_label_event({"id": "r2", "label": "benign", "reviewer": "ana"}, known),
    ]
    capture_store.append_labels(tmp_path, events)
    merged = capture_store.read_labels(tmp_path)
    assert merged["r1"]["labels"] == {"injection/prompt_injection": False}  # the last label wins
    assert merged["r2"]["label"] == "benign"
