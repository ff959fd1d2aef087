"""A rule's ``start_check`` must match wherever the rule's regex matches (it only drops starts).

The ADDRESS rule's reported starts are filtered by ``tuned.ADDRESS_HEAD`` before its costly
regex is tried there; that is exact only if every position where ``ADDRESS`` matches also
matches the head. Checked at every position of generated, corpus and dataset texts, plus the
structural reason (the head is the regex's own opening, up to the street name's first
character), and the scan's hits with and without the check.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.detectors.pii import PiiEngine
from proxy.detectors.pii.defaults import DEFAULT_ENTITIES
from proxy.detectors.pii.recognizers import Rule
from proxy.detectors.pii.tuned import _W, ADDRESS, ADDRESS_HEAD
from tests.datasets import dataset_or_skip
from tests.unit import pii_corpus

_ADDRESSY = st.lists(
    st.sampled_from(
        ["12", "1600", "5", "1234567", " ", "  ", "\n", "Main", "main", "Street", "P.O.", "Box", "P.O. Box",
         "x", "-", ".", ",", "(our", "é", "Élysée", "_a", "0127", "Apt", "2B"]
    ),
    max_size=12,
).map("".join)  # fmt: skip


@functools.cache
def _address_rule() -> Rule:
    """The one built-in rule with a ``start_check`` (the house-number-led ADDRESS rule)."""
    (rule,) = [r for r in PiiEngine("off")._rules.rules if r.start_check is not None]
    return rule


@pytest.fixture(scope="module")
def address_rule() -> Rule:
    return _address_rule()


def _check_every_position(rule: Rule, text: str) -> int:
    matched = 0
    for pos in range(len(text) + 1):
        if rule.pattern.match(text, pos) is not None:
            matched += 1
            assert rule.start_check.match(text, pos) is not None, (text, pos)
    return matched


def test_the_head_is_the_opening_of_the_address_regex() -> None:
    """Why the check is a necessary condition: ``ADDRESS`` opens with the head's look-behind and
    house number (or P.O. Box), then ``_W``, whose first character is the head's last class."""
    opening = ADDRESS_HEAD.removesuffix(r"[^\W\d_]")
    assert ADDRESS.startswith(opening.replace("(?:P", "(?:(?:P", 1) + _W)
    assert _W.startswith(r"[^\W\d_]")


@settings(max_examples=600, deadline=None)
@given(_ADDRESSY)
def test_head_matches_wherever_the_address_regex_does(text: str) -> None:
    _check_every_position(_address_rule(), text)


def test_head_matches_on_the_corpus(address_rule: Rule) -> None:
    texts = pii_corpus.generated(200) + pii_corpus._sources()["tickets"]()[:3]
    assert sum(_check_every_position(address_rule, t) for t in texts) > 20


def test_head_matches_on_the_dataset(address_rule: Rule) -> None:
    path = dataset_or_skip("pii") / "presidio_synth_dataset_v2.json"
    rows = json.loads(path.read_text())[:400]
    assert sum(_check_every_position(address_rule, row["full_text"]) for row in rows) > 20


def test_scan_hits_same_without_the_check(address_rule: Rule) -> None:
    engine = PiiEngine("off")
    entities = sorted(frozenset(DEFAULT_ENTITIES) & engine.entities)
    engine.prepare(entities)
    (rule,) = [r for r in engine._rules.rules if r.start_check is not None]
    texts = pii_corpus.generated(150) + pii_corpus._sources()["tickets"]()[:4]
    with_check = [engine.analyze(t, entities, 0.4) for t in texts]
    check: Any = rule.start_check
    object.__setattr__(rule, "start_check", None)
    try:
        without = [engine.analyze(t, entities, 0.4) for t in texts]
    finally:
        object.__setattr__(rule, "start_check", check)
    assert with_check == without
    assert any(s.entity_type == "ADDRESS" for spans in with_check for s in spans)
    assert isinstance(check, type(regex.compile("")))
