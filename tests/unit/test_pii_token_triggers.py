"""A rule that runs only in the tokens holding its trigger finds every match it finds in the text.

For the ``"token"`` window (e-mail, IP, crypto, UUID, licence numbers) that holds when every
match of the rule's regex lies in a whitespace-free token that also holds a match of its trigger.
Checked for every such rule on generated, corpus and dataset texts, with addresses of every
shape for the IPv4 trigger (``\\d\\.\\d{1,3}\\.\\d``: two dots between octets, so prices and
version numbers open no window), and the engine's spans with the former one-dot trigger.
"""

from __future__ import annotations

import functools
import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.detectors.pii import PiiEngine
from proxy.detectors.pii import recognizers as recognizers_module
from proxy.detectors.pii.defaults import DEFAULT_ENTITIES
from proxy.detectors.pii.recognizers import Rule, RuleSet
from tests.datasets import dataset_or_skip
from tests.unit import pii_corpus

_TOKEN = re.compile(r"\S+")


@functools.cache
def _rules() -> RuleSet:
    return PiiEngine("off")._rules


def _token_rules() -> list[Rule]:
    return [r for r in _rules().rules if r.window == "token" and r.trigger is not None]


def _check(text: str) -> int:
    """Every match of every token-windowed rule lies in a token holding its trigger; the count."""
    rules = _rules()
    tokens = [m.span() for m in _TOKEN.finditer(text)]
    seen = 0
    for rule in _token_rules():
        assert rule.trigger is not None
        trigger = rules._triggers[rule.trigger]
        for m in rule.pattern.finditer(text):
            start, end = m.span()
            if start == end:
                continue
            seen += 1
            holding = [(s, e) for s, e in tokens if s <= start and end <= e]
            assert holding, (rule.entity_type, text, m.group(0))
            (s, e) = holding[0]
            assert any(t.span()[0] >= s and t.span()[1] <= e for t in trigger.finditer(text)), (
                rule.entity_type,
                rule.trigger,
                m.group(0),
            )
    return seen


_OCTET = st.integers(0, 299).map(str) | st.sampled_from(["0", "00", "01", "255", "256", "1000"])
_IPS = st.builds(
    lambda parts, cidr, before, after: before + ".".join(parts) + cidr + after,
    st.lists(_OCTET, min_size=3, max_size=5),
    st.sampled_from(["", "/24", "/8", "/33", "/"]),
    st.sampled_from(["", " ", "ip ", "$", "v", "x.", "(", "version "]),
    st.sampled_from(["", " ", ".", ",", ":80", ".5", "a"]),
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(_IPS, min_size=1, max_size=4).map(" ".join))
def test_ip_matches_lie_in_tokens_holding_the_trigger(text: str) -> None:
    _check(text)


def test_every_token_rule_on_the_corpus() -> None:
    texts = pii_corpus.generated(400) + pii_corpus._sources()["tickets"]()[:4]
    assert sum(_check(t) for t in texts) > 100


def test_every_token_rule_on_the_dataset() -> None:
    path = dataset_or_skip("pii") / "presidio_synth_dataset_v2.json"
    texts = [row["full_text"] for row in json.loads(path.read_text())]
    assert sum(_check(t) for t in texts) > 50


def test_same_spans_as_with_the_one_dot_ipv4_trigger() -> None:
    texts = [
        *pii_corpus.generated(200),
        *pii_corpus._sources()["tickets"]()[:4],
        "prices $1234.56 and v2.5, server 10.0.0.1, release 4.2.0.1, 192.168.1.1/24 and 1.2.3",
    ]
    entities = sorted(frozenset(DEFAULT_ENTITIES) & PiiEngine("off").entities)
    current = PiiEngine("off")
    current.prepare(entities)
    found = [current.analyze(t, entities, 0.4) for t in texts]
    assert recognizers_module.PATTERN_TRIGGERS["IPv4"] == r"\d\.\d{1,3}\.\d"
    patched = dict(recognizers_module.PATTERN_TRIGGERS, IPv4=r"\d\.\d")
    original = recognizers_module.PATTERN_TRIGGERS
    recognizers_module.PATTERN_TRIGGERS = patched
    try:
        before = PiiEngine("off")
    finally:
        recognizers_module.PATTERN_TRIGGERS = original
    before.prepare(entities)
    assert [before.analyze(t, entities, 0.4) for t in texts] == found
    assert any(s.entity_type == "IP_ADDRESS" for spans in found for s in spans)
