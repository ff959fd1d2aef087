"""Rule-based prompt-injection heuristics, maintained as data in ``rules.json``.

Why rules next to a classifier: regexes catch the well-known, high-precision phrasings (instruction
overrides, chat-template tokens, system-prompt exfiltration) even in short texts where a statistical
model has little signal, and every hit is explainable by a rule id and a span. Keeping the rules in JSON
lets them be reviewed and extended without touching code.

Each rule lists *anchors*, single-word literals of which every match contains at least one (lower-case
anchors compare case-insensitively, others exactly, e.g. ``DAN``). A rule's regex only runs when one of
its anchors occurs in the text: one vectorised literal search (``literals.LiteralIndex``) replaces
dozens of regex passes over benign text, which otherwise dominated the detector's latency. Optional
*starts* (literals every match begins with) let a rule's regex be tried only where one occurs. The
same search also holds the anchors' rot13s, so the normaliser's rot13 probe is skipped (exactly) when
no rule could match the rotated text (``may_reveal_trigger``).
``HeuristicScanner.self_check`` lets tests verify that anchors and starts are complete.

Scoring is a noisy-OR over *distinct* matched rules: ``1 - prod(1 - weight)``. A single strong rule is
enough to cross a 0.5 threshold, while several weak hints (e.g. "stay in character" + "no
restrictions") add up, and repeating the same phrase does not inflate the score.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from proxy.detectors import multiscan

from .decoders import rot13
from .literals import LiteralIndex, rarest_char
from .normalise import NormalisedText

_MAX_MATCHES_PER_RULE = 3  # enough to show where; bounded so a pathological input stays cheap
_MAX_STARTS = 256  # beyond this many candidate positions, one regex pass is cheaper than many matches
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
    lowered: re.Pattern[str] | None = None  # same regex without IGNORECASE, for lower-cased text
    starts: tuple[str, ...] = ()  # lower-case literals every match begins with; empty: unknown

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
        # Without IGNORECASE, ``re`` can skip ahead on the first character of the pattern; with it, it
        # cannot, which made every rule ~2x slower. Patterns written in lower case are therefore also
        # compiled plain and run on the lower-cased text (same semantics, same spans).
        lowered = None if _has_upper_literal(raw["pattern"]) else re.compile(raw["pattern"], re.ASCII)
        starts = tuple(str(a) for a in raw.get("starts", ()))
        if any(not a or a != a.lower() for a in starts):
            raise ValueError(f"rule {raw['id']!r}: starts must be non-empty and lower-case")
        if starts and lowered is None:
            raise ValueError(
                f"rule {raw['id']!r}: starts need a lower-case pattern (matched on lowered text)"
            )
        return cls(
            str(raw["id"]), str(raw["category"]), weight, pattern, description, anchors, lowered, starts
        )


def _has_upper_literal(pattern: str) -> bool:
    """True if the regex source has an upper-case character outside escapes (``\\S`` etc. are fine)."""
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern[i].isupper():
            return True
        i += 1
    return False


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
        # One search finds the folded anchors and the starts (all lower-case) in lowered text; starts
        # shorter than the index's 4-byte keys ("do", "you") are looked for only when their rule runs.
        self._long_starts = frozenset(a for r in rules for a in r.starts if len(a.encode("utf-8")) >= 4)
        folded = {a for a in anchors if a == a.lower()}
        exact_anchors = sorted(a for a in anchors if a != a.lower())
        # Each exact anchor (and its rot13) with its rarest character: a memchr for that rules the
        # anchor out of most prose for ~0.1 µs, where the substring search costs ~2 µs per 2 KB.
        self._exact_guarded = tuple((a, rarest_char(a)) for a in exact_anchors)
        # The rot13 probe's anchors, looked for in the *un*-rotated text by the same search: for ASCII,
        # ``rot13(t).lower() == rot13(t.lower())``, so an anchor occurs in the rotated text exactly when
        # its rot13 occurs in the text (``may_reveal_trigger``).
        self._rot_folded = {rot13(a): a for a in folded}
        self._rot_exact = tuple((rot13(a), rarest_char(rot13(a)), a) for a in exact_anchors)
        self._folded = LiteralIndex(folded | self._long_starts | set(self._rot_folded))
        self._all_anchored = all(r.anchors for r in rules)
        self._memo = threading.local()  # one-shot hand-over of may_reveal_trigger's search to _find
        self._gate: multiscan.Gate | None = None  # built on first use (``_rule_gate``)

    def _rule_gate(self) -> multiscan.Gate:
        """One Hyperscan pass over a text that tells which rules can match it at all.

        Why: ordinary prose holds some anchor of several rules ("your", "not", "message", "never"),
        and each of those rules then costs 4-11 µs of ``re`` per 2 KB to find nothing (~30 µs of a
        support ticket's scan); the pass costs ~5 µs and rules them out. Exact (``multiscan``): a
        rule it does not report cannot match, and a rule it reports runs as before; texts it cannot
        gate (non-ASCII, control characters) run every anchored rule. Built on first use and shared
        (``multiscan.gate`` compiles a rule set once per process): compiling takes seconds, which
        the plugin's warm-up pays at start (``warmup.py``)."""
        gate = self._gate
        if gate is None:
            gate = self._gate = multiscan.gate(
                [(index, rule.pattern) for index, rule in enumerate(self._rules)]
            )
        return gate

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

    def _find(self, text: str) -> Iterator[tuple[Rule, tuple[int, int]]]:
        """(rule, span) for up to a few matches per rule whose anchors occur in ``text``."""
        memo = getattr(self._memo, "entry", None)
        if memo is not None and memo[0] is text:  # searched a moment ago by may_reveal_trigger
            self._memo.entry = None
            lowered, present = memo[1], memo[2]
        else:
            lowered = text.lower()
            present = self._folded.present(lowered)  # anchors and starts
        same_length = len(lowered) == len(text)  # lower() lengthens a few non-ASCII characters
        present.update(a for a, guard in self._exact_guarded if guard in text and a in text)
        anchored = [
            (index, rule)
            for index, rule in enumerate(self._rules)
            if not rule.anchors or not present.isdisjoint(rule.anchors)
        ]
        if not anchored:
            return
        may = self._rule_gate().matching(text)  # None: the text is not gated, every rule runs
        for index, rule in anchored:
            if may is not None and index not in may:
                continue  # exact: the one-pass gate reports every rule that can match
            found: Iterator[re.Match[str]]
            if rule.lowered is not None and same_length:
                found = _started(rule.lowered, lowered, rule.starts, present, self._long_starts)
            else:
                found = rule.pattern.finditer(text)
            for n, m in enumerate(found):
                if n >= _MAX_MATCHES_PER_RULE:
                    break
                yield rule, m.span()

    def may_reveal_trigger(self, text: str) -> bool:
        """The rot13 gate: could ``reveals_trigger(rot13(text))`` be True? Exact, not a heuristic.

        Why: the probe cost a second literal search over a rotated copy of every text (~40% of the
        rule layer), and on ordinary text no rule's anchor occurs in that copy. The anchors' rot13s
        are in the same index as the anchors, so the one search of ``text`` answers both; a rule
        can match the rotated text only if one of its anchors occurs there. The search is handed to
        the ``_find`` of the same ``text`` that follows in ``InjectionDetector.scan`` (one-shot and
        per thread: it is consumed by that call, so repeated texts are not made cheaper). Non-ASCII
        text, or rules without anchors, answer True: the probe then decides as before."""
        if not self._all_anchored or not text.isascii():
            return True
        lowered = text.lower()
        present = self._folded.present(lowered)
        self._memo.entry = (text, lowered, present)
        revealed = {self._rot_folded[lit] for lit in present if lit in self._rot_folded}
        revealed.update(a for lit, guard, a in self._rot_exact if guard in text and lit in text)
        return bool(revealed) and any(not revealed.isdisjoint(rule.anchors) for rule in self._rules)

    def reveals_trigger(self, text: str) -> bool:
        """The rot13 probe: does ``text`` contain a rule match made of (at least some) letters?

        rot13 leaves everything but letters unchanged, so a letter-free match (an emoji marker, ``</s>``)
        would fire on the rotated copy of any text that already contains it and reveals nothing new.
        """
        return any(any(c.isalpha() for c in text[s:e]) for _, (s, e) in self._find(text))

    def self_check(self, text: str) -> list[str]:
        """Problems in rules.json revealed by ``text``: a match containing none of the rule's anchors
        (it would be silently skipped), a match beginning with none of its starts (it would be missed),
        or a lower-cased fast path that disagrees with IGNORECASE."""
        problems = []
        lowered = text.lower()
        for rule in self._rules:
            spans = [m.span() for m in rule.pattern.finditer(text)]
            for s, e in spans:
                found = text[s:e]
                if rule.anchors and not any(
                    a in (found if a != a.lower() else found.lower()) for a in rule.anchors
                ):
                    problems.append(f"{rule.id}: match {found[:40]!r} has no anchor")
                if rule.starts and not found.lower().startswith(rule.starts):
                    problems.append(f"{rule.id}: match {found[:40]!r} begins with none of its starts")
            fast = rule.lowered
            if (
                fast is not None
                and len(lowered) == len(text)
                and [m.span() for m in fast.finditer(lowered)] != spans
            ):
                problems.append(f"{rule.id}: lower-case fast path disagrees with IGNORECASE")
        return problems

    def scan_text(self, text: str) -> HeuristicResult:
        """Scan a plain string (spans index ``text`` itself)."""
        matches = tuple(
            RuleMatch(r.id, r.category, r.weight, (s, e), None, text[s:e][:_EXCERPT])
            for r, (s, e) in self._find(text)
        )
        return HeuristicResult(_noisy_or(matches), matches)

    def scan(self, normalised: NormalisedText) -> HeuristicResult:
        """Scan the normalised text and every decoded segment; map spans back to the original text."""
        found: list[RuleMatch] = []
        for rule, (start, end) in self._find(normalised.text):
            span = normalised.to_original(start, end)
            excerpt = normalised.original[span[0] : span[1]][:_EXCERPT]
            found.append(RuleMatch(rule.id, rule.category, rule.weight, span, None, excerpt))
        for index, segment in enumerate(normalised.segments):
            for rule, (s, e) in self._find(segment.text):
                excerpt = segment.text[s:e][:_EXCERPT]
                found.append(RuleMatch(rule.id, rule.category, rule.weight, (s, e), index, excerpt))
        matches = tuple(found)
        return HeuristicResult(_noisy_or(matches), matches)


def _started(
    regex: re.Pattern[str], text: str, starts: tuple[str, ...], present: set[str], indexed: frozenset[str]
) -> Iterator[re.Match[str]]:
    """``regex.finditer(text)`` for a regex whose matches all begin with one of ``starts``.

    Why: most rules begin with ``\\b(?:word|...)``, which keeps ``re`` from skipping ahead, so it
    tries a match at every position (30-100 µs per rule and 2 KB, and common words such as "your" or
    "not" make several rules run on ordinary prose). Trying only where a start occurs finds the same
    matches: ``finditer`` returns the leftmost match, which must begin at a start, and resumes at
    its end. Falls back to ``finditer`` when a rule has no starts or they occur very often."""
    if not starts:
        yield from regex.finditer(text)
        return
    positions: list[int] = []
    for start in starts:
        if start in present or start not in indexed:  # present, or too short for the index
            at = text.find(start)
            while at >= 0:
                positions.append(at)
                if len(positions) > _MAX_STARTS:
                    yield from regex.finditer(text)  # bounded work whatever the text
                    return
                at = text.find(start, at + 1)
    end = 0
    for at in sorted(set(positions)):
        if at < end:
            continue
        m = regex.match(text, at)
        if m is not None:
            yield m
            end = max(m.end(), at + 1)


def _noisy_or(matches: Sequence[RuleMatch]) -> float:
    weights = {m.rule_id: m.weight for m in matches}
    miss = 1.0
    for w in weights.values():
        miss *= 1.0 - w
    return round(1.0 - miss, 6)
