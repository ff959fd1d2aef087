"""The compiled PII scans (proxy/detectors/pii/_pii_kernel.c) against their Python references.

``capitalised`` must return exactly ``capitalised.ascii_capitalised`` (itself held to the
look-behind regex by test_pii_capitalised.py) and ``context_words`` exactly the set of
``RuleSet._all_context.finditer`` matches (and the Hyperscan literal walk), on every ASCII text;
both return None for any other text so the caller takes the Python path. The engine's output
with and without the kernel is compared end to end. The first test fails on an install where
the optional extension was not compiled, so a build that silently lost it is noticed.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.detectors.pii import PiiEngine, recognizers
from proxy.detectors.pii import capitalised as capitalised_module
from proxy.detectors.pii.capitalised import ascii_capitalised, capitalised_words, plain_capitalised
from proxy.detectors.pii.defaults import DEFAULT_ENTITIES
from proxy.detectors.pii.recognizers import (
    CONTEXT_CHARS_BEFORE,
    CONTEXT_WORDS_BEFORE,
    RuleSet,
    plain_context_words,
)
from tests.datasets import dataset_or_skip
from tests.unit import pii_corpus

kernel: Any
try:
    from proxy.detectors.pii import _pii_kernel as kernel
except ImportError:  # reported by test_the_kernel_is_built
    kernel = None


@functools.cache
def _rules() -> RuleSet:
    return PiiEngine("off")._rules


def _reference_context(low: str) -> set[str]:
    return {m.group(0) for m in _rules()._all_context.finditer(low)}


def _context_words_list() -> list[str]:
    return sorted({w for b in _rules()._context_buckets or () for w in b})


_CAPS = st.text(alphabet="ABZaz09_-.' \n\tMrX", max_size=80)
#: context words, their prefixes and extensions, glued by separators that do or do not end a word
_WORDS = ["phone", "phones", "telephone", "call", "caller", "card", "credit card", "e-mail", "email",
          "security", "ssn", "iban", "date of birth", "birth", "passport", "license", "lic", "licence",
          "mac address", "physical address", "address", "national health service", "health", "service",
          "in", "ip", "live", "lives", "meet", "send", "sent", "x", "9", "_"]  # fmt: skip
_PARTS = st.lists(
    st.one_of(st.sampled_from(_WORDS), st.text(alphabet="abcelmnoprst ", max_size=6)), max_size=14
)
_CONTEXT_TEXTS = st.tuples(_PARTS, st.sampled_from([" ", "", "-", "_", "\n", ", "])).map(
    lambda p: p[1].join(p[0])
)


def test_the_kernel_is_built() -> None:
    assert kernel is not None, (
        "proxy/detectors/pii/_pii_kernel.c was not compiled: install a C compiler and reinstall "
        "(the PII engine then runs its Python scans: same output, slower)"
    )
    assert _rules()._context_buckets is not None


@settings(max_examples=1500, deadline=None)
@given(_CAPS)
def test_capitalised_equals_ascii_scan(text: str) -> None:
    assert kernel.capitalised(text) == ascii_capitalised(text)


def test_capitalised_declines_non_ascii_and_can_fail() -> None:
    assert kernel.capitalised("Zoë Müller") is None
    assert capitalised_words("Zoë Müller") == plain_capitalised("Zoë Müller")
    # the look-behind is seen: a capital after a word character or hyphen starts no word
    assert kernel.capitalised("aB x-Cd _Ef Gh-Ij Kl") == [(12, 17, "gh-ij"), (18, 20, "kl")]


@settings(max_examples=1500, deadline=None)
@given(_CONTEXT_TEXTS)
def test_context_words_equal_the_regex_walk(text: str) -> None:
    low = text.lower()
    rules = _rules()
    found = kernel.context_words(low, rules._context_buckets)
    assert found == _reference_context(low)
    spans = rules._context_literals.spans(low) if rules._context_literals is not None else None
    if spans is not None:  # the Hyperscan walk the kernel replaces
        rules_without = rules._context_buckets
        try:
            rules._context_buckets = None
            assert rules._context_words(low) == found
        finally:
            rules._context_buckets = rules_without


def test_context_words_take_the_longest_word_and_skip_inside_ones() -> None:
    words = _context_words_list()
    assert "phone" in words and "call" in words
    low = "telephone: phones, call me. recall the card"
    assert kernel.context_words(low, _rules()._context_buckets) == _reference_context(low)
    assert "phone" not in kernel.context_words("telephone", _rules()._context_buckets)
    assert kernel.context_words("naïve phone", _rules()._context_buckets) is None


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet="aZ9_ -.\n\tx", max_size=120), st.integers(0, 200))
def test_words_before_equal_the_regex_findall(text: str, at: int) -> None:
    start = min(at, len(text))
    assert kernel.words_before(
        text, start, CONTEXT_CHARS_BEFORE, CONTEXT_WORDS_BEFORE
    ) == plain_context_words(text, start)


def test_words_before_cut_at_the_window_and_decline_non_ascii() -> None:
    text = "x" * 100 + "abc Call_me NOW, 12 on the Phone"
    end = len(text)
    assert kernel.words_before(text, end, 90, 5) == ["now", "12", "on", "the", "phone"]
    assert kernel.words_before(text, end, 90, 9) == plain_words(text, end, 90, 9)
    assert kernel.words_before(text, end, 90, 9)[:2] == [
        "x" * 58 + "abc",
        "call_me",
    ]  # a word cut by the window
    assert kernel.words_before("Zoë phone", 9, 80, 5) is None
    with pytest.raises(ValueError):
        kernel.words_before(text, end + 1, 80, 5)
    with pytest.raises(ValueError):
        kernel.words_before(text, end, 80, 65)


def plain_words(text: str, end: int, span: int, count: int) -> list[str]:
    import re

    return re.findall(r"\w+", text[max(0, end - span) : end].lower())[-count:]


_LITERAL_TRIGGERS = [t for t in PiiEngine("off")._rules._triggers if t.startswith("=")]
_LITERAL_PIECES = sorted({lit for t in _LITERAL_TRIGGERS for lit in t[1:].split("|")} | {"aaa", " ", "é"})


@settings(max_examples=800, deadline=None)
@given(st.lists(st.sampled_from(_LITERAL_PIECES) | st.text(alphabet="zipHQsk-_ a", max_size=5), max_size=20))
def test_literal_spans_equal_the_substring_search(parts: list[str]) -> None:
    text = "".join(parts)
    triggers = _rules()._triggers
    for t in _LITERAL_TRIGGERS:
        literals = triggers[t]
        plain = [f.span() for f in literals.finditer_plain(text)]
        found = kernel.literal_spans(text, literals._literals)
        assert found == (plain if text.isascii() else None), (t, text)
        assert [f.span() for f in literals.finditer(text)] == plain


def test_literal_spans_overlaps_empty_and_non_ascii_literals() -> None:
    assert kernel.literal_spans("aaaa", ("aa", "a")) == [
        (0, 1),
        (0, 2),
        (1, 2),
        (1, 3),
        (2, 3),
        (2, 4),
        (3, 4),
    ]
    assert kernel.literal_spans("ab", ("",)) == [(0, 0), (1, 1), (2, 2)]  # as str.find says
    assert kernel.literal_spans("I'm I\u2019m", ("I\u2019m", "I'm")) is None  # a non-ASCII text
    assert kernel.literal_spans("I'm here", ("I\u2019m", "I'm")) == [(0, 3)]
    with pytest.raises(TypeError):
        kernel.literal_spans("abc", ("a", 1))
    with pytest.raises(TypeError):
        kernel.literal_spans("abc", ["a"])


def test_both_scans_on_the_corpus() -> None:
    texts = pii_corpus.generated(300) + pii_corpus._sources()["tickets"]()
    ascii_texts = [t for t in texts if t.isascii()]
    assert len(ascii_texts) > 150
    for text in ascii_texts:
        assert kernel.capitalised(text) == ascii_capitalised(text)
        low = text.lower()
        assert kernel.context_words(low, _rules()._context_buckets) == _reference_context(low)
        for at in range(0, len(text), 7):
            assert kernel.words_before(text, at, CONTEXT_CHARS_BEFORE, CONTEXT_WORDS_BEFORE) == (
                plain_context_words(text, at)
            )


def test_both_scans_on_the_dataset() -> None:
    path = dataset_or_skip("pii") / "presidio_synth_dataset_v2.json"
    texts = [row["full_text"] for row in json.loads(path.read_text())]
    ascii_texts = [t for t in texts if t.isascii()]
    assert len(ascii_texts) > 1000
    for text in ascii_texts:
        assert kernel.capitalised(text) == ascii_capitalised(text), text
        low = text.lower()
        assert kernel.context_words(low, _rules()._context_buckets) == _reference_context(low), text


def test_engine_output_is_the_same_without_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = pii_corpus.generated(150) + pii_corpus._sources()["tickets"]()[:4]
    engine = PiiEngine("off")
    entities = sorted(frozenset(DEFAULT_ENTITIES) & engine.entities)
    engine.prepare(entities)
    settings_ = ((entities, 0.4), (None, 0.0))
    compiled = [engine.analyze(t, e, s) for e, s in settings_ for t in texts]
    monkeypatch.setattr(capitalised_module, "kernel", None)
    monkeypatch.setattr(recognizers, "kernel", None)
    plain = PiiEngine("off")
    assert plain._rules._context_buckets is None
    plain.prepare(entities)
    assert [plain.analyze(t, e, s) for e, s in settings_ for t in texts] == compiled
    assert sum(len(spans) for spans in compiled) > 200


def test_kernel_rejects_bad_arguments_without_crashing() -> None:
    with pytest.raises(TypeError):
        kernel.capitalised(b"Bytes")
    with pytest.raises(TypeError):
        kernel.context_words("abc", ((),) * 127)
    with pytest.raises(TypeError):
        kernel.context_words("abc", ((),) * 127 + ([],))
    with pytest.raises(TypeError):
        kernel.context_words("abc", ((),) * 97 + (("",),) + ((),) * 30)  # an empty word, visited
    with pytest.raises(TypeError):
        kernel.words_before(b"abc", 1, 80, 5)
    with pytest.raises(TypeError):
        kernel.context_words(b"abc", ((),) * 128)
    assert kernel.context_words("", ((),) * 128) == set()
