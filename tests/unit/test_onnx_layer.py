"""The optional ONNX layer (``proxy/detectors/onnx_classifier.py``) on a tiny model built here."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.detectors import onnx_classifier
from proxy.detectors.onnx_classifier import OnnxTextClassifier, OnnxUnavailable
from tests.onnx_tiny import build

WORDS = [
    "the",
    "museum",
    "opened",
    "in",
    "and",
    "holds",
    "many",
    "objects",
    "please",
    "summarise",
    "this",
    "page",
]


def test_scores_a_text_with_the_positive_label(tmp_path: Path) -> None:
    clf = OnnxTextClassifier(build(tmp_path, WORDS, ["planted"]))
    calm = clf.score("the museum opened in 1902")
    bad = clf.score("the museum planted")
    assert calm.score < 0.3 < 0.95 < bad.score
    assert bad.windows == 1 and bad.latency_ms > 0
    assert set(bad.to_dict()) == {"score", "latency_ms", "windows"}


def test_long_texts_are_scored_in_windows_and_the_max_is_kept(tmp_path: Path) -> None:
    clf = OnnxTextClassifier(build(tmp_path, WORDS, ["planted"], max_tokens=8, stride=4))
    doc = " ".join(["the museum holds many objects"] * 40)
    assert len(clf.windows(doc)) == onnx_classifier.MAX_WINDOWS  # head and tail windows only
    short = " ".join(["the museum holds many objects"] * 4) + " planted " + "the museum"
    result = clf.score(short)
    assert result.windows > 1 and result.score > 0.95
    assert clf.score(doc).score < 0.3


def test_missing_files_and_bad_config_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(OnnxUnavailable, match=r"model\.onnx"):
        OnnxTextClassifier(tmp_path)
    with pytest.raises(OnnxUnavailable, match="stride"):
        OnnxTextClassifier(build(tmp_path / "bad", WORDS, ["x"], max_tokens=4, stride=9))


def test_one_session_per_directory(tmp_path: Path) -> None:
    directory = build(tmp_path, WORDS, ["planted"])
    assert onnx_classifier.load(directory) is onnx_classifier.load(directory)


def test_a_tokenizer_files_truncation_and_padding_do_not_hide_the_tail(tmp_path: Path) -> None:
    """sentence-transformers ship ``tokenizer.json`` with ``max_length: 128`` and fixed padding: the
    loader must still see a word past that point (in a later window), and windows must not be padded."""
    from tokenizers import Tokenizer

    directory = build(tmp_path, WORDS, ["planted"], max_tokens=8, stride=4)
    tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tok.enable_truncation(max_length=6)
    tok.enable_padding(length=6, pad_id=1, pad_token="[PAD]")
    tok.save(str(directory / "tokenizer.json"))
    clf = OnnxTextClassifier(directory)
    text = "the museum holds many objects and the museum opened in planted"
    assert clf.score(text).score > 0.95
    assert [len(w) for w in clf.windows("the museum")] == [2]
