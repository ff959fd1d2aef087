"""The pattern engine's shortcuts give exactly what the plain versions give.

Each speed-up of the PII-dense case (prefix-factored context words, no timeout for linear
patterns, no IGNORECASE where it cannot matter, bisected overlap resolution, int-only window
merging) is checked against the straightforward code it replaced, on generated inputs.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.detectors.pii import PiiEngine, Span, resolve
from proxy.detectors.pii.engine import NER_ENTITIES, CustomRecognizer, PatternSpec, _custom_rules
from proxy.detectors.pii.recognizers import (
    _SPACE,
    TIMEOUT_S,
    Rule,
    RuleSet,
    _regions,
    _supports,
    bounded,
    caseless,
    prefix_tree,
)
from proxy.detectors.pii.spans import LITERAL
from proxy.detectors.pii.tuned import _not_phone


@pytest.fixture(scope="module")
def engine() -> PiiEngine:
    return PiiEngine("off")


WORDS = st.lists(st.text(alphabet="abc #", min_size=1, max_size=6), min_size=1, max_size=12, unique=True)
TEXTS = st.text(alphabet="abc #\n", max_size=60)


@settings(max_examples=300, deadline=None)
@given(words=WORDS, text=TEXTS)
def test_prefix_tree_finds_what_the_longest_first_alternation_finds(words: list[str], text: str) -> None:
    words = sorted(words, key=len, reverse=True)
    flat = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + ")")
    tree = re.compile(r"\b(?:" + prefix_tree(words) + ")")
    assert [m.span() for m in tree.finditer(text)] == [m.span() for m in flat.finditer(text)]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"\b[0-9]{8,17}\b", True),
        (r"\d{2,7}+(?:[ .\-]\d{2,7}+){1,5}+", True),  # possessive, still bounded
        (r"[+*]\+\d{1,3}", True),  # quantifier characters in a class or escaped
        (r"[]+]a", True),
        (r"a{,5}", True),
        (r"a+", False),
        (r"(?:ab)*", False),
        (r"x{3,}", False),
        (r"\p{Lu}+", False),
        (r"[^\W\d_][\w'\-]*", False),
    ],
)
def test_bounded_recognises_unbounded_repetition(pattern: str, expected: bool) -> None:
    assert bounded(pattern) is expected


def test_only_built_in_linear_rules_run_without_the_timeout(engine: PiiEngine) -> None:
    rules = engine._rules.rules
    linear = {r.entity_type for r in rules if r.linear}
    assert {"US_SSN", "CREDIT_CARD", "PHONE_NUMBER"} <= linear
    for r in rules:  # address grammars, URLs, names: unbounded, they keep the timeout
        if isinstance(r.pattern, regex.Pattern) and not bounded(r.pattern.pattern):
            assert not r.linear, r.pattern.pattern
    # a policy's own regex keeps the timeout however simple it looks
    spec = CustomRecognizer(entity_type="TICKET", patterns=(PatternSpec(regex=r"\bT-\d{6}\b"),))
    assert [r.linear for r in _custom_rules((spec,))] == [False]


def test_a_non_linear_rule_still_gets_the_timeout() -> None:
    seen: list[Any] = []

    class Recording:
        pattern = r"\d+"

        def finditer(self, text: str, pos: int, endpos: int, timeout: float | None = None) -> Any:
            seen.append(timeout)
            return regex.compile(self.pattern).finditer(text, pos, endpos)

    RuleSet([Rule("X", Recording(), 0.9)]).scan("a 123")
    RuleSet([Rule("X", Recording(), 0.9, linear=True)]).scan("a 123")
    assert seen == [TIMEOUT_S, None]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"\b([0-9]{3})-([0-9]{6})\b", True),
        (r"\b[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}\b", True),
        (r"[a-fA-F0-9]{4}\.", True),
        (r"[A-F]", False),
        (r"[a-z]", False),  # (?i) adds the Kelvin sign, long s, dotted I
        (r"\p{Lu}", False),
        (r"x|ext", False),
        (r"(?i:\d)", False),
        (r"\t\d", False),  # any escape with a letter: answered conservatively
    ],
)
def test_caseless_patterns(pattern: str, expected: bool) -> None:
    assert caseless(pattern) is expected


def test_caseless_built_in_patterns_match_the_same_with_and_without_ignorecase(engine: PiiEngine) -> None:
    text = (
        "SSN 078-05-1120, card 4111 1111 1111 1111, 5500-0000-0000-0004, MAC 00:1A:2b:3C:4d:5E, "
        "ip 192.168.10.24, fe80::1ff:fe23:4567:890a, dates 12/31/2024 2024-03-18 31.12.24, "
        "uuid 123E4567-e89b-12d3-A456-426614174000, nhs 943 476 5919, ids 123456789 K1234567"
    )
    flags = regex.DOTALL | regex.MULTILINE
    checked = 0
    for rule in engine._rules.rules:
        if isinstance(rule.pattern, regex.Pattern) and caseless(rule.pattern.pattern):
            assert not rule.pattern.flags & regex.IGNORECASE
            with_i = regex.compile(rule.pattern.pattern, flags | regex.IGNORECASE)
            assert [m.span() for m in rule.pattern.finditer(text)] == [
                m.span() for m in with_i.finditer(text)
            ]
            checked += 1
    assert checked >= 20


def _resolve_reference(spans: list[Span], text: str) -> list[Span]:
    """The quadratic original: each candidate checked against every kept span."""
    kept: list[Span] = []
    for s in sorted(spans, key=lambda s: (-s.score, -(s.end - s.start), s.start)):
        if s.end > s.start and all(s.end <= k.start or s.start >= k.end for k in kept):
            kept.append(s)
    kept.sort(key=lambda s: s.start)
    merged: list[Span] = []
    for s in kept:
        if merged and s.entity_type != LITERAL:
            prev = merged[-1]
            gap = text[prev.end : s.start]
            if prev.entity_type == s.entity_type and (
                gap == "" or (s.entity_type in NER_ENTITIES and gap.isspace() and len(gap) <= 2)
            ):
                merged[-1] = Span(prev.start, s.end, s.entity_type, max(prev.score, s.score))
                continue
        merged.append(s)
    return merged


SPANS = st.lists(
    st.builds(
        lambda a, n, t, sc: Span(a, a + n, t, sc),
        st.integers(0, 40),
        st.integers(-2, 12),
        st.sampled_from(["PERSON", "EMAIL_ADDRESS", LITERAL]),
        st.sampled_from([0.4, 0.5, 0.85, 1.0, 2.0]),
    ),
    max_size=25,
)


@settings(max_examples=400, deadline=None)
@given(spans=SPANS, text=st.text(alphabet="ab \n", min_size=55, max_size=55))
def test_resolve_matches_the_quadratic_reference(spans: list[Span], text: str) -> None:
    assert resolve(spans, text) == _resolve_reference(spans, text)


def _regions_reference(text: str, where: list[tuple[int, int]], window: Any) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for s, e in where:
        if window == "token":
            if spans and s < spans[-1][1]:
                continue
            left = max(text.rfind(c, 0, s) for c in " \n\t\r") + 1
            m = _SPACE.search(text, e)
            right = m.start() if m else len(text)
        else:
            left, right = max(0, s - int(window)), min(len(text), e + int(window))
        if spans and left <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], right))
        else:
            spans.append((left, right))
    return spans


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet="ab1 \n\t\r\u00a0", max_size=80),
    cuts=st.lists(st.integers(0, 80), max_size=16),
    window=st.sampled_from(["token", 0, 1, 3, 24]),
)
def test_regions_match_the_reference(text: str, cuts: list[int], window: Any) -> None:
    points = sorted(min(c, len(text)) for c in cuts)
    where = list(zip(points[::2], points[1::2], strict=False))  # ordered, non-overlapping
    assert _regions(text, where, window) == _regions_reference(text, where, window)


def _supports_reference(context: tuple[tuple[str, ...], tuple[str, ...]], words: list[str]) -> bool:
    singles, phrases = context
    if singles and any(w.startswith(singles) for w in words):
        return True
    return bool(phrases) and any(p in " ".join(words) for p in phrases)


@settings(max_examples=400, deadline=None)
@given(
    singles=st.lists(st.text(alphabet="abc", min_size=1, max_size=3), max_size=4).map(tuple),
    phrases=st.lists(st.text(alphabet="ab c", min_size=1, max_size=5), max_size=3).map(tuple),
    words=st.lists(st.text(alphabet="abc", max_size=4), max_size=6),
)
def test_supports_matches_the_reference(
    singles: tuple[str, ...], phrases: tuple[str, ...], words: list[str]
) -> None:
    assert _supports((singles, phrases), words) is _supports_reference((singles, phrases), words)


@settings(max_examples=300, deadline=None)
@given(value=st.text(alphabet=st.sampled_from("0123456789 +-()x\u0663\u00b2a"), max_size=30))
def test_not_phone_counts_digits_as_before(value: str) -> None:
    n = sum(c.isdigit() for c in value)
    assert _not_phone(value) is (not 7 <= n <= 15)
