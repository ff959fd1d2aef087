"""The pre-scan's match end offsets let the PII engine search only next to them, exactly.

``multiscan.narrowed`` must return what ``pattern.finditer(text)`` returns (same spans, same
groups, same order) whenever the ends it is given include the end of every match; the Gate
must report those ends for exact and prefiltered patterns alike. Checked on generated texts
dense with what the patterns look for, against the plain ``finditer`` of the same pattern.
"""

from __future__ import annotations

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
from proxy.detectors.pii.recognizers import max_width

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import payload

PATTERNS: list[Any] = [
    re.compile(r"\b\d{3}[- ]?\d{3}[- ]?\d{4}\b"),  # exact in Hyperscan
    re.compile(r"(?<!\d)\d{2,4}(?!\d)"),  # look-arounds: prefiltered
    re.compile(r"(?<=card )\d{4}"),  # look-behind before the match start
    regex.compile(r"(?i)\b(?:mr|dr)\.? [a-z]{2,8}\b"),  # the regex module, case-insensitive
    re.compile(r"a{1,3}b?"),  # overlapping candidates
    re.compile(r"(\w)\1"),  # a back-reference: prefiltered
    re.compile(r"\d{0,2}b?"),  # empty matches beside non-empty ones (an end at the last match's end)
    regex.compile(r"(?<![\w.])\d{2,3}+(?:[ .-]\d{2,3}+){1,2}+(?![\w-])"),  # phone-like, possessive
]
ALPHABET = "0123456789 -.abdrmcAB\n"
TEXTS = st.lists(
    st.one_of(
        st.text(alphabet=ALPHABET, max_size=20), st.sampled_from(["card 1234", "Dr. Who", "555-123-4567"])
    ),
    max_size=15,
).map(" ".join)


def _gate() -> multiscan.Gate:
    keyed = list(enumerate(PATTERNS))
    return multiscan.gate(keyed, ends_of=[i for i, _ in keyed])


def test_every_pattern_is_admitted_with_its_ends_recorded() -> None:
    assert multiscan.available(), "the hyperscan wheel is missing: pip install hyperscan"
    gate = _gate()
    assert gate.ends_of == set(range(len(PATTERNS)))
    assert all(max_width(p) is not None for p in PATTERNS)


@settings(max_examples=500, deadline=None)
@given(text=TEXTS)
def test_narrowed_equals_finditer(text: str) -> None:
    scanned = _gate().scan(text)
    assert scanned is not None  # ASCII texts are gated
    for key, pattern in enumerate(PATTERNS):
        plain = [(m.span(), m.groups()) for m in pattern.finditer(text)]
        if key not in scanned.keys:
            assert plain == [], (pattern.pattern, text)  # the gate never misses a match
            continue
        ends = scanned.ends[key]
        assert {m[0][1] for m in plain} <= set(ends), (pattern.pattern, text)  # every match end reported
        width = max_width(pattern)
        assert width is not None
        fast = [(m.span(), m.groups()) for m in multiscan.narrowed(pattern, text, ends, width)]
        assert fast == plain, (pattern.pattern, text)


def test_an_empty_match_takes_the_plain_finditer() -> None:
    pattern = re.compile(r"x?")
    text = "axbx"
    assert [m.span() for m in multiscan.narrowed(pattern, text, [0, 1, 2, 3, 4], 1)] == [
        m.span() for m in pattern.finditer(text)
    ]


def test_widths() -> None:
    assert max_width(re.compile(r"\d{3}-\d{4}")) == 8
    assert max_width(re.compile(r"(?<=ab)c")) == 1  # look-behinds take no width
    assert max_width(regex.compile(r"\p{Lu}\d")) == 2
    assert max_width(re.compile(r"\d+")) is None  # unbounded
    assert max_width(object()) is None


@pytest.mark.parametrize("size", [2048, 65536])
def test_the_pii_engine_narrows_whole_text_rules_on_a_ticket(size: int) -> None:
    rules = PiiEngine("off")._rules
    gate = rules.prepare(None)
    assert len(gate.ends_of) > 10  # the bounded whole-text rules report their match ends
    scanned = gate.scan(payload.ticket(size))
    assert scanned is not None and scanned.ends  # and some did on the ticket


def test_literal_triggers_are_answered_by_the_pre_scan() -> None:
    rules = PiiEngine("off")._rules
    gate = rules.prepare(None)
    literal = [t for t in rules._triggers if t.startswith("=")]
    assert literal and all(("t", t) in gate.keys for t in literal)
    for text in ("my name is Ann", "the office in Leeds", "no trigger at all here", "ZIP 90210", "I\u2019m"):
        scanned = gate.scan(text)
        for t in literal:
            expected = rules._triggers[t].search(text) is not None
            if scanned is None:  # a non-ASCII text takes the plain path
                continue
            assert (("t", t) in scanned.keys) == expected, (t, text)


def test_the_shared_gates_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(multiscan, "_built", {})
    monkeypatch.setattr(multiscan, "_BUILT_MAX", 3)
    gates = [multiscan.gate([("k", re.compile(f"word{i}"))]) for i in range(5)]
    assert len(multiscan._built) == 3  # the two oldest were dropped from the share
    assert gates[0].matching("a word0 here") == {"k"}  # and still work for whoever holds them
    assert multiscan.gate([("k", re.compile("word4"))]) is gates[4]  # recent ones are shared


_LITERAL_TRIGGERS = [t for t in PiiEngine("off")._rules._triggers if t.startswith("=")]
_LITERAL_PIECES = sorted(
    {lit for t in _LITERAL_TRIGGERS for lit in t[1:].split("|")} | {"\u00e9", "aaa", " "}
)


@settings(max_examples=300, deadline=None)
@given(
    text=st.lists(
        st.sampled_from(_LITERAL_PIECES) | st.text(alphabet="zipHQsk-_ ", max_size=5), max_size=20
    ).map("".join)
)
def test_literal_trigger_positions_equal_the_substring_search(text: str) -> None:
    triggers = PiiEngine("off")._rules._triggers
    for t in _LITERAL_TRIGGERS:
        literals = triggers[t]
        assert literals._positions is not None  # the fast path is built
        fast = [f.span() for f in literals.finditer(text)]
        assert fast == [f.span() for f in literals.finditer_plain(text)], (t, text)
