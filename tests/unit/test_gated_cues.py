"""The one-pass gates in front of the injection cue features, the moderation ``literal`` blanking and
the PII context-word scan change nothing they compute (issue 17).

``indirect.featurise`` skips the cue regexes a Hyperscan pass says cannot match a segment, and
``intent.literal`` skips its figurative / scare-quote ``sub`` when the pass says they cannot
match. Both must give exactly the plain path's output: compared here on generated texts dense
with the words the patterns look for, on the hand-written indirect cases, on the benign
moderation hold-out, on the benchmark's support tickets and on the shared evaluation sets. The
fast path must be present too (the equivalence tests would pass with both sides plain).
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.detectors import multiscan
from proxy.detectors.injection import indirect
from proxy.detectors.injection.indirect import IndirectDetector
from proxy.detectors.moderation import intent
from proxy.detectors.pii import PiiEngine
from proxy.detectors.pii.recognizers import RuleSet
from tests.datasets import shared_datasets

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import payload  # noqa: E402

DATA = ROOT / "scripts" / "data"
CUE_WORDS = [
    "ignore",
    "previous",
    "instructions",
    "assistant",
    "AI",
    "system:",
    "[INST]",
    "<|im_start|>",
    "you must",
    "only",
    "output",
    "reply",
    "respond",
    "tell the user",
    "disregard",
    "forget",
    "urgent",
    "immediately",
    "Note to",
    "ki:",
    "from now on",
    "new task",
    "instead",
    "###",
    "Human:",
]
MODERATION_WORDS = [
    "kill",
    "killing",
    "time",
    "the process",
    "'kill'",
    '"bomb"',
    "shoot",
    "photos",
    "bath bomb",
    "blow up",
    "a balloon",
    "execute",
    "the plan",
    "fraud",
    "prevention",
    "hurt",
    "my credit",
    "my neighbour",
    "how do i",
    "in minecraft",
    "murder mystery",
    "terminate",
    "-9",
    "'x'",
]
PROSE = st.text(alphabet="abcdefghij ABC.,:!?'\"\n-0123456789", max_size=40)


def _texts(words: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.one_of(PROSE, st.sampled_from(words)), max_size=25).map(" ".join)


def _plain_literal(text: str) -> str:
    """``intent.literal`` as it was before the gate."""
    low = text.lower()
    low = intent._FIGURATIVE.sub(lambda m: " " * len(m.group()), low)
    return intent._QUOTED.sub(lambda m: " " * len(m.group()), low)


class _NoGate:
    """A gate that gates nothing: every pattern takes the plain path."""

    keys: frozenset[Any] = frozenset()

    def matching(self, text: str) -> None:
        return None


def _plain_scan(detector: IndirectDetector, text: str, as_data: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as m:
        m.setattr(indirect, "_feature_gate", _NoGate)
        return detector.scan(text, as_data=as_data)


def _corpus() -> list[str]:
    rows = [
        json.loads(line)
        for line in (DATA / "indirect_handwritten.jsonl").read_text("utf-8").splitlines()
        if line
    ]
    texts = [str(r["text"]) for r in rows]
    texts += [
        t for t in (DATA / "moderation_benign_holdout.txt").read_text("utf-8").splitlines() if t.strip()
    ]
    texts += [payload.ticket(size) for size in (2048, 16384)]
    return texts


def test_the_fast_path_is_present() -> None:
    assert multiscan.available(), "hyperscan is missing: the gated cue features fall back to plain regexes"
    assert indirect._feature_gate().keys == frozenset(indirect._COMPILED)
    assert intent._literal_gate().keys == {"figurative", "quoted"}


def test_the_gate_does_skip_work() -> None:
    """Not vacuous: on a plain ticket the gate rules patterns out, on a planted cue it keeps them."""
    may = indirect._feature_gate().matching("Please check the invoice for order 1234.")
    assert may is not None and len(may) < len(indirect._COMPILED)
    assert intent._literal_gate().matching("thanks for the quick reply") == frozenset()
    assert "figurative" in (intent._literal_gate().matching("how do i kill the process") or ())


@pytest.mark.parametrize("as_data", [True, False])
def test_indirect_scan_is_unchanged_on_the_corpus(as_data: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    detector = IndirectDetector.default()
    for text in _corpus():
        assert detector.scan(text, as_data=as_data) == _plain_scan(detector, text, as_data, monkeypatch), text


@settings(max_examples=300, deadline=None)
@given(text=_texts(CUE_WORDS), as_data=st.booleans())
def test_indirect_scan_is_unchanged_on_generated_texts(text: str, as_data: bool) -> None:
    detector = IndirectDetector.default()
    with pytest.MonkeyPatch.context() as m:
        gated = detector.scan(text, as_data=as_data)
        m.setattr(indirect, "_feature_gate", _NoGate)
        plain = detector.scan(text, as_data=as_data)
    assert gated == plain


def test_literal_is_unchanged_on_the_corpus() -> None:
    for text in _corpus():
        assert intent.literal(text) == _plain_literal(text), text


@settings(max_examples=500, deadline=None)
@given(text=_texts(MODERATION_WORDS))
def test_literal_is_unchanged_on_generated_texts(text: str) -> None:
    assert intent.literal(text) == _plain_literal(text)


def test_non_ascii_texts_take_the_plain_path() -> None:
    text = "Comment « kill the process » marche — 'kill' it"
    assert intent._literal_gate().matching(text.lower()) is None
    assert intent.literal(text) == _plain_literal(text)
    assert re.search(r"\s{4}", intent.literal(text))  # something was blanked


def _dataset_texts() -> tuple[list[str], list[str]]:
    """(injection texts, moderation texts) of the shared evaluation sets; skips where they are absent."""
    inj, mod = shared_datasets("injection"), shared_datasets("moderation")
    if not (inj / "jailbreak_test.csv").is_file() or not mod.is_dir():
        pytest.skip(reason=f"shared datasets not present: {inj} / {mod}")
    with (inj / "jailbreak_test.csv").open(encoding="utf-8", newline="") as fh:
        injection = [row["prompt"] for row in csv.DictReader(fh)]
    with gzip.open(inj / "benign_passage_tasks_adversarialqa.jsonl.gz", "rt", encoding="utf-8") as fh:
        injection += [json.loads(line)["text"] for line in fh if line.strip()][:400]
    moderation: list[str] = []
    for path in sorted(mod.glob("*.jsonl*")):
        opener: Any = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line) if line.strip() else {}
                text = row.get("text") or row.get("prompt")
                if isinstance(text, str):
                    moderation.append(text)
    return injection, moderation


def test_unchanged_on_the_evaluation_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    injection, moderation = _dataset_texts()
    assert len(injection) > 500 and len(moderation) > 1000
    detector = IndirectDetector.default()
    for text in injection:
        assert indirect.segments(text) == _old_segments(text), text
        for as_data in (True, False):
            assert detector.scan(text, as_data=as_data) == _plain_scan(
                detector, text, as_data, monkeypatch
            ), text
    for text in moderation + injection:
        assert intent.literal(text) == _plain_literal(text), text


_OLD_SENTENCE = re.compile("(?<=[.!?\u3002\uff01\uff1f])\\s+|(?<=[\u3002\uff01\uff1f])")


def _old_segments(text: str) -> list[indirect.Segment]:
    """``indirect.segments`` as it was with the look-behind sentence pattern."""
    out: list[indirect.Segment] = []
    pos = 0
    for line in text.split("\n"):
        line_start = pos
        pos += len(line) + 1
        cut = 0
        for m in [*_OLD_SENTENCE.finditer(line), None]:
            end = m.start() if m is not None else len(line)
            nxt = m.end() if m is not None else len(line)
            piece = line[cut:end]
            for k in range(0, len(piece), 400):
                chunk = piece[k : k + 400]
                stripped = chunk.strip()
                if stripped:
                    s = line_start + cut + k + (len(chunk) - len(chunk.lstrip()))
                    out.append(indirect.Segment(stripped, s, s + len(stripped)))
            cut = nxt
    return out


@settings(max_examples=1000, deadline=None)
@given(text=st.text(alphabet="ab .!?\u3002\uff01\uff1f \t\n\u3000x", max_size=60) | _texts(CUE_WORDS))
def test_segments_are_unchanged(text: str) -> None:
    assert indirect.segments(text) == _old_segments(text)


def test_segments_are_unchanged_on_the_corpus() -> None:
    for text in _corpus():
        assert indirect.segments(text) == _old_segments(text)


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return PiiEngine("off")._rules


def _plain_context_words(rules: RuleSet, text: str) -> set[str]:
    return {m.group(0) for m in rules._all_context.finditer(text.lower())}


CONTEXT_WORDS = [
    "phone",
    "number",
    "call",
    "card",
    "credit",
    "at",
    "that",
    "email",
    "mail",
    "e-mail",
    "ssn",
    "_x",
]


@settings(max_examples=500, deadline=None)
@given(text=_texts(CONTEXT_WORDS))
def test_pii_context_words_are_unchanged(rules: RuleSet, text: str) -> None:
    assert rules._context_words(text.lower()) == _plain_context_words(rules, text)


def test_pii_context_words_are_unchanged_on_the_evaluation_set(rules: RuleSet) -> None:
    assert rules._context_literals is not None  # the fast path is present
    path = shared_datasets("pii", "presidio_synth_dataset_v2.json")
    if not path.is_file():
        pytest.skip(reason=f"shared datasets not present: {path}")
    texts = [str(row["full_text"]) for row in json.loads(path.read_text("utf-8"))]
    texts += [payload.ticket(size) for size in (2048, 65536)] + _corpus()
    assert len(texts) > 1000
    for text in texts:
        assert rules._context_words(text.lower()) == _plain_context_words(rules, text), text
