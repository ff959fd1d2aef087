"""Rule-based prompt-injection heuristics, maintained as data in ``rules.json``.

Why rules next to a classifier: regexes catch the well-known, high-precision phrasings (instruction
overrides, chat-template tokens, system-prompt exfiltration) even in short texts where a statistical
model has little signal, and every hit is explainable by a rule id and a span. Keeping the rules in JSON
lets them be reviewed and extended without touching code.

Each rule lists *anchors*, single-word literals of which every match contains at least one (lower-case
anchors compare case-insensitively, others exactly, e.g. ``DAN``). A rule's regex only runs when one of
its anchors occurs in the text: a few
fast substring checks replace dozens of regex passes over benign text, which otherwise dominated the
detector's latency. ``HeuristicScanner.unanchored_hits`` lets tests verify that the anchors are complete.

Scoring is a noisy-OR over *distinct* matched rules: ``1 - prod(1 - weight)``. A single strong rule is
enough to cross a 0.5 threshold, while several weak hints (e.g. "stay in character" + "no
restrictions") add up, and repeating the same phrase does not inflate the score.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .normalise import NormalisedText

_MAX_MATCHES_PER_RULE = 3  # enough to show where; bounded so a pathological input stays cheap
_EXCERPT = 80


@dataclass(frozen=True, slots=True)
class Rule:
    """One heuristic: a case-insensitive regex with a weight in (0, 1], gated by anchor literals."""

    id: str
    category: str
    weight: float
    pattern: re.Pattern[str]
    description: str = ""
    anchors: tuple[str, ...] = ()  # empty: always run; all lower-case: case-insensitive, else exact

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Rule:
        weight = float(raw["weight"])
        if not 0.0 < weight <= 1.0:
            raise ValueError(f"rule {raw['id']!r}: weight must be in (0, 1], got {weight}")
        try:
            # ASCII: by the time rules run, normalise.py has folded look-alikes and compat forms to ASCII.
            pattern = re.compile(raw["pattern"], re.IGNORECASE | re.ASCII)
        except re.error as exc:
            raise ValueError(f"rule {raw['id']!r}: bad regex: {exc}") from exc
        anchors = tuple(str(a) for a in raw.get("anchors", ()))
        if any(not a or len(a.split()) != 1 for a in anchors):
            raise ValueError(f"rule {raw['id']!r}: anchors must be non-empty and contain no whitespace")
        description = str(raw.get("description", ""))
        return cls(str(raw["id"]), str(raw["category"]), weight, pattern, description, anchors)


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """Where a rule fired. ``segment`` is None when ``span`` indexes the original text; otherwise it is
    the index of the decoded segment (``NormalisedText.segments``) and ``span`` indexes that segment."""

    rule_id: str
    category: str
    weight: float
    span: tuple[int, int]
    segment: int | None
    excerpt: str


@dataclass(frozen=True, slots=True)
class HeuristicResult:
    score: float
    matches: tuple[RuleMatch, ...]

    @property
    def rule_ids(self) -> tuple[str, ...]:
        """Distinct matched rule ids, in first-match order."""
        return tuple(dict.fromkeys(m.rule_id for m in self.matches))


class HeuristicScanner:
    """Immutable, thread-safe rule scanner: compile once, scan many times."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        ids = [r.id for r in rules]
        if len(ids) != len(set(ids)):
            raise ValueError("duplicate rule ids in heuristic rules")
        self._rules = tuple(rules)
        anchors = {a for r in rules for a in r.anchors}
        self._folded_anchors = tuple(sorted(a for a in anchors if a == a.lower()))
        self._exact_anchors = tuple(sorted(anchors - set(self._folded_anchors)))

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._rules

    @classmethod
    def from_json(cls, path: Path | None = None) -> HeuristicScanner:
        if path is None:
            raw = resources.files(__package__).joinpath("rules.json").read_text("utf-8")
        else:
            raw = path.read_text("utf-8")
        doc = json.loads(raw)
        return cls([Rule.from_dict(r) for r in doc["rules"]])

    @classmethod
    @functools.cache
    def default(cls) -> HeuristicScanner:
        """The packaged rule set, built once (immutable, so sharing it is safe)."""
        return cls.from_json()

    def _active(self, text: str) -> list[Rule]:
        """Rules whose anchors occur in ``text`` (plus the unanchored ones)."""
        lowered = text.lower()
        present = {a for a in self._folded_anchors if a in lowered}
        present.update(a for a in self._exact_anchors if a in text)
        return [r for r in self._rules if not r.anchors or not present.isdisjoint(r.anchors)]

    def reveals_trigger(self, text: str) -> bool:
        """The rot13 probe: does ``text`` contain a rule match made of (at least some) letters?

        rot13 leaves everything but letters unchanged, so a letter-free match (an emoji marker, ``</s>``)
        would fire on the rotated copy of any text that already contains it and reveals nothing new.
        """
        return any(
            any(c.isalpha() for c in m.group())
            for rule in self._active(text)
            for m in rule.pattern.finditer(text)
        )

    def unanchored_hits(self, text: str) -> list[str]:
        """Ids of rules whose regex matches ``text`` but whose anchors miss that match (a rules.json bug)."""
        bad = []
        for rule in self._rules:
            for m in rule.pattern.finditer(text):
                found = m.group()
                if rule.anchors and not any(
                    a in (found if a != a.lower() else found.lower()) for a in rule.anchors
                ):
                    bad.append(rule.id)
        return bad

    def _find(self, text: str) -> Iterator[tuple[Rule, re.Match[str]]]:
        for rule in self._active(text):
            for n, m in enumerate(rule.pattern.finditer(text)):
                if n >= _MAX_MATCHES_PER_RULE:
                    break
                yield rule, m

    def scan_text(self, text: str) -> HeuristicResult:
        """Scan a plain string (spans index ``text`` itself)."""
        matches = tuple(
            RuleMatch(r.id, r.category, r.weight, m.span(), None, m.group()[:_EXCERPT])
            for r, m in self._find(text)
        )
        return HeuristicResult(_noisy_or(matches), matches)

    def scan(self, normalised: NormalisedText) -> HeuristicResult:
        """Scan the normalised text and every decoded segment; map spans back to the original text."""
        found: list[RuleMatch] = []
        for rule, m in self._find(normalised.text):
            span = normalised.to_original(*m.span())
            excerpt = normalised.original[span[0] : span[1]][:_EXCERPT]
            found.append(RuleMatch(rule.id, rule.category, rule.weight, span, None, excerpt))
        for index, segment in enumerate(normalised.segments):
            for rule, m in self._find(segment.text):
                found.append(
                    RuleMatch(rule.id, rule.category, rule.weight, m.span(), index, m.group()[:_EXCERPT])
                )
        matches = tuple(found)
        return HeuristicResult(_noisy_or(matches), matches)


def _noisy_or(matches: Sequence[RuleMatch]) -> float:
    weights = {m.rule_id: m.weight for m in matches}
    miss = 1.0
    for w in weights.values():
        miss *= 1.0 - w
    return round(1.0 - miss, 6)
