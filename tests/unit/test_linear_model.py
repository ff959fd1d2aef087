"""One loader and one windowing helper for the embedded classifiers; scores stay bit-identical (24.4).

The regression reference is the former moderation windowing, restated here: every window scored
without the cache, stacked, maximum per category. The new code sends each window through the
request's shared hash cache; its scores must equal the reference exactly (``==`` on floats, not a
tolerance), on the packaged hard-benign texts always and on the shared moderation dataset when it
is present, joined into texts several windows long.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.detectors.injection.classifier import InjectionClassifier
from proxy.detectors.linear_model import feature_config, window_starts, windowed_max
from proxy.detectors.moderation.classifier import ModerationClassifier
from proxy.detectors.moderation.rules import RuleScanner

REPO = Path(__file__).resolve().parents[2]
# The shared datasets sit beside the repository (or beside the worktrees' parent directory).
_NAME = Path("shared", "datasets", "moderation", "openai_moderation_samples_1680.jsonl.gz")
DATASET = next((p / _NAME for p in REPO.parents[:3] if (p / _NAME).is_file()), REPO.parent / _NAME)


def _old_score_list(clf: ModerationClassifier, canonical: str) -> list[float]:
    """The moderation classifier's scores as computed before the shared helper (no cache per window)."""
    window = clf.meta.features.window
    if len(canonical) <= window:
        logits = clf._window_list(canonical, None)
    else:
        stride = window // 2
        starts = range(0, len(canonical) - stride, stride)
        stacked = np.stack(
            [np.array(clf._window_list(canonical[s : s + window]), dtype=np.float64) for s in starts]
        )
        logits = np.asarray(stacked.max(axis=0), dtype=np.float64).tolist()
    return [1.0 / (1.0 + math.exp(-min(max(z, -60.0), 60.0))) for z in logits]


def _long_texts(samples: list[str], size: int) -> list[str]:
    """Consecutive samples joined until each text is ``size`` characters or more."""
    texts, current = [], ""
    for sample in samples:
        current = f"{current}\n\n{sample}" if current else sample
        if len(current) >= size:
            texts.append(current)
            current = ""
    return texts


def _packaged_samples() -> list[str]:
    lines = []
    for name in ("moderation", "injection"):
        path = REPO / "proxy" / "detectors" / name / "benign_hard.txt"
        text = path.read_text(encoding="utf-8")
        lines += [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return lines


def _compare(samples: list[str]) -> int:
    clf = ModerationClassifier.default()
    scanner = RuleScanner.default()
    window = clf.meta.features.window
    # Short texts, then long ones: the samples joined (cycled, so a small file still makes several).
    texts = samples[:40] + _long_texts(samples * (1 + 6 * window // sum(map(len, samples))), 2 * window)
    long_ones = 0
    for text in texts:
        canonical = scanner.scan(text).classifier_text
        long_ones += len(canonical) > window
        old = _old_score_list(clf, canonical)
        cache: dict = {}  # type: ignore[type-arg]
        assert clf.score_list(canonical, cache) == old
        assert clf.score_list(canonical, cache) == old  # again, every window now from the cache
        if len(canonical) > window:
            windows = len(window_starts(len(canonical), window))
            assert len(cache) >= windows  # each window went through the cache
    return long_ones


def test_moderation_scores_are_bit_identical_on_packaged_samples() -> None:
    assert _compare(_packaged_samples()) >= 1


def test_moderation_scores_are_bit_identical_on_the_dataset() -> None:
    if not DATASET.is_file():
        pytest.skip(reason=f"shared moderation dataset not found at {DATASET} (not part of a fresh clone)")
    with gzip.open(DATASET, "rt", encoding="utf-8") as f:
        samples = [json.loads(line)["prompt"] for _, line in zip(range(600), f, strict=False)]
    assert _compare(samples) >= 10


@given(length=st.integers(min_value=0, max_value=50_000), span=st.integers(min_value=2, max_value=9000))
def test_window_starts_are_the_former_injection_windows(length: int, span: int) -> None:
    stride = span // 2
    old = np.arange(0, length - stride, stride)
    new = np.array(window_starts(length, span), dtype=np.int64)  # as the injection classifier builds it
    assert new.dtype == old.dtype and np.array_equal(new, old)
    if length > span:  # every character is in a window
        assert new[-1] + span >= length


def test_windowed_max_takes_the_maximum_per_column() -> None:
    seen: list[str] = []

    def score(part: str) -> list[float]:
        seen.append(part)
        return [float(part.count("x")), -float(len(part))]

    text = "ab" * 10 + "xxxx" + "ab" * 10
    assert windowed_max(text, 8, score) == [4.0, -8.0]
    assert "".join(p[:4] for p in seen[:-1]) + seen[-1] == text  # the windows tile the text


def test_one_loader_for_both_classifiers() -> None:
    for cls in (InjectionClassifier, ModerationClassifier):
        model = cls.default()
        assert cls.default() is model and type(model) is cls
        assert model.meta.features == cls.load().meta.features
    with pytest.raises(ValueError, match="feature_version"):
        feature_config({"feature_version": -1})
