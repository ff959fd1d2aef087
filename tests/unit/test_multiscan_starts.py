"""Start hints: the regex is tried only where the gate saw a hint start, and finds exactly what
``finditer`` over the whole text finds.

``multiscan.from_starts`` must equal ``pattern.finditer(text)`` whenever the starts it is given
include every match start; the Gate must report a ``starts_of`` key's leftmost start per match
end; and a rule's ``starts`` hint must cover every start of its regex (the PII address rule:
checked on generated address-dense texts, the shared PII dataset and the benchmark tickets).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.detectors import multiscan
from proxy.detectors.pii import PiiEngine
from proxy.detectors.pii.recognizers import TIMEOUT_S, RuleSet
from tests.datasets import dataset_or_skip
from tests.unit import pii_corpus

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import payload

PATTERNS: list[Any] = [
    re.compile(r"\b\d{3}[- ]?\d{3}[- ]?\d{4}\b"),
    re.compile(r"(?<!\d)\d{2,4}(?!\d)"),
    re.compile(r"(?<=card )\d{4}"),  # a look-behind before the match start
    regex.compile(r"(?i)\b(?:mr|dr)\.? [a-z]{2,8}\b"),
    re.compile(r"a{1,3}b?"),
    re.compile(r"\d{0,2}b?"),  # empty matches: the fallback
]
FRAGMENTS = [
    "12 Main Street", "P.O. Box 12", "1600 Amphitheatre Parkway, Mountain View, CA 94043", "Apt 4",
    "10115 Berlin", "Hauptstraße 12", "14 Fitzwilliam Square", "call 555 0142 today", "1234567 x",
    "3 4 5 Oak Road", "a1 B", "-12 Elm", ".5 Elm", "99 de la Paix", "42\nLondon", "7 Rue", "Box 9",
    "P.O. Box", "Suite 5", "nan", ",", "\n", " ", "  ", "Mr", "card 1234",
]  # fmt: skip
TEXTS = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(alphabet="0123456789 PO.Bxa-A\n,", max_size=8)), max_size=14
).map(" ".join)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(PATTERNS), TEXTS)
def test_from_starts_with_every_position_is_finditer(pattern: Any, text: str) -> None:
    expected = [(m.span(), m.groups()) for m in pattern.finditer(text)]
    got = multiscan.from_starts(pattern, text, range(len(text) + 1))
    assert [(m.span(), m.groups()) for m in got] == expected
    # the starts of the matches alone are enough (plus noise), whatever the search positions were
    starts = sorted({m.start() for m in pattern.finditer(text)} | {0, len(text) // 2})
    assert [(m.span(), m.groups()) for m in multiscan.from_starts(pattern, text, starts)] == expected


def test_from_starts_misses_what_it_is_not_given() -> None:
    """The comparison above can fail: a start left out is a match missed."""
    pattern = re.compile(r"\d+")
    assert [m.group(0) for m in multiscan.from_starts(pattern, "a 12 b 34", [2])] == ["12"]


def test_gate_reports_leftmost_starts() -> None:
    if not multiscan.available():
        pytest.fail("hyperscan missing: the fast path is gone (pip install hyperscan)")
    hint = re.compile(r"\d{1,6} |P\.O\. Box ")
    gate = multiscan.Gate([("h", hint)], starts_of=["h"])
    assert gate.starts_of == {"h"}
    found = gate.scan("at 12 Elm, P.O. Box 7 or 1234567 x")
    assert found is not None
    assert found.ends["h"] == [3, 11, 20, 26]  # "12 ", "P.O. Box ", "7 ", the leftmost of "234567 "


@pytest.fixture(scope="module")
def rules() -> tuple[RuleSet, list[int]]:
    engine = PiiEngine("off")
    ruleset: RuleSet = engine._rules
    engine.prepare(None)
    hinted = [i for i, r in enumerate(ruleset.rules) if r.starts is not None]
    assert hinted, "no rule carries a start hint any more: drop this test"
    return ruleset, hinted


def _check(ruleset: RuleSet, hinted: list[int], text: str) -> None:
    gate = ruleset._gates[None]
    found = gate.scan(text)
    if found is None:
        return  # not gated: the plain path
    for i in hinted:
        pattern = ruleset.rules[i].pattern
        expected = [m.span() for m in pattern.finditer(text, timeout=TIMEOUT_S)]
        got = [
            m.span() for m in multiscan.from_starts(pattern, text, found.ends.get(("s", i), ()), TIMEOUT_S)
        ]
        assert got == expected, text


@settings(max_examples=600, deadline=None)
@given(TEXTS)
def test_rule_start_hints_cover_every_match_generated(rules: tuple[RuleSet, list[int]], text: str) -> None:
    _check(*rules, text)


def test_rule_start_hints_cover_every_match_on_the_dataset(rules: tuple[RuleSet, list[int]]) -> None:
    path = dataset_or_skip("pii") / "presidio_synth_dataset_v2.json"
    texts = [row["full_text"] for row in json.loads(path.read_text())]
    matched = 0
    for text in [*texts, *pii_corpus.generated(), *(payload.ticket(n) for n in (300, 2048, 16384))]:
        _check(*rules, text)
        matched += any(rules[0].rules[i].pattern.search(text) for i in rules[1])
    assert matched > 100  # the comparison saw many texts with addresses, not only empty results
