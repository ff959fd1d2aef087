"""The one-pass pre-scan (proxy/detectors/multiscan.py) changes nothing the PII engine finds.

The gate may only skip a trigger or rule that cannot match, so the gated scan must give exactly
the hits (spans, types, scores, in order) of the plain scan, on generated texts dense with the
characters the patterns look for, on realistic support tickets, and on the Presidio synthetic
evaluation set. The fast path itself must be present: a build that lost the Hyperscan wheel
would still pass the equivalence tests (both sides plain), so one test fails when it is missing.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.detectors import multiscan
from proxy.detectors.pii import PiiEngine
from proxy.detectors.pii.defaults import DEFAULT_ENTITIES
from proxy.detectors.pii.recognizers import Hit, RuleSet
from tests.datasets import dataset_or_skip

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import payload  # noqa: E402

DATASET_NAME = "presidio_synth_dataset_v2.json"
# Digits, separators, '@', capitals, context words: what triggers and rules look for.
ALPHABET = "0123456789 -.+@:/()\n\tabcdeJKLMNSXZ_,#"
WORDS = ["card", "ssn", "phone", "call", "iban", "GB82", "WEST", "12345", "4111", "Mr", "Street", "1 Main"]
TEXTS = st.lists(st.one_of(st.text(alphabet=ALPHABET, max_size=30), st.sampled_from(WORDS)), max_size=12).map(
    " ".join
)


@pytest.fixture(scope="module")
def pair() -> tuple[RuleSet, RuleSet, frozenset[str]]:
    """The engine's rules gated for the default entities, and the same rules with no gate."""
    engine = PiiEngine("off")
    entities = frozenset(DEFAULT_ENTITIES) & engine._rules.entities
    gated = engine._rules
    gated.prepare(entities)
    return gated, RuleSet(gated.rules), entities


def _same(pair: tuple[RuleSet, RuleSet, frozenset[str]], text: str, min_score: float = 0.4) -> list[Hit]:
    gated, plain, entities = pair
    fast = gated.scan(text, entities, min_score)
    assert fast == plain.scan(text, entities, min_score), text
    return fast


def test_the_fast_path_is_installed_and_used(pair: tuple[RuleSet, RuleSet, frozenset[str]]) -> None:
    assert multiscan.available(), "the hyperscan wheel is missing: pip install hyperscan"
    gated, _, entities = pair
    gate = gated.prepare(entities)
    assert len(gate.keys) > 30  # most triggers and whole-text rules made it into the database
    may = gate.matching(payload.ticket(2048))
    assert may is not None
    assert ("t", "@") in may  # the ticket holds email addresses
    assert len(may) < len(gate.keys)  # and most patterns are known absent without a Python search


@settings(max_examples=400, deadline=None)
@given(text=TEXTS)
def test_gated_scan_equals_plain_scan_on_generated_texts(
    pair: tuple[RuleSet, RuleSet, frozenset[str]], text: str
) -> None:
    _same(pair, text)
    _same(pair, text, min_score=0.0)  # weak rules too


@pytest.mark.parametrize("size", [300, 2048, 16384])
def test_gated_scan_equals_plain_scan_on_support_tickets(
    pair: tuple[RuleSet, RuleSet, frozenset[str]], size: int
) -> None:
    hits = _same(pair, payload.ticket(size))
    assert {h.entity_type for h in hits} >= {"EMAIL_ADDRESS", "PHONE_NUMBER"}


def test_gated_scan_equals_plain_scan_on_the_evaluation_set(
    pair: tuple[RuleSet, RuleSet, frozenset[str]],
) -> None:
    # Beside the repository (CI, developers), never in a user's clone: the generated-text and
    # support-ticket tests above cover the same equivalence there.
    path = dataset_or_skip("pii", DATASET_NAME)
    records: list[dict[str, Any]] = json.loads(path.read_text())
    gated_texts = 0
    for record in records:
        text = record["full_text"]
        gated_texts += multiscan.eligible(text)
        _same(pair, text)
    assert gated_texts > len(records) // 2  # most of the set took the fast path


def test_texts_the_engines_could_read_differently_are_not_gated() -> None:
    gate = multiscan.gate([("digits", re.compile(r"\d+")), ("space", re.compile(r"a\sb"))])
    assert gate.matching("no digits here") == frozenset()
    assert gate.matching("call 555") == {"digits"}
    assert gate.matching("caf\u00e9 555") is None  # non-ASCII: Python's \d, \w and folding differ
    assert gate.matching("a\x1cb") is None  # Python's \s takes \x1c, Hyperscan's does not
    assert gate.matching("a\tb") == {"space"}


def test_patterns_hyperscan_cannot_take_exactly_are_prefiltered_or_left_out() -> None:
    gate = multiscan.gate(
        [
            ("lookbehind", re.compile(r"(?<=card )\d{4}")),  # prefilter: a superset
            ("backref", re.compile(r"(\w)\1")),  # prefilter: a superset
            ("brace", re.compile(r"a{,3}b")),  # "{,3}" means something else in PCRE: left out
            ("kelvin", re.compile("\u212a", re.IGNORECASE)),  # folds onto ASCII k in Python: left out
        ]
    )
    assert gate.keys == {"lookbehind", "backref"}
    quotes = multiscan.gate(
        [
            ("curly", re.compile(r"i[\u2019']m\b", re.IGNORECASE)),  # passed to Hyperscan as \x{2019}
            ("literal", re.compile("Pra\u00e7a|Via ")),
            ("escaped", re.compile(r"\\u2019")),  # a backslash, then "u2019"
            ("range", re.compile("[a-\u00ff]x", re.IGNORECASE)),  # a range with a non-ASCII end: out
            ("long s", re.compile(r"cla\u017f\u017f", re.IGNORECASE)),  # matches "CLASS" in Python: out
        ]
    )
    assert quotes.keys == {"curly", "literal", "escaped"}
    assert quotes.matching("I'M HERE") == {"curly"}
    assert quotes.matching("Via Roma") == {"literal"}
    assert quotes.matching("a \\u2019 b") == {"escaped"}
    assert gate.matching("card 1234") >= {"lookbehind"}  # superset: (\w)\1 is prefiltered as \w\w
    assert gate.matching("aa") == {"backref"}
    assert gate.matching("x y") == frozenset()


def test_without_hyperscan_everything_takes_the_plain_path(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(multiscan, "_hs", None)
    monkeypatch.setattr(multiscan, "_warned", False)
    monkeypatch.setattr(multiscan, "_built", {})
    with caplog.at_level("WARNING", logger="policy_sidecar"):
        gate = multiscan.gate([("digits", re.compile(r"\d+"))])
    assert gate.keys == frozenset()
    assert gate.matching("call 555") is None
    assert "hyperscan is not installed" in caplog.text
    rules = PiiEngine("off")._rules
    fresh = RuleSet(rules.rules)
    fresh.prepare(None)
    text = payload.ticket(2048)
    assert fresh.scan(text, None, 0.4) == RuleSet(rules.rules).scan(text, None, 0.4)


def _exact_triggers(pair: tuple[RuleSet, RuleSet, frozenset[str]]) -> list[tuple[Any, Any]]:
    gated, _, entities = pair
    gate = gated.prepare(entities)
    return [(key, gated._triggers[key[1]]) for key in sorted(gate.exact, key=repr) if key[0] == "t"]


def _exact_reports_are_searches(pair: tuple[RuleSet, RuleSet, frozenset[str]], text: str) -> None:
    """The scan trusts an exactly compiled trigger's report without a Python search: it must be
    the search's answer, both ways."""
    gated, _, entities = pair
    may = gated.prepare(entities).matching(text)
    if may is None:
        return
    for key, trigger in _exact_triggers(pair):
        assert (key in may) is (trigger.search(text) is not None), (key, text)


def test_most_triggers_are_exact(pair: tuple[RuleSet, RuleSet, frozenset[str]]) -> None:
    assert len(_exact_triggers(pair)) >= 10


@settings(max_examples=400, deadline=None)
@given(text=TEXTS)
def test_exact_trigger_reports_equal_searches_on_generated_texts(
    pair: tuple[RuleSet, RuleSet, frozenset[str]], text: str
) -> None:
    _exact_reports_are_searches(pair, text)


def test_exact_trigger_reports_equal_searches_on_the_evaluation_set(
    pair: tuple[RuleSet, RuleSet, frozenset[str]],
) -> None:
    path = dataset_or_skip("pii", DATASET_NAME)
    for record in json.loads(path.read_text()):
        _exact_reports_are_searches(pair, record["full_text"])
    _exact_reports_are_searches(pair, payload.ticket(16384))


@settings(max_examples=300, deadline=None)
@given(
    words=st.lists(
        st.text(alphabet="ab#-_1", min_size=1, max_size=4).filter(lambda w: w[0] in "ab_1"), min_size=1
    ),
    text=st.text(alphabet="ab#-_1 .\n", max_size=60),
)
def test_word_start_spans_are_the_occurrences_not_after_a_word_character(words: list[str], text: str) -> None:
    every = multiscan.literal_set(words, every_match=True)
    starts = multiscan.literal_set(words, every_match=True, word_start=True)
    assert every is not None and starts is not None
    all_spans = every.spans(text)
    assert all_spans is not None
    word = re.compile(r"\w")
    assert starts.spans(text) == [(s, e) for s, e in all_spans if s == 0 or not word.match(text, s - 1)]


@settings(max_examples=400, deadline=None)
@given(
    text=st.text(
        alphabet=st.sampled_from("ab 1\t\n\r\x00\x08\x0b\x0c\x0e\x1c\x1f\x7f\x80\u00e9"), max_size=40
    )
)
def test_a_text_is_gated_exactly_when_it_is_eligible(text: str) -> None:
    """The pass itself answers ``eligible`` (its last pattern finds the control characters)."""
    gate = multiscan.gate([("a", re.compile(r"a")), ("digit", re.compile(r"\d"))])
    found = gate.matching(text)
    assert (found is not None) is multiscan.eligible(text)
    if found is not None:
        assert found == {k for k, rx in (("a", r"a"), ("digit", r"\d")) if re.search(rx, text)}
