"""Required literals of a regex: what a text must contain for the regex to match anywhere in it.

Why: a rule regex gated by a common anchor word ("one", "you", "nobody") still ran on ordinary
prose, and locating and tokenising the sentences around the anchors cost more than the rest of the
moderation rule layer together (about half of a rule scan of 2 KB of prose went to one rule,
"no one likes you", anchored on "one"). ``Prefilter.of`` reads the regex's parse tree once and keeps
literal strings that every match must contain; ``may_match`` then answers with a few C-level ``in``
searches, and a regex it rules out is not run. This is exact, not a heuristic: literals come only
from parts every match goes through (alternatives are united, optional parts contribute nothing),
and a regex the analysis does not understand (case-insensitive, back-references, ...) gets no
prefilter: it always runs. The idea is that of the required-substring prefilters of RE2 and
Hyperscan, kept to what ``re`` parses.

Shape: the top-level alternatives of the regex, each a conjunction of groups, each group a set of
strings of which the match contains at least one ("nobody " or "no one " or "noone ", and "likes you"
or ...). ``may_match`` is true when some alternative has every group present.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any

# ``re``'s own parser (public as ``sre_parse`` before 3.11, which now warns on import); typeshed has no
# stubs for the private modules, hence ``Any``.
sre_parse: Any = importlib.import_module("re._parser")
sre: Any = importlib.import_module("re._constants")

_CAP = 8  # most strings a multiplied-out literal run or a group may hold: each is one search
_MAX_GROUPS = 3  # per alternative: the most selective ones; more would rarely rule out more
_MAX_SEARCHES = 32  # first-group strings over all alternatives: past this, running the regex is cheaper

Group = frozenset[str]


@dataclass(frozen=True, slots=True)
class Prefilter:
    """``alternatives``: per top-level alternative of the regex, groups that all must be present."""

    alternatives: tuple[tuple[tuple[str, ...], ...], ...]

    @classmethod
    def of(cls, pattern: str, flags: int = re.ASCII) -> Prefilter | None:
        """The prefilter of ``pattern`` (case-sensitive literals), or None when nothing is known."""
        try:
            parsed = sre_parse.parse(pattern, flags)
        except re.error:
            return None
        if parsed.state.flags & re.IGNORECASE:
            return None
        items = list(parsed)
        alternatives: list[Any] = [items]
        branches = [av for op, av in items if op is sre.BRANCH]
        if len(branches) == 1 and all(op in (sre.BRANCH, sre.AT) for op, _ in items):
            alternatives = list(branches[0][1])  # "a|b", or "\\b(?:a|b)": ``re`` factors shared "\\b" out
        out = []
        for alternative in alternatives:
            groups = _sequence(list(alternative))[1]
            if not groups:
                return None  # an alternative without a constraint: the regex may match anything
            ranked = sorted(groups, key=_rank)[:_MAX_GROUPS]
            out.append(tuple(tuple(sorted(g)) for g in ranked))
        if sum(len(alt[0]) for alt in out) > _MAX_SEARCHES:
            return None
        return cls(tuple(out))

    def may_match(self, text: str) -> bool:
        """False only when no match can exist in ``text`` (some group of every alternative is absent).

        Each alternative's groups are checked in a plain loop (``_all_present``), not with nested
        ``all``/``any`` generators: a generator per group cost ~4 µs of the ~18 µs a typical prefilter
        took on 2 KB of prose."""
        return any(_all_present(alternative, text) for alternative in self.alternatives)


def _all_present(groups: tuple[tuple[str, ...], ...], text: str) -> bool:
    """Does every group have one of its strings in ``text``?"""
    for group in groups:
        for lit in group:
            if lit in text:
                break
        else:
            return False
    return True


def _rank(group: Group) -> tuple[int, int]:
    """Cheapest and most selective first: strings of 4+ characters rarely occur by chance, and each
    string is one search."""
    return (-min(min(map(len, group)), 4), len(group))


def _usable(group: Group | None) -> bool:
    return group is not None and 0 < len(group) <= _CAP and "" not in group


def _sequence(items: list[tuple[Any, Any]]) -> tuple[Group | None, list[Group]]:
    """A concatenation -> (every string it can match, when few; groups that all must be present).

    Runs of items with few exact strings are multiplied out (up to ``_CAP`` strings); each run and
    each constraint of an item that breaks a run is a required group."""
    run: Group = frozenset({""})
    all_exact = True
    groups: list[Group] = []
    for op, av in items:
        exact, inner = _node(op, av)
        if exact is not None and len(run) * len(exact) <= _CAP:
            if len(exact) > 1 and _usable(run):
                groups.append(run)  # fewer, shorter strings: often the cheaper group to look for
            run = frozenset(a + b for a in run for b in exact)
            continue
        all_exact = False
        if _usable(run):
            groups.append(run)
        if exact is not None:  # too many to multiply out: a run of its own
            run = exact
            continue
        groups.extend(inner)
        run = frozenset({""})
    if _usable(run):
        groups.append(run)
    return (run if all_exact else None), groups


def _node(op: Any, av: Any) -> tuple[Group | None, list[Group]]:
    """One parse-tree item -> (its exact strings when few, required groups)."""
    if op is sre.LITERAL:
        return frozenset({chr(av)}), []
    if op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
        return frozenset({""}), []  # zero-width: where a match may be, never what it contains
    if op is sre.IN:
        if all(kind is sre.LITERAL for kind, _ in av) and len(av) <= _CAP:
            return frozenset(chr(code) for _, code in av), []
        return None, []
    if op is sre.SUBPATTERN:
        add_flags, inner = av[1], av[3]
        if add_flags & re.IGNORECASE:
            return None, []
        return _sequence(list(inner))
    if op is sre.BRANCH:
        results = [_sequence(list(alt)) for alt in av[1]]
        union: set[str] = set()
        exact_known = True
        for exact, _ in results:
            if exact is None:
                exact_known = False
            else:
                union |= exact
        if exact_known and len(union) <= _CAP:
            return frozenset(union), []
        # Some alternative's best group is present in every match of that alternative: their union
        # is present in every match of the branch.
        best = [min(groups, key=_rank) if groups else None for _, groups in results]
        if all(_usable(g) for g in best):
            merged = frozenset().union(*(g for g in best if g is not None))
            if len(merged) <= 2 * _CAP:
                return None, [merged]
        return None, []
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
        low, high, inner = av
        exact, groups = _sequence(list(inner))
        if low == high == 1:
            return exact, groups
        if low == 0 and high == 1:
            return (exact | {""} if exact is not None else None), []
        if low >= 1:
            return None, [exact] if exact is not None and _usable(exact) else groups
        return None, []
    return None, []
