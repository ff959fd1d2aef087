"""The regex prefilter (``proxy.detectors.injection.prefilter``) and the moderation rules that use it.

A prefilter may only rule a regex out when no match can exist: the tests check that on the packaged
rules, and that the detector scores exactly as it does with every prefilter removed.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import re
from pathlib import Path

import pytest

from proxy.detectors.injection.prefilter import Prefilter
from proxy.detectors.moderation import ModerationDetector, RuleScanner, canonicalise

REPO = Path(__file__).resolve().parents[2]
PROSE = (
    "Last spring our community garden group decided to rebuild the old greenhouse. Nobody had to ask "
    "twice: everyone wrote down what they wanted, one of us cut the weather strips, and before long "
    "the door closed properly again. It is not finished, but from now on we keep the seedlings warm."
)


def _lines(path: Path) -> list[str]:
    return [
        line for line in path.read_text("utf-8").splitlines() if line.strip() and not line.startswith("#")
    ]


def _texts(literals: set[str], seed: int, count: int) -> list[str]:
    """Benign-hard prompts of both detectors, plus random strings glued from the prefilters' own
    literals and common words (so matches, near-misses and partial literals all occur)."""
    texts = [
        PROSE,
        *_lines(REPO / "proxy/detectors/injection/benign_hard.txt"),
        *_lines(REPO / "proxy/detectors/moderation/benign_hard.txt"),
    ]
    words = [*sorted(literals), "you", "u", "the", "a", "my", "no", "one", "nobody", "ignore", "now", "-"]
    rng = random.Random(seed)
    for _ in range(count):
        pieces = (
            rng.choice(words) + rng.choice(["", " ", "  ", ". ", "\n"]) for _ in range(rng.randint(1, 10))
        )
        texts.append("".join(pieces))
    return texts


def _literals(prefilters: list[Prefilter | None]) -> set[str]:
    return {lit for p in prefilters if p for alt in p.alternatives for group in alt for lit in group}


def test_literals_come_from_every_alternative() -> None:
    assert Prefilter.of("abc") == Prefilter(((("abc",),),))
    phrase = Prefilter.of(r"\b(?:nobody|no one) likes (?:you|u)\b")
    assert phrase is not None and len(phrase.alternatives) == 1
    assert (
        "no one likes u",
        "no one likes you",
        "nobody likes u",
        "nobody likes you",
    ) in phrase.alternatives[0]
    assert phrase.may_match("well, nobody likes you") and not phrase.may_match("nobody likes rain")
    alternation = Prefilter.of("kill(?:s|ed)?|murder")
    assert alternation is not None
    assert [alt[0] for alt in alternation.alternatives] == [("kill",), ("murder",)]
    assert alternation.may_match("they murdered him") and not alternation.may_match("a quiet garden")


def test_no_prefilter_when_a_match_needs_no_literal() -> None:
    for pattern in [r"\w+", "a|\\d+", "(?i)ignore", "x?", r"(\w)\1", "[^a]bc|d*"]:
        assert Prefilter.of(pattern) is None, pattern


def test_optional_and_repeated_parts_are_handled() -> None:
    optional = Prefilter.of("kill[- ]?switch(?:es)?")
    assert optional is not None
    for text in ["killswitch", "kill-switches", "a kill switch"]:
        assert optional.may_match(text) and re.search("kill[- ]?switch(?:es)?", text)
    assert not optional.may_match("kill the switch")
    repeated = Prefilter.of("(?:very )+bad")
    assert (
        repeated is not None and repeated.may_match("very very bad") and not repeated.may_match("very good")
    )


def test_moderation_prefilters_never_rule_out_a_match() -> None:
    scanner = RuleScanner.default()
    rules = [(p.regex, p.prefilter) for p in scanner._patterns] + [
        (a.regex, a.prefilter) for a in scanner._allow
    ]
    assert sum(p is not None for _, p in rules) >= len(rules) // 2  # most rules have one
    for text in _texts(_literals([p for _, p in rules]), seed=11, count=3000):
        canon = canonicalise(text).text
        for regex, prefilter in rules:
            if prefilter is not None and regex.search(canon):
                assert prefilter.may_match(canon), (regex.pattern[:40], text[:60])


def test_prose_with_common_anchors_skips_the_rules_they_gate() -> None:
    """The point of the prefilter: "one" and "nobody", anchors of "no one likes you", occur in this
    prose, but no phrase the rule needs does."""
    pattern = {p.id: p for p in RuleScanner.default()._patterns}["harass.nobody"]
    assert pattern.prefilter is not None and not pattern.prefilter.may_match(canonicalise(PROSE).text)
    assert pattern.prefilter.may_match(canonicalise("Honestly, nobody likes you.").text)


@pytest.mark.parametrize("seed", [21, 22])
def test_detector_scores_as_without_prefilters(seed: int) -> None:
    rules = RuleScanner.default()
    bare = copy.copy(rules)
    bare._patterns = tuple(dataclasses.replace(p, prefilter=None) for p in rules._patterns)
    bare._allow = tuple(dataclasses.replace(a, prefilter=None) for a in rules._allow)
    with_prefilters, without = ModerationDetector(scanner=rules), ModerationDetector(scanner=bare)
    literals = _literals([p.prefilter for p in rules._patterns] + [a.prefilter for a in rules._allow])
    for text in _texts(literals, seed=seed, count=600):
        assert with_prefilters.scan(text).to_dict() == without.scan(text).to_dict(), text[:60]
