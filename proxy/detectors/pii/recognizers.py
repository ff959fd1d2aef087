"""Pattern recognisers run directly, without presidio's AnalyzerEngine.

Why not ``AnalyzerEngine.analyze``: profiled on a 2 KB prompt it cost 6 ms (prose) to 44 ms
(PII-dense) without any model. The time went to (1) ``phonenumbers`` trying eight regions on
every digit run, (2) the context enhancer walking every spaCy token for every match, and (3)
running all ~45 regexes (four URL regexes of 6 KB each) over the whole text whatever it holds.

Here each rule carries a cheap *trigger* (e.g. ``@`` for email, three digits for card / SSN /
phone): a rule whose trigger is absent from the text is skipped, so ordinary prose runs only a
few short searches (one digit search answers every digit trigger for digit-free text). Costly
rules run only in a *window* around their trigger matches (the whitespace-free token for
emails and IPs, N characters for the address grammars). *Weak* rules, whose score only passes
the threshold with a context word nearby, run only if one of their context words occurs at a
word start (one scan for all of them). Presidio's own patterns and checksum validators (Luhn, IBAN mod 97, SSN
invalid ranges, ...) are reused as they are; context words are looked up in the five words
before a match (presidio's default window, prefix match, +0.35, at least 0.4), on plain
lower-cased words instead of spaCy tokens. Phone numbers use a regex plus digit-count rules
instead of ``phonenumbers`` (international formats, scored by context).
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeAlias

import regex

from proxy.detectors import multiscan
from proxy.detectors.pii.capitalised import Gazetteer, NameGazetteer, _Found, capitalised_words
from proxy.detectors.pii.presidio_rules import Recognizer
from proxy.detectors.pii.tuned import TUNED_RULES, TunedRule

try:  # built by setup.py when a C compiler is there (optional: see ``RuleSet._context_words``)
    from proxy.detectors.pii import _pii_kernel as kernel
except ImportError:  # pragma: no cover - installs without a compiler
    kernel = None  # type: ignore[assignment]
    logging.getLogger("policy_sidecar.pii").warning(
        "compiled PII scans not built (no C compiler at install time?): the pii engine uses its "
        "Python scans for capitalised and context words: same spans, more CPU per text"
    )

FLAGS = regex.DOTALL | regex.MULTILINE | regex.IGNORECASE  # presidio's global regex flags
#: per regex scan of a rule that is not ``bounded``: a pathological input costs at most this,
#: never hangs a worker. The ``regex`` module pays for the timeout on every call and every
#: match (about 3 µs and 1 µs: a tenth of the scan of PII-dense text), so the built-in rules
#: whose patterns repeat nothing unboundedly (dates, SSNs, cards, phones: linear in the text)
#: run without one; see ``bounded``.
TIMEOUT_S = 0.5
CONTEXT_BOOST = 0.35
CONTEXT_MIN = 0.4
CONTEXT_WORDS_BEFORE = 5
CONTEXT_CHARS_BEFORE = 80  # the words are looked for in this many characters before a match
_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s")
Window: TypeAlias = Literal["text", "token"] | int

#: entity type -> a cheap search that must succeed for any of its patterns to match.
TRIGGERS: dict[str, str] = {
    "EMAIL_ADDRESS": r"@",
    "CREDIT_CARD": r"\d{4}",
    "US_SSN": r"\d{3}",
    "US_ITIN": r"\d{3}",
    "US_PASSPORT": r"\d{3}",
    "US_BANK_NUMBER": r"\d{8}",
    "US_DRIVER_LICENSE": r"\d{3}",
    "UK_NHS": r"\d{3}",
    "MEDICAL_LICENSE": r"\d{7}",
    "PHONE_NUMBER": r"\d{2}",
    "IBAN_CODE": r"\d\d",
    "CRYPTO": r"[13b][A-Za-z0-9]{24}",
    "DATE_TIME": r"\d",
    "UUID": r"[0-9A-Fa-f]{8}-",
}
#: per presidio pattern name, where one entity's patterns need different cheap clues. Triggers
#: that start with a literal character (``:``, ``.``) are the cheapest: a memchr-like scan.
PATTERN_TRIGGERS: dict[str, str] = {
    "IPv4_mapped": r"::",
    "IPv4_embedded": r":[0-9A-Fa-f]{0,4}:",
    # every IPv4 address holds two dots between 1-3 digit octets; a price or a version number
    # ("$1234.56", "v2.5") holds one and no longer opens a window
    "IPv4": r"\d\.\d{1,3}\.\d",
    "IPv6": r":[0-9A-Fa-f]{0,4}:",
    "IPv6_unspecified": r"::",
    "MAC_COLON_OR_HYPHEN": r"[:-][0-9A-Fa-f]{2}[:-]",
    "MAC_CISCO_DOT": r"\.[0-9A-Fa-f]{4}\.",
}


#: Rules whose regex is costly on every 2 KB (the 6 KB URL alternations, the email and
#: alphanumeric licence patterns): run only where their trigger matched.
WINDOWS: dict[str, Window] = {
    "EMAIL_ADDRESS": "token",
    "IP_ADDRESS": "token",
    "MEDICAL_LICENSE": "token",
    "UUID": "token",
    "CRYPTO": "token",
}


class Hit(NamedTuple):
    """One match of one rule, score context-adjusted. A named tuple, not a frozen dataclass:
    a PII-dense text makes dozens per scan, and a frozen dataclass's ``__init__`` (one
    ``object.__setattr__`` per field) cost four times as much to build."""

    start: int
    end: int
    entity_type: str
    score: float


@dataclass(frozen=True, slots=True)
class Rule:
    """One regex of one entity type; ``validate`` returns True (score 1), False (drop) or None."""

    entity_type: str
    pattern: Any  # regex.Pattern[str]
    score: float
    context: tuple[str, ...] = ()
    #: a regex; ``=lit|lit|...``: literal alternatives, tested with substring search;
    #: ``~word|word|...``: capitalised words (given lower-case), looked up in the shared scan
    trigger: str | None = None
    validate: Callable[[str], bool | None] | None = None
    invalidate: Callable[[str], bool | None] | None = None
    group: int = 0  # the span is this group of the match (0: the whole match)
    #: where the regex runs once the trigger is found: the whole text, only the whitespace-free
    #: runs that contain a trigger match ("token"), or N characters around each trigger match.
    window: Window = "text"
    #: the pattern has no unbounded repetition (``bounded``), so it runs without ``TIMEOUT_S``.
    #: Set only for the built-in rules, whose patterns are reviewed here; a policy's own regex
    #: always keeps the timeout (bounded repetition of nested alternatives can still explode).
    linear: bool = False
    #: a regex searched in the text just before a match (``NOT_AFTER_CHARS``): a hit drops it
    not_after: Any = None
    #: a regex (Hyperscan syntax, compiled exactly, window "text" only) such that every match
    #: of ``pattern`` starts where a match of it does, at the leftmost start among its matches
    #: that end at the same offset (``HS_FLAG_SOM_LEFTMOST``): the gate reports those starts and
    #: the rule's regex is tried only there (``multiscan.from_starts``)
    starts: str | None = None
    #: a compiled regex (same engine and flags as ``pattern``, bounded: no timeout) that matches
    #: at every position where ``pattern`` does: the ``starts`` where it does not are dropped
    #: before ``pattern`` is tried. Why: the rule's regex with its timeout costs ~1.2 µs per
    #: start, this ~0.3 µs, and most reported starts cannot begin a match
    start_check: Any = None


#: how much text before a match ``Rule.not_after`` looks at
NOT_AFTER_CHARS = 24
#: Rule patterns longer than this stay out of the one-pass gate (presidio's four URL regexes,
#: ~6 KB each, would cost the gate most of its compile and scan time; they are windowed anyway).
GATE_MAX_CHARS = 2000
#: "release 4.2.0.1", "version 10.0.0.1", "build 1.2.3.4": a four-part version, not an address.
_VERSION_CUE = re.compile(
    r"(?i)(?:\b(?:version|versions|ver|release|releases|rel|build|firmware|fw|patch|update|upgrade[ ]to"
    r"|downgrade[ ]to|tag|sdk|v)\.?[ :]*|\bv)$"
)
#: entity type -> the veto of its presidio rules (``Rule.not_after``)
NOT_AFTER: dict[str, Any] = {"IP_ADDRESS": _VERSION_CUE}


class _StdRe:
    """A stdlib ``re`` pattern behind the ``regex`` interface the scan uses (``timeout`` ignored:
    only used for bounded patterns, no nested unbounded repetition)."""

    def __init__(self, pattern: str, flags: int) -> None:
        self._rx = re.compile(pattern, flags)
        self.pattern = pattern
        self.flags = self._rx.flags  # read by the multi-pattern gate (multiscan.source)

    def finditer(
        self, text: str, pos: int = 0, endpos: int | None = None, timeout: float | None = None
    ) -> Any:
        return self._rx.finditer(text, pos, len(text) if endpos is None else endpos)

    def search(self, text: str, pos: int = 0) -> Any:
        """For ``multiscan.narrowed``: the first match of ``finditer(text, pos)``."""
        return self._rx.search(text, pos)

    def match(self, text: str, pos: int = 0) -> Any:
        """For ``multiscan.narrowed``: the match starting at ``pos``, if any."""
        return self._rx.match(text, pos)


#: presidio patterns stdlib re runs 2-4x faster than the regex module (measured on 2 KB).
STD_RE_ENTITIES = frozenset({"IBAN_CODE", "EMAIL_ADDRESS", "US_DRIVER_LICENSE"})


_BOUNDED_QUANTIFIER = re.compile(r"\{\d*,?\d*\}$")
_OPEN_QUANTIFIER = re.compile(r"\{\d*,\}")


def bounded(pattern: str) -> bool:
    """True when ``pattern`` has no unbounded repetition (``*``, ``+``, ``{n,}``).

    Such a pattern does a bounded amount of work per start position, so a scan is linear in
    the text and needs no timeout. Escapes and character classes are skipped; a ``+`` right
    after ``{m,n}`` is possessive, not a repetition. When in doubt the answer is False.
    """
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            if i < n and pattern[i] == "]":
                i += 1
            while i < n and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
        elif (
            c == "*"
            or (c == "+" and not _BOUNDED_QUANTIFIER.search(pattern, 0, i))
            or (c == "{" and _OPEN_QUANTIFIER.match(pattern, i))
        ):
            return False
        i += 1
    return True


_CASELESS_ESCAPE = re.compile(r"\\[dDwWsSbBAZ0-9]|\\[^A-Za-z0-9]")
_HEX_CLASS = re.compile(r"\[[^\]]*\]")


def caseless(pattern: str) -> bool:
    """True when IGNORECASE cannot change what ``pattern`` matches: no cased character outside
    the class escapes (``\\d``, ``\\w``, ``\\b`` ...), except hex digits listed in both cases
    (``[0-9A-Fa-f]``: no other character folds to a-f). Any other escape with a letter (``\\p``,
    ``\\u``, ``\\x``, ``\\t``) or an inline flag answers False.

    Why: the ``regex`` module tests every character of a set against all its case variants
    under IGNORECASE; presidio compiles its digit patterns (SSN, cards, dates) with the flag,
    where it only costs time (about 1 % of the instructions of a PII-dense scan).
    """
    text = _CASELESS_ESCAPE.sub("", pattern)
    text = _HEX_CLASS.sub(lambda m: m.group(0).replace("A-Fa-f", "").replace("a-fA-F", ""), text)
    return not any(c.lower() != c.upper() for c in text)


def _presidio_rules(recognizers: Iterable[Recognizer]) -> list[Rule]:
    """One rule per pattern of presidio's recognisers (``presidio_rules``, vendored), in order."""
    rules = []
    for rec in recognizers:
        entity = rec.entity_type
        context = tuple(w.lower() for w in rec.context)
        for name, rx, score in rec.patterns:
            rules.append(
                Rule(
                    entity,
                    _StdRe(rx, re.DOTALL | re.MULTILINE | re.IGNORECASE)
                    if entity in STD_RE_ENTITIES
                    else regex.compile(rx, FLAGS & ~regex.IGNORECASE if caseless(rx) else FLAGS),
                    float(score),
                    context,
                    PATTERN_TRIGGERS.get(name, TRIGGERS.get(entity)),
                    rec.validate,
                    rec.invalidate,
                    window=WINDOWS.get(entity, "text"),
                    linear=bounded(rx),
                    not_after=NOT_AFTER.get(entity),
                )
            )
    return rules


def _tuned(rule: TunedRule) -> Rule:
    flags = 0 if rule.case_sensitive or caseless(rule.regex) else regex.IGNORECASE
    pattern: Any
    if rule.people:
        pattern = NameGazetteer(rule.people)
    elif rule.words:
        pattern = Gazetteer(rule.words, rule.not_before)
    else:
        pattern = regex.compile(rule.regex, flags | regex.MULTILINE)
    return Rule(
        rule.entity_type,
        pattern,
        rule.score,
        rule.context,
        rule.trigger,
        rule.validate,
        rule.invalidate,
        rule.group,
        rule.window,
        linear=not (rule.people or rule.words) and bounded(rule.regex),
        starts=rule.starts,
        start_check=regex.compile(rule.start_check, flags | regex.MULTILINE) if rule.start_check else None,
    )


def build_rules(predefined: Iterable[Recognizer], custom: Iterable[Rule] = ()) -> list[Rule]:
    """Presidio's pattern recognisers, then this project's tuned rules, then the policy's own."""
    return [*_presidio_rules(predefined), *(_tuned(r) for r in TUNED_RULES), *custom]


_DIGIT = re.compile(r"\d")


class _Literals:
    """A trigger of literal alternatives (``"=Mr|Dr|Prof"``): ``str.__contains__`` per literal.

    A regex alternation of words costs 40-300 µs per 2 KB of prose in either engine (it is
    tried at every position); a few substring tests cost under 2 µs together.
    """

    def __init__(self, literals: list[str]) -> None:
        self._literals = tuple(literals)
        # The same test as a regex source, for the one-pass pre-scan (``multiscan.source``): there
        # the whole set costs nothing extra, where the substring tests cost 10-40 µs per 2 KB.
        self.pattern = "|".join(re.escape(lit) for lit in self._literals)
        self.flags = 0
        self._positions = multiscan.literal_set(self._literals, every_match=True)

    def search(self, text: str) -> bool | None:
        return True if any(lit in text for lit in self._literals) else None

    def finditer(self, text: str) -> list[_Found]:
        """Every occurrence of every literal, by span: compiled (``_pii_kernel.literal_spans``,
        ASCII texts: no Python callback per occurrence), else one Hyperscan pass, else
        ``str.find``."""
        spans = kernel.literal_spans(text, self._literals) if kernel is not None else None
        if spans is None and self._positions is not None:
            spans = self._positions.spans(text)
        if spans is not None:
            return [_Found(s, e) for s, e in spans]
        return self.finditer_plain(text)

    def finditer_plain(self, text: str) -> list[_Found]:
        out = []
        for lit in self._literals:
            i = text.find(lit)
            while i != -1:
                out.append(_Found(i, i + len(lit)))
                i = text.find(lit, i + 1)
        out.sort(key=lambda f: f.span())
        return out


class _CapitalisedWords:
    """A trigger of capitalised words (``"~mr|dr|prof"``, lower-case): looked up in the
    capitalised-word scan the gazetteers share, so it costs a set lookup per capitalised word."""

    def __init__(self, words: list[str]) -> None:
        self._words = frozenset(words)

    def search(self, text: str) -> bool | None:
        words = self._words
        for _, _, w in capitalised_words(text):  # a plain loop: no generator per call
            if w in words:
                return True
        return None

    def finditer(self, text: str) -> list[_Found]:
        return [_Found(s, e) for s, e, w in capitalised_words(text) if w in self._words]


def _compile_trigger(trigger: str) -> Any:
    if trigger.startswith("="):
        return _Literals(trigger[1:].split("|"))
    if trigger.startswith("~"):
        return _CapitalisedWords(trigger[1:].split("|"))
    if trigger[:1].isalnum() or trigger[:1] in " @:+/.":
        try:
            return re.compile(trigger)
        except re.error:
            pass
    return regex.compile(trigger)


def _top_level_alternation(pattern: str) -> bool:
    depth, i, in_class = 0, 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            return True
        i += 1
    return False


def _needs_digit(trigger: str) -> bool:
    """A trigger of one branch (no ``|``) with a mandatory digit class outside any optional group."""
    if _top_level_alternation(trigger):
        return False
    if re.search(r"\\d(?:\{[1-9]\d*(?:,\d*)?\})?$", trigger):
        return True  # ends in a mandatory digit
    if "?" in trigger or "*" in trigger:
        return False
    return "\\d" in trigger and not re.search(r"\\d\{0", trigger)


def prefix_tree(words: Sequence[str]) -> str:
    """A regex alternation of ``words`` (non-empty, distinct) factored by common prefixes.

    Matches what ``"|".join(map(re.escape, words))`` matches when ``words`` is sorted longest
    first: the longest word that starts at the position (a greedy optional tail is tried before
    stopping). Why: ``re`` tries the alternatives of a flat alternation one by one at every
    position it reaches; factored, a position is rejected after one character test per
    distinct first letter (the context-word scan: ~200 µs -> ~70 µs per 2 KB).
    """
    groups: dict[str, list[str]] = {}
    for w in words:
        groups.setdefault(w[0], []).append(w[1:])
    parts = []
    for first, tails in groups.items():
        rest = [t for t in tails if t]
        if not rest:
            parts.append(re.escape(first))
        else:
            optional = "?" if len(rest) < len(tails) else ""
            parts.append(f"{re.escape(first)}(?:{prefix_tree(rest)}){optional}")
    return "|".join(parts)


def _supports(context: tuple[tuple[str, ...], tuple[str, ...]], words: list[str]) -> bool:
    """A context word starts one of the words before the match ("card" in "cards", "e-mail"
    is not "email"); presidio's default substring match let "us" (US passport) hit "thus".
    ``context`` is (single words, multi-word phrases); ``str.startswith`` takes them all at once."""
    singles, phrases = context
    if singles:
        for w in words:  # plain loops: a generator per call cost more than the test itself
            if w.startswith(singles):
                return True
    if phrases:
        joined = " ".join(words)
        for p in phrases:
            if p in joined:
                return True
    return False


def _context_words(text: str, start: int) -> list[str]:
    """The last ``CONTEXT_WORDS_BEFORE`` words (lower case) in the ``CONTEXT_CHARS_BEFORE``
    characters before ``start``: compiled for ASCII texts (``_pii_kernel.words_before``)."""
    if kernel is not None:
        found = kernel.words_before(text, start, CONTEXT_CHARS_BEFORE, CONTEXT_WORDS_BEFORE)
        if found is not None:
            return found
    return plain_context_words(text, start)


def plain_context_words(text: str, start: int) -> list[str]:
    """``_context_words`` in Python: the reference for the compiled one."""
    return _WORD.findall(text[max(0, start - CONTEXT_CHARS_BEFORE) : start].lower())[-CONTEXT_WORDS_BEFORE:]


class _Step(NamedTuple):
    """One applicable rule as ``scan`` runs it (``RuleSet._plan``): a plain tuple, unpacked once."""

    position: int  # in ``RuleSet.rules``
    rule: Rule
    rkey: tuple[str, int] | None  # the rule's pattern in the gate
    trigger: str | None
    needs_digit: bool  # the trigger cannot match without a digit
    tkey: tuple[str, str] | None  # the trigger in the gate
    tkey_exact: bool  # ... compiled exactly: its report is the Python search's answer
    weak: bool  # below ``min_score`` and not validated: runs only with a context word
    windowed: bool  # runs only around its trigger's matches
    timeout: float | None
    skey: tuple[str, int] | None  # the rule's ``starts`` hint in the gate (start offsets reported)


class RuleSet:
    """All rules with their triggers compiled once; ``scan`` is thread-safe (no shared state)."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        # The regex module scans character classes 3-4x faster than re on 2 KB; re is faster
        # for a trigger that starts with a literal character.
        self._triggers = {t: _compile_trigger(t) for t in {r.trigger for r in rules if r.trigger is not None}}
        self.entities = frozenset(r.entity_type for r in rules)
        # Triggers that cannot match without a digit (most of them): one digit search per text
        # answers them all for digit-free prose.
        self._needs_digit = {t for t in self._triggers if _needs_digit(t)}
        # Every context word, longest first (so a shorter one that is its prefix is still
        # derived by startswith), at a word start: one scan gates all weak rules.
        words = sorted({c for r in rules for c in r.context}, key=len, reverse=True)
        self._all_context = re.compile(r"\b(?:" + prefix_tree(words) + ")" if words else "(?!)")
        # Where each context word occurs (one Hyperscan literal pass): every match of
        # ``_all_context`` starts at one of these, so ``_context_words`` tries only there.
        # (Only when every word starts with a word character: the word-start test below needs it.)
        self._context_literals = (
            multiscan.literal_set(words, every_match=True, word_start=True)
            if words and all(w[0] in _ASCII_WORD for w in words)
            else None
        )
        # The same lookup compiled (``_pii_kernel.context_words``): per ASCII first character,
        # the words starting with it, longest first.
        self._context_buckets = (
            tuple(tuple(w for w in words if w[0] == chr(c)) for c in range(128))
            if kernel is not None and words and all(w[0] in _ASCII_WORD for w in words)
            else None
        )
        self._context = {
            r.context: (tuple(c for c in r.context if " " not in c), tuple(c for c in r.context if " " in c))
            for r in rules
        }
        self._gates: dict[frozenset[str] | None, multiscan.Gate] = {}
        self._gates_lock = threading.Lock()
        #: rule index -> the most characters one match spans (bounded whole-text rules only)
        self._widths: dict[int, int] = {}
        self._applicable_cache: dict[tuple[frozenset[str] | None, float], list[tuple[int, Rule]]] = {}
        self._plans: dict[tuple[frozenset[str] | None, float], tuple[multiscan.Gate | None, list[_Step]]] = {}

    def prepare(self, entities: frozenset[str] | None) -> multiscan.Gate:
        """Build (once) the one-pass pre-scan for the rules of ``entities``: every trigger and
        every whole-text rule pattern in one Hyperscan database. A trigger or rule it does not
        report cannot match, so ``scan`` skips it; what it reports is searched with the Python
        regex as before (see ``proxy.detectors.multiscan``). Windowed rules are not gated: a match
        cut short at a window's end need not match the whole text.

        Called when a plugin is built (compiling takes ~1 s), never from ``scan``: a scan for an
        entity set nobody prepared takes the plain path rather than stall a request."""
        found = self._gates.get(entities)
        if found is not None:
            return found
        with self._gates_lock:
            found = self._gates.get(entities)
            if found is None:
                keyed: dict[tuple[str, Any], Any] = {}
                for i, r in enumerate(self.rules):
                    if entities is not None and r.entity_type not in entities:
                        continue
                    if r.trigger is not None:
                        keyed[("t", r.trigger)] = self._triggers[r.trigger]
                    if r.window == "text" and len(getattr(r.pattern, "pattern", "")) <= GATE_MAX_CHARS:
                        keyed[("r", i)] = r.pattern
                        width = max_width(r.pattern)
                        if width is not None:
                            self._widths[i] = width
                    if r.window == "text" and r.starts is not None:
                        keyed[("s", i)] = re.compile(r.starts)
                ends_of = [("r", i) for i in self._widths if ("r", i) in keyed]
                starts_of = [k for k in keyed if k[0] == "s"]
                found = self._gates[entities] = multiscan.gate(list(keyed.items()), ends_of, starts_of)
        return found

    def _applicable(self, entities: frozenset[str] | None, min_score: float) -> list[tuple[int, Rule]]:
        """(index, rule) of the rules ``scan`` runs for these arguments, in rule order: the rules
        of ``entities`` that a context word could lift to ``min_score``. Depends on the arguments
        only, so it is worked out once per (entities, min_score) instead of per text."""
        key = (entities, min_score)
        found = self._applicable_cache.get(key)
        if found is None:
            found = [
                (index, rule)
                for index, rule in enumerate(self.rules)
                if (entities is None or rule.entity_type in entities)
                and not (
                    rule.score < min_score
                    and rule.validate is None
                    and (
                        not rule.context
                        or (rule.score + CONTEXT_BOOST < min_score and min_score > CONTEXT_MIN)
                    )
                )
            ]
            if len(self._applicable_cache) < 64:  # bounded: callers use a handful of settings
                self._applicable_cache[key] = found
        return found

    def _plan(
        self, entities: frozenset[str] | None, min_score: float
    ) -> tuple[multiscan.Gate | None, list[_Step]]:
        """The gate and the ``_Step`` of every applicable rule (``_applicable``), in rule order:
        what ``scan`` would otherwise look up per rule and per text (gate keys, whether the
        trigger needs a digit, the timeout). Rebuilt when ``prepare`` has since built the gate."""
        key = (entities, min_score)
        gate = self._gates.get(entities)
        found = self._plans.get(key)
        if found is not None and found[0] is gate:
            return found
        keys = gate.keys if gate is not None else frozenset()
        exact = gate.exact if gate is not None else frozenset()
        starts_of = gate.starts_of if gate is not None else frozenset()
        steps = []
        for index, rule in self._applicable(entities, min_score):
            trigger = rule.trigger
            tkey = ("t", trigger) if trigger is not None and ("t", trigger) in keys else None
            steps.append(
                _Step(
                    index,
                    rule,
                    ("r", index) if ("r", index) in keys else None,
                    trigger,
                    trigger is not None and trigger in self._needs_digit,
                    tkey,
                    tkey is not None and tkey in exact,
                    rule.score < min_score and rule.validate is None,
                    trigger is not None and rule.window != "text",
                    None if rule.linear else TIMEOUT_S,
                    ("s", index) if ("s", index) in starts_of else None,
                )
            )
        found = (gate, steps)
        if len(self._plans) < 64:  # bounded like ``_applicable``
            self._plans[key] = found
        return found

    def scan(self, text: str, entities: frozenset[str] | None = None, min_score: float = 0.0) -> list[Hit]:
        """Every match of every applicable rule (overlaps included), with context-adjusted scores.

        A rule whose base score is below ``min_score`` and that cannot be validated up to 1
        only matters with a context word nearby, so it runs only if one occurs in the text.
        """
        words_present: set[str] | None = None  # context words found at a word start
        digits: bool | None = None
        present: dict[str, bool] = {}  # trigger -> found anywhere (one search)
        found: dict[str, list[tuple[int, int]]] = {}  # trigger -> where (windowed rules only)
        hits: list[Hit] = []
        words_cache: dict[int, list[str]] = {}
        gate, plan = self._plan(entities, min_score)
        scanned = gate.scan(text) if gate is not None else None  # None: not gated, check everything
        may = scanned.keys if scanned is not None else None
        for index, rule, rkey, trigger, needs_digit, tkey, tkey_exact, weak, windowed, timeout, skey in plan:
            if may is not None and rkey is not None and rkey not in may:
                continue  # the one-pass pre-scan found no match of this rule's pattern anywhere
            regions: list[tuple[int, int]] = [(0, len(text))]
            if trigger is not None:
                ok = present.get(trigger)
                if ok is None:
                    if needs_digit:
                        if digits is None:
                            digits = _DIGIT.search(text) is not None
                        if not digits:
                            present[trigger] = False
                            continue
                    if may is not None and tkey is not None and (tkey_exact or tkey not in may):
                        # the pre-scan saw no match anywhere, or (an exactly compiled trigger) one
                        ok = present[trigger] = tkey in may
                    else:
                        ok = present[trigger] = self._triggers[trigger].search(text) is not None
                if not ok:
                    continue
            if weak:
                # Weak rule: it only matters next to a context word; one scan of the text for
                # every rule's context words (at word starts) answers all of them.
                if words_present is None:
                    words_present = self._context_words(text.lower())
                for w in words_present:  # a plain loop: no generator per weak rule
                    if w.startswith(rule.context):
                        break
                else:
                    continue
            if windowed and trigger is not None:
                where = found.get(trigger)
                if where is None:
                    where = found[trigger] = [m.span() for m in self._triggers[trigger].finditer(text)]
                regions = _regions(text, where, rule.window)
            ends = scanned.ends.get(rkey) if scanned is not None and rkey is not None else None
            try:
                if skey is not None and scanned is not None:
                    # Only where the rule's start hint matched (none: no match anywhere).
                    starts = scanned.ends.get(skey, ())
                    check = rule.start_check
                    if check is not None and starts:
                        starts = [s for s in starts if check.match(text, s) is not None]
                    matches = multiscan.from_starts(rule.pattern, text, starts, timeout)
                elif ends is not None and len(ends) * self._widths[index] < len(text):
                    # Few matches for the text's length: search only next to their ends (one
                    # search call each costs more than walking a short stretch of text).
                    matches = multiscan.narrowed(rule.pattern, text, ends, self._widths[index])
                else:
                    matches = [
                        m for s, e in regions for m in rule.pattern.finditer(text, s, e, timeout=timeout)
                    ]
            except TimeoutError:
                continue
            for m in matches:
                start, end = m.span(rule.group)
                if start == end:
                    continue
                value = text[start:end]
                score = rule.score
                if rule.validate is not None:
                    valid = rule.validate(value)
                    if valid is False:
                        continue
                    if valid:
                        score = 1.0
                if rule.invalidate is not None and rule.invalidate(value):
                    continue
                if rule.not_after is not None and rule.not_after.search(
                    text, max(0, start - NOT_AFTER_CHARS), start
                ):
                    continue
                if score < 1.0 and rule.context:
                    words = words_cache.get(start)
                    if words is None:
                        words = words_cache[start] = _context_words(text, start)
                    if _supports(self._context[rule.context], words):
                        score = min(1.0, max(score + CONTEXT_BOOST, CONTEXT_MIN))
                if score > 0:
                    hits.append(Hit(start, end, rule.entity_type, score))
        return hits

    def _context_words(self, low: str) -> set[str]:
        """The set of ``_all_context.finditer(low)`` matches (``low``: the lower-cased text).

        Why not ``finditer``: the pattern starts with ``\\b``, so ``re`` tries it at every
        position (~130 µs per 2 KB). Every match spells a context word from its start, so the
        occurrences of the words (one literal pass, word starts only) hold every match start.
        At such a start the pattern (a prefix tree of the words, see ``prefix_tree``) matches the
        longest word occurring there, and the pass reports every occurrence, sorted by (start,
        end): the last one of a start is that match, no regex call needed. Taken in order, from
        the end of the last match on, they are exactly ``finditer``'s matches (never empty).
        Non-ASCII texts take ``finditer``. With the compiled kernel the same walk is done in C
        (``_pii_kernel.context_words``: no Hyperscan pass, no callback per occurrence)."""
        if self._context_buckets is not None:
            found = kernel.context_words(low, self._context_buckets)
            if found is not None:
                return found
        spans = self._context_literals.spans(low) if self._context_literals is not None else None
        if spans is None:
            return {m.group(0) for m in self._all_context.finditer(low)}
        out: set[str] = set()
        pos = 0
        n = len(spans)
        i = 0
        while i < n:
            start, end = spans[i]
            i += 1
            while i < n and spans[i][0] == start:  # the longest word at this start ends last
                end = spans[i][1]
                i += 1
            if start < pos or (start and low[start - 1] in _ASCII_WORD):
                continue  # inside an earlier match, or not at a word start (``\\b`` fails there)
            out.add(low[start:end])
            pos = end
        return out


#: ``\\w`` on ASCII text: a context word occurrence after one of these is not at a word start.
_ASCII_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")

#: The stdlib's regex parser (``sre_parse``, private since 3.11: no stubs), used for match widths.
re_parser: Any = importlib.import_module("re._parser")
_UNICODE_PROPERTY = re.compile(r"\\[pP]\{[^}]*\}")


def max_width(pattern: Any) -> int | None:
    r"""The most characters one match of ``pattern`` can span, or None (unbounded, or a syntax
    Python's ``re`` parser cannot read). ``regex``'s ``\p{..}`` classes count as one character."""
    src = multiscan.source(pattern)
    if src is None:
        return None
    text, flags = src
    try:
        _, most = re_parser.parse(_UNICODE_PROPERTY.sub(".", text), flags & ~regex.VERSION0).getwidth()
    except (re.error, ValueError, OverflowError, RecursionError):
        return None
    return most if most < re_parser.MAXREPEAT else None


def _regions(text: str, where: list[tuple[int, int]], window: Window) -> list[tuple[int, int]]:
    """Merged, ordered regions of ``text`` around each trigger match (touching ones merge)."""
    spans: list[tuple[int, int]] = []
    if window == "token":
        for s, e in where:
            if spans and s < spans[-1][1]:
                continue  # same token as the previous trigger match
            left = max(
                text.rfind(" ", 0, s), text.rfind("\n", 0, s), text.rfind("\t", 0, s), text.rfind("\r", 0, s)
            )
            m = _SPACE.search(text, e)
            right = m.start() if m else len(text)
            if spans and left + 1 <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(spans[-1][1], right))
            else:
                spans.append((left + 1, right))
        return spans
    # N characters around each match: plain ints in the loop (a PII-dense 2 KB text has ~100
    # four-digit runs, and several windowed rules share them).
    w, n = int(window), len(text)
    lo = hi = -1
    for s, e in where:
        left, right = (s - w if s > w else 0), (e + w if e + w < n else n)
        if hi >= 0 and left <= hi:
            if right > hi:
                hi = right
        else:
            if hi >= 0:
                spans.append((lo, hi))
            lo, hi = left, right
    if hi >= 0:
        spans.append((lo, hi))
    return spans
