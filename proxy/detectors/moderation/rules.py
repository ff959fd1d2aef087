"""Layer 1 of the moderation detector: blocklist terms and regex rules per category, kept as data.

Why rules next to a classifier: a handful of words and phrasings ("kill yourself", slurs, "how many
pills ... to die") are unambiguous and must be caught even in a three-word message where a statistical
model has little signal; every hit is explainable by a rule id. The rules live in ``rules.json`` so they
can be reviewed and extended without touching code.

Matching runs on a *canonical* text (``canonicalise``): the injection normaliser's output (invisible
characters, homoglyphs and compatibility forms undone), lower-cased, leetspeak folded inside tokens that
contain a letter (``k1ll`` -> ``kill``, ``$h1t`` -> ``shit``, ``k!ll`` -> ``kill``; pure numbers such as
``-9`` or ``1488`` are left alone), and letter runs of three or more squeezed (``kiiilll`` -> ``kill``).
``1`` is ambiguous (``i`` or ``l``): terms are looked up in both readings.

- *terms* are whole words, found by a set intersection with the text's tokens (word boundaries for free,
  and a few microseconds regardless of how many terms there are);
- *patterns* are regexes, each gated by anchor words so that only the plausible ones run, and then by
  the literals every match of it must contain (``injection.prefilter``, derived from the regex): a
  common anchor ("one" for "no one likes you") no longer sends ordinary prose through the rule;
- *allow* rules describe benign contexts ("kill -9", "shoot a photo", "sex of the fish"). A hit inside an
  allowed span is dropped, and allowed spans are blanked before the classifier sees the text. Allow rules
  only run when something hit, so benign text pays nothing for them.

Per-category score: noisy-OR over distinct matched rules, ``1 - prod(1 - weight)``.
"""

from __future__ import annotations

import functools
import json
import re
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ..injection.normalise import Normaliser

try:  # built by setup.py when a C compiler is there; the Python functions below are the reference
    from proxy.detectors import _ngram_kernel as _kernel
except ImportError:  # pragma: no cover - installs without a compiler
    _kernel = None  # type: ignore[assignment]
from ..injection.prefilter import Prefilter

CATEGORIES: tuple[str, ...] = (
    "sexual",
    "hate",
    "violence",
    "harassment",
    "self-harm",
    "sexual/minors",
    "hate/threatening",
    "violence/graphic",
    "illicit",
)
"""OpenAI moderation categories, in a fixed order. The first eight are the columns of the content
classifier (``CLASSIFIER_CATEGORIES``); ``illicit`` (named after the omni-moderation category: a request
for help with a harmful act) is scored by the intent model (``intent_model.npz``), not by rules."""

CLASSIFIER_CATEGORIES: tuple[str, ...] = CATEGORIES[:8]

CODES: Mapping[str, str] = MappingProxyType(
    {
        "sexual": "S",
        "hate": "H",
        "violence": "V",
        "harassment": "HR",
        "self-harm": "SH",
        "sexual/minors": "S3",
        "hate/threatening": "H2",
        "violence/graphic": "V2",
    }
)
"""Category -> label code used by the OpenAI moderation sample set."""

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_QUOTES = (
    "\u2019",
    "\u2018",
    "\u02bc",
    "`",
)  # replaced by "'" (str.replace: translate() with a table is slower)
_LEET_SEED = re.compile(r"[0-9@$]+", re.ASCII)
_LEET_CHARS = "0123456789@$"
_LETTER = re.compile(r"[a-z]", re.ASCII)
_TOKEN_CHAR = frozenset("abcdefghijklmnopqrstuvwxyz0123456789@$")
# What may end up in one token with a folded one: "'" ("k1ll's"), "!" and "|" ("k1l!ng" -> "kiling").
_PIECE_CHAR = _TOKEN_CHAR | frozenset("'!|")
_BANG = re.compile(r"(?<=[a-z])[!|](?=[a-z])", re.ASCII)  # "k!ll", "b|tch": only between letters
_RUN = re.compile(r"([a-z])\1{2,}", re.ASCII)
_DOUBLING = frozenset("bcdefglmnoprstz")  # letters that double in English: squeeze runs to two of them
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?", re.ASCII)
_BLOCK = 64
_MAX_HITS = 64  # anchor occurrences located one by one; beyond that every block is checked
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_TOKEN_BYTES = bytes(b if chr(b) in "abcdefghijklmnopqrstuvwxyz0123456789'" else 32 for b in range(256))
_SENTENCE = re.compile(r"[^.?!\n]+[.?!\n]*", re.ASCII)
# By byte: 1 for the characters _SENTENCE ends a sentence at, else 0 (read as a bool array).
_TERMINATOR = bytes(1 if chr(b) in ".?!\n" else 0 for b in range(256))


@dataclass(frozen=True, slots=True)
class Canonical:
    """The text the rules see, plus its reading with ``1`` as ``l`` (None when no ``1`` was folded).

    ``alt_pieces``: the parts of ``alt`` that differ from ``text``, each widened to the whole piece of
    text a token can be cut from (so its tokens are alt's tokens there), joined by spaces. Why: the
    rules need the tokens of both readings, and the two differ only in those pieces; tokenising just
    them instead of all of ``alt`` saves ~15 µs per 2 KB (an e-mail address such as
    ``finance1@...`` makes an ``alt`` of the whole text). None: not known, tokenise all of ``alt``."""

    text: str
    alt: str | None
    alt_pieces: str | None = field(default=None, compare=False, repr=False)
    #: ``alt`` has ``text``'s length and differs from it only where it holds an ``l`` (no letter run was
    #: squeezed): a string without an ``l`` then occurs in ``alt`` only if it occurs in ``text``.
    alt_aligned: bool = field(default=False, compare=False, repr=False)


def _squeeze(m: re.Match[str]) -> str:
    ch = m.group(1)
    return ch * 2 if ch in _DOUBLING else ch


def _leet_tokens(text: str) -> list[tuple[int, int]]:
    """Spans of tokens (letters, digits, @, $) that contain a leet character and at least one letter.

    Seeds are runs of leet characters (rare in prose), grown to token boundaries: cheaper than a regex
    that tries every word for an embedded digit."""
    spans: list[tuple[int, int]] = []
    if not any(c in text for c in _LEET_CHARS):
        return spans  # 12 memchr scans: ~50x cheaper than the regex finding nothing in prose
    last_end = -1
    for m in _LEET_SEED.finditer(text):
        start, end = m.span()
        if start < last_end:
            continue
        while start > 0 and text[start - 1] in _TOKEN_CHAR:
            start -= 1
        while end < len(text) and text[end] in _TOKEN_CHAR:
            end += 1
        last_end = end
        if _LETTER.search(text, start, end):
            spans.append((start, end))
    return spans


def _has_triple(text: str) -> bool:
    """Whether ``_RUN`` matches: some letter a-z three times in a row (the reference for the
    compiled ``has_letter_triple``, and the fallback without it).

    Why: ``_RUN`` lets ``re`` try a match at every letter (~50 µs per 2 KB, ~150 µs when it finds
    nothing in a 2 KB support ticket) and prose almost never holds three equal letters in a row;
    numpy compares neighbouring bytes in a few µs. Exact, so a True needs no ``_RUN.search``
    (issue 17: digit runs such as "1000" or "..." used to pass a looser check and pay the search):
    ASCII letters are single bytes, and non-ASCII characters all become "?"."""
    raw = np.frombuffer(text.encode("ascii", "replace"), dtype=np.uint8)
    same = raw[1:] == raw[:-1]
    triple = same[1:] & same[:-1]
    return bool((triple & (raw[:-2] >= 97) & (raw[:-2] <= 122)).any())


def _fold_leet_python(text: str) -> tuple[str, str | None, str | None] | None:
    """The leet fold of lower-cased ``text``: None when no token needs it, else the folded text, its
    reading with ``1`` as ``l`` (None when no folded token holds a ``1``), and that reading's pieces
    that differ from the folded text (``Canonical.alt_pieces``; None with the reading).

    The reference for the compiled ``leet_fold`` (``_ngram_kernel.c``, moderation block) and the
    fallback without it."""
    spans = _leet_tokens(text)
    if not spans:
        return None
    parts: list[str] = []
    alt_parts: list[str] = []
    prev = 0
    for start, end in spans:
        token = text[start:end]
        parts += [text[prev:start], token.translate(_LEET)]
        alt_parts += [text[prev:start], token.replace("1", "l").translate(_LEET)]
        prev = end
    parts.append(text[prev:])
    alt_parts.append(text[prev:])
    ones = [(s, e) for s, e in spans if "1" in text[s:e]]
    if not ones:
        return "".join(parts), None, None
    alt = "".join(alt_parts)
    pieces: list[str] = []
    last = -1
    for start, end in ones:  # each token widened to its piece (what "!" or "|" may join it to)
        if start < last:
            continue
        while start > 0 and alt[start - 1] in _PIECE_CHAR:
            start -= 1
        while end < len(alt) and alt[end] in _PIECE_CHAR:
            end += 1
        pieces.append(alt[start:end])
        last = end
    return "".join(parts), alt, " ".join(pieces)


# The compiled versions (issue 17): same answers (tests/unit/test_moderation_kernel.py), a few µs
# instead of ~30 per 2 KB with digits in it. A kernel built before they existed has neither.
_kernel_vocab_tokens: Callable[[str, bytes, frozenset[str]], set[str]] | None = getattr(
    _kernel, "vocab_tokens", None
)
_fold_leet: Callable[[str], tuple[str, str | None, str | None] | None] = getattr(
    _kernel, "leet_fold", _fold_leet_python
)
_has_letter_triple: Callable[[str], bool] = getattr(_kernel, "has_letter_triple", _has_triple)


def _squeeze_runs_python(text: str) -> str:
    """Letter runs of three or more squeezed (``_squeeze``): the reference for the compiled
    ``squeeze_runs`` (~3 ms less per 64 KB with a run in it), and the fallback without it."""
    return _RUN.sub(_squeeze, text)


try:  # ours (setup.py, optional): the same squeeze as _ngram_kernel's, ~7x faster (its docstring)
    from . import _moderation_kernel as _kernel16
except ImportError:  # pragma: no cover - installs without a compiler
    _kernel16 = None  # type: ignore[assignment]
_squeeze_runs: Callable[[str], str] = (
    _kernel16.squeeze_runs
    if _kernel16 is not None
    else getattr(_kernel, "squeeze_runs", _squeeze_runs_python)
)


def canonicalise(normalised: str) -> Canonical:
    """Lower-case, unify quotes, fold leetspeak inside lettered tokens, squeeze letter runs.

    The result has the same length as the input except where runs were squeezed; spans reported by the
    rules index this canonical text.
    """
    text = normalised.lower()
    for quote in _QUOTES:
        if quote in text:
            text = text.replace(quote, "'")
    alt: str | None = None
    pieces: str | None = None
    folded = _fold_leet(text)
    if folded is not None:
        text, alt, pieces = folded
    # ``pieces`` go through the same steps as ``alt``: "!" between letters and letter runs never
    # reach across the characters that bound a piece, so each piece becomes alt's piece.
    if ("!" in text or "|" in text) and _BANG.search(text):
        text = _BANG.sub("i", text)
        if alt is not None and pieces is not None:
            alt, pieces = _BANG.sub("i", alt), _BANG.sub("i", pieces)
    squeeze = _has_letter_triple(text)
    if squeeze:
        text = _squeeze_runs(text)
        if alt is not None and pieces is not None:
            alt, pieces = _squeeze_runs(alt), _squeeze_runs(pieces)
    # Aligned: the fold wrote "i" in text where alt has "l" and nothing else; "!" between letters
    # becomes "i" at the same places in both (the neighbours are letters in both or in neither).
    return Canonical(text, alt, pieces, alt is not None and not squeeze)


@dataclass(frozen=True, slots=True)
class RuleHit:
    """One rule that fired: its id, the categories it feeds, its weight and the span in canonical text."""

    rule_id: str
    categories: tuple[str, ...]
    weight: float
    span: tuple[int, int]


@dataclass(frozen=True, slots=True)
class RuleResult:
    """Per-category rule scores and the surviving hits (allow-listed ones removed)."""

    scores: Mapping[str, float]
    hits: tuple[RuleHit, ...]
    allowed: tuple[tuple[str, tuple[int, int]], ...]  # (allow rule id, span) that suppressed something
    canonical: str
    classifier_text: str  # canonical text with allow-listed spans blanked


@dataclass(frozen=True, slots=True)
class _TermGroup:
    id: str
    categories: tuple[str, ...]
    weight: float
    words: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Pattern:
    id: str
    categories: tuple[str, ...]
    weight: float
    anchors: frozenset[str]
    regex: re.Pattern[str]
    prefilter: Prefilter | None = None  # literals a match needs: absent, the regex is not run

    def may_match(self, texts: Sequence[str]) -> bool:
        return self.prefilter is None or any(map(self.prefilter.may_match, texts))

    def may_match_aligned(self, text: str, alt: str) -> bool:
        """True whenever ``may_match((text, alt))`` is, for an aligned ``alt`` (``Canonical.alt_aligned``),
        searching ``alt`` only for the literals holding an ``l``: the others occur in ``alt`` only where
        they occur in ``text``. A gate like ``may_match`` (it may say True a little more often: groups
        met in different texts; the regexes then decide), with about half the searches on a text
        that has a 1-as-l reading (an e-mail address such as ``finance1@...`` is enough)."""
        if self.prefilter is None:
            return True
        for alternative in self.prefilter.alternatives:
            for group in alternative:
                if not any(lit in text or ("l" in lit and lit in alt) for lit in group):
                    break
            else:
                return True
        return False


@dataclass(frozen=True, slots=True)
class _LiteralScan:
    """A gate in front of a pattern's prefilter: the first group of each of its alternatives (the
    most selective one, ``Prefilter.of`` ranks them), searched in one pass of
    ``_moderation_kernel.literals_present`` (``filter``: leading character pairs -> ``buckets``;
    single characters, ``short``, with ``in``: one ``memchr``).

    Why: ``Prefilter.may_match`` searches literal by literal, each ``in`` a pass over the text; the
    "no one likes you" rule, which the word "one" sends every English text to, searched seven
    first-group literals (~8 µs per 2 KB) to find none. Exact: ``may_match`` (and its aligned form)
    needs some alternative's first group in some text, so when no text holds any first-group
    literal the pattern is skipped; otherwise ``may_match`` decides as before."""

    filter: bytes
    buckets: tuple[tuple[str, ...], ...]
    short: tuple[str, ...]
    firsts: tuple[frozenset[str], ...]

    @classmethod
    def of(cls, prefilter: Prefilter | None) -> _LiteralScan | None:
        """None without a prefilter, without the kernel, or when a literal is not ASCII."""
        if prefilter is None or _kernel16 is None:
            return None
        firsts = tuple(frozenset(alternative[0]) for alternative in prefilter.alternatives)
        literals = sorted(frozenset().union(*firsts))
        if not all(lit.isascii() and lit for lit in literals):
            return None
        by_pair: dict[str, list[str]] = {}
        for lit in literals:
            if len(lit) >= 2:
                by_pair.setdefault(lit[:2], []).append(lit)
        if len(by_pair) > 255:
            return None
        table = bytearray(1 << 16)
        for slot, pair in enumerate(by_pair, start=1):
            table[ord(pair[0]) << 8 | ord(pair[1])] = slot
        return cls(
            bytes(table),
            tuple(tuple(group) for group in by_pair.values()),
            tuple(lit for lit in literals if len(lit) == 1),
            firsts,
        )

    def may_match(self, texts: Sequence[str]) -> bool:
        """False only when no text holds a literal of any alternative's first group (the pattern's
        prefilter would say False too); True when one does, or a text is not ASCII."""
        assert _kernel16 is not None
        found: set[str] = set()
        for text in texts:
            present = _kernel16.literals_present(text, self.filter, self.buckets)
            if present is None:
                return True
            found |= present
            found.update(c for c in self.short if c in text)
        return any(not found.isdisjoint(first) for first in self.firsts)


@dataclass(frozen=True, slots=True)
class _Allow:
    id: str
    anchors: frozenset[str]
    regex: re.Pattern[str]
    prefilter: Prefilter | None = None

    def may_match(self, text: str) -> bool:
        return self.prefilter is None or self.prefilter.may_match(text)


def _categories(raw: Mapping[str, Any], rule_id: str) -> tuple[str, ...]:
    cats = tuple(str(c) for c in raw["categories"])
    unknown = set(cats) - set(CATEGORIES)
    if not cats or unknown:
        raise ValueError(f"rule {rule_id!r}: unknown or missing categories {sorted(unknown)}")
    return cats


def _weight(raw: Mapping[str, Any], rule_id: str) -> float:
    weight = float(raw["weight"])
    if not 0.0 < weight <= 1.0:
        raise ValueError(f"rule {rule_id!r}: weight must be in (0, 1], got {weight}")
    return weight


def _compile(raw: Mapping[str, Any], rule_id: str) -> re.Pattern[str]:
    try:
        return re.compile(str(raw["regex"]), re.ASCII)
    except re.error as exc:
        raise ValueError(f"rule {rule_id!r}: bad regex: {exc}") from exc


def _anchors(raw: Mapping[str, Any], rule_id: str) -> frozenset[str]:
    anchors = frozenset(str(a) for a in raw["anchors"])
    if not anchors or any(not a or a != a.lower() or not _TOKEN.fullmatch(a) for a in anchors):
        raise ValueError(f"rule {rule_id!r}: anchors must be non-empty lower-case single tokens")
    return anchors


class RuleScanner:
    """Immutable, thread-safe rule matcher: compile once (``RuleScanner.default()``), scan many times."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self._terms: tuple[_TermGroup, ...] = tuple(
            _TermGroup(
                str(t["id"]),
                _categories(t, str(t["id"])),
                _weight(t, str(t["id"])),
                frozenset(str(w) for w in t["words"]),
            )
            for t in doc["terms"]
        )
        self._patterns: tuple[_Pattern, ...] = tuple(
            _Pattern(
                str(p["id"]),
                _categories(p, str(p["id"])),
                _weight(p, str(p["id"])),
                _anchors(p, str(p["id"])),
                _compile(p, str(p["id"])),
                Prefilter.of(str(p["regex"])),
            )
            for p in doc["patterns"]
        )
        self._allow: tuple[_Allow, ...] = tuple(
            _Allow(
                str(a["id"]),
                _anchors(a, str(a["id"])),
                _compile(a, str(a["id"])),
                Prefilter.of(str(a["regex"])),
            )
            for a in doc["allow"]
        )
        ids = [t.id for t in self._terms] + [p.id for p in self._patterns] + [a.id for a in self._allow]
        if len(ids) != len(set(ids)):
            raise ValueError("duplicate rule ids in moderation rules")
        for group in self._terms:
            bad = [w for w in group.words if not _TOKEN.fullmatch(w)]
            if bad:
                raise ValueError(f"rule {group.id!r}: terms must be single lower-case tokens: {bad}")
        self._term_index: dict[str, list[_TermGroup]] = {}
        for group in self._terms:
            for word in group.words:
                self._term_index.setdefault(word, []).append(group)
        self._term_words = frozenset(self._term_index)
        # Every word a scan looks up among the text's tokens; the rest of the tokens are never needed.
        self._vocab = self._term_words.union(
            *(p.anchors for p in self._patterns), *(a.anchors for a in self._allow)
        )
        self._word_regex: dict[str, re.Pattern[str]] = {
            w: re.compile(rf"(?<![a-z0-9]){re.escape(w)}(?![a-z0-9])", re.ASCII) for w in self._term_words
        }
        # Per pattern, a one-pass gate in front of its prefilter (``_LiteralScan``).
        self._literal_scans = tuple(_LiteralScan.of(p.prefilter) for p in self._patterns)
        # Visible text only (max_depth=0: no base64/hex/url decoding): decoding is the injection detector's
        # job, and it would double the cost of a scan.
        self._normaliser = Normaliser(max_depth=0)

    @classmethod
    def load(cls, path: Path | None = None) -> RuleScanner:
        raw = (
            path.read_text("utf-8")
            if path is not None
            else resources.files(__package__).joinpath("rules.json").read_text("utf-8")
        )
        return cls(json.loads(raw))

    @classmethod
    @functools.cache
    def default(cls) -> RuleScanner:
        """The packaged rule set, compiled once per process (immutable, so sharing it is safe)."""
        return cls.load()

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple([t.id for t in self._terms] + [p.id for p in self._patterns])

    def canonical(self, text: str, folded: Mapping[str, str] | None = None) -> Canonical:
        """Normalise (injection normaliser, no decoding beyond its defaults) and canonicalise ``text``.

        ``folded``: normalised texts the injection detector already computed for this request
        (``ScanCache.folded``); its folding is the same as ours, decoding aside."""
        known = folded.get(text) if folded is not None else None
        return canonicalise(known if known is not None else self._normaliser(text).text)

    def scan(self, text: str, folded: Mapping[str, str] | None = None) -> RuleResult:
        return self.scan_canonical(self.canonical(text, folded))

    def scan_canonical(self, canon: Canonical) -> RuleResult:
        texts = (canon.text,) if canon.alt is None else (canon.text, canon.alt)
        main = _Sentences(canon.text, self._vocab)
        tokens = main.tokens
        if canon.alt is not None:  # alt's tokens where it differs (exact: Canonical.alt_pieces)
            differ = canon.alt if canon.alt_pieces is None else canon.alt_pieces
            tokens = tokens | _vocab_tokens(differ, self._vocab)
        alt_view: _Sentences | None = None  # cut into sentences only when a pattern must search it
        hits: list[RuleHit] = []
        for word in sorted(tokens & self._term_words):
            span = self._find_word(word, texts)
            for group in self._term_index[word]:
                hits.append(RuleHit(group.id, group.categories, group.weight, span))
        aligned = canon.alt is not None and canon.alt_aligned
        for pattern, literal_scan in zip(self._patterns, self._literal_scans, strict=True):
            if pattern.anchors.isdisjoint(tokens):
                continue
            if literal_scan is not None and not literal_scan.may_match(texts):
                continue
            if aligned and canon.alt is not None:
                if not pattern.may_match_aligned(canon.text, canon.alt):
                    continue
            elif not pattern.may_match(texts):
                continue
            found = main.search(pattern.regex, pattern.anchors)
            if found is None and canon.alt is not None:
                alt_view = alt_view or _Sentences(canon.alt, self._vocab)
                found = alt_view.search(pattern.regex, pattern.anchors)
            if found is not None:
                hits.append(RuleHit(pattern.id, pattern.categories, pattern.weight, found))
        allowed: list[tuple[str, tuple[int, int]]] = []
        classifier_text = canon.text
        if hits:
            spans = [
                (rule.id, span)
                for rule in self._allow
                if not rule.anchors.isdisjoint(tokens) and rule.may_match(canon.text)
                for span in main.finditer(rule.regex, rule.anchors)
            ]
            if spans:
                dropped = [h for h in hits if any(_overlaps(h.span, span) for _, span in spans)]
                allowed = [
                    (rid, span) for rid, span in spans if any(_overlaps(h.span, span) for h in dropped)
                ]
                hits = [h for h in hits if h not in dropped]
                chars = list(canon.text)
                for _, (s, e) in spans:
                    chars[s:e] = " " * (e - s)
                classifier_text = "".join(chars)
        return RuleResult(_noisy_or(hits), tuple(hits), tuple(allowed), canon.text, classifier_text)

    def _find_word(self, word: str, texts: Sequence[str]) -> tuple[int, int]:
        for t in texts:
            m = self._word_regex[word].search(t)
            if m:
                return m.span()
        return (0, 0)  # pragma: no cover - the token came from one of these texts


class _Sentences:
    """A text cut into blocks of whole sentences (at . ? ! and newlines, ~``_BLOCK`` chars each), its
    token set, and each block's token set, the blocks computed only when a rule needs them.

    Patterns and allow rules run only on the blocks that contain one of their anchors: most regexes
    start with an alternation, which ``re`` must try at every position, so scanning a whole 2 KB text
    with each of them cost milliseconds. Rules must not span sentence boundaries (the regexes in
    rules.json use ``[^.?!\\n]`` for gaps), so running them on blocks of whole sentences finds the same
    matches as running them on the text.

    Why lazily: on ordinary text no rule's anchors occur, and tokenising every block up front (one
    regex ``findall`` and one set per block) cost ~100 µs per 2 KB, more than the rules. The text's
    rule words among its tokens come from one C-level pass (``_vocab_tokens``); a block is cut (at
    sentence ends found with numpy, ``_sentence_ends``) and tokenised only when an anchor
    of a rule that runs occurs in it."""

    __slots__ = ("_block_tokens", "_ends", "_starts", "text", "tokens")

    def __init__(self, text: str, vocab: frozenset[str] | None = None) -> None:
        """``vocab``: the only tokens callers will ask about (all rule words); None keeps every token."""
        self.text = text
        self.tokens = _tokens(text) if vocab is None else _vocab_tokens(text, vocab)
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._block_tokens: dict[int, set[str]] = {}

    def _blocks(self) -> tuple[list[int], list[int]]:
        if not self._ends:
            text = self.text
            if len(text) <= _BLOCK:
                self._starts, self._ends = [0], [len(text)]
            else:
                starts, ends, start = [], [], 0
                for end in _sentence_ends(text):
                    if end - start >= _BLOCK:
                        starts.append(start)
                        ends.append(end)
                        start = end
                if start < len(text) or not ends:
                    starts.append(start)
                    ends.append(len(text))
                self._starts, self._ends = starts, ends
        return self._starts, self._ends

    def _candidates(self, anchors: frozenset[str]) -> list[tuple[int, int]]:
        """(start, end) of the blocks, in order, whose tokens include one of ``anchors``."""
        present = anchors & self.tokens
        if not present:
            return []
        text = self.text
        # Where an anchor may stand as a token: not glued to a letter or digit on either side (a
        # filter: "one" in "someone" is skipped, the block's token set decides the rest).
        hits: list[int] = []
        for anchor in present:
            at, size = text.find(anchor), len(anchor)
            while at >= 0 and len(hits) <= _MAX_HITS:
                if (at == 0 or text[at - 1] not in _ALNUM) and text[at + size : at + size + 1] not in _ALNUM:
                    hits.append(at)
                at = text.find(anchor, at + 1)
        starts, ends = self._blocks()
        if len(hits) > _MAX_HITS:
            picked: set[int] = set(range(len(ends)))
        else:  # a token lies inside one block: blocks end after punctuation
            picked = {bisect_right(ends, at) for at in hits}
        out = []
        for k in sorted(picked):
            toks = self._block_tokens.get(k)
            if toks is None:
                toks = self._block_tokens[k] = _tokens(text[starts[k] : ends[k]])
            if not anchors.isdisjoint(toks):
                out.append((starts[k], ends[k]))
        return out

    def search(self, regex: re.Pattern[str], anchors: frozenset[str]) -> tuple[int, int] | None:
        for start, end in self._candidates(anchors):
            m = regex.search(self.text, start, end)
            if m:
                return m.span()
        return None

    def finditer(self, regex: re.Pattern[str], anchors: frozenset[str]) -> list[tuple[int, int]]:
        return [
            m.span()
            for start, end in self._candidates(anchors)
            for m in regex.finditer(self.text, start, end)
            if m.end() > m.start()
        ]


def _sentence_ends(text: str) -> list[int]:
    """``[m.end() for m in _SENTENCE.finditer(text)]``, vectorised for ASCII text.

    Why: the regex walk and one match object per sentence cost ~130k instructions per 2 KB, as much
    as the rules it serves. A sentence ends where a run of terminators (``. ? ! \\n``) ends, except a
    run at the very start (no sentence precedes it), and the text's end closes the last sentence
    unless the text is nothing but terminators. numpy finds the run ends in a few calls. Non-ASCII
    text keeps the regex (its UTF-8 byte offsets would not be character offsets)."""
    if not text or not text.isascii():
        return [m.end() for m in _SENTENCE.finditer(text)]
    term = np.frombuffer(text.encode("ascii").translate(_TERMINATOR), dtype=bool)
    ends: list[int] = (np.flatnonzero(term[:-1] > term[1:]) + 1).tolist()  # terminator -> other
    has_sentence = not term[0] or bool(ends)  # some character is not a terminator
    if term[0] and ends:
        ends.pop(0)  # the leading run ends no sentence
    if has_sentence:
        ends.append(len(text))
    return ends


def _tokens(text: str) -> set[str]:
    """``set(_TOKEN.findall(text))`` at C speed: every character a token cannot contain becomes a space
    (non-ASCII ones via ``encode``'s "?"), then ``split``. Only pieces with an apostrophe need the
    regex: ``_TOKEN`` allows one ``'`` followed by letters, so "don't" is a token but "'kill" is "kill".
    """
    pieces = set(text.encode("ascii", "replace").translate(_TOKEN_BYTES).decode("ascii").split())
    if "'" in text:
        for piece in [p for p in pieces if "'" in p]:
            pieces.discard(piece)
            pieces.update(_TOKEN.findall(piece))
    return pieces


def _vocab_tokens(text: str, vocab: frozenset[str]) -> set[str]:
    """``_tokens(text) & vocab``: the compiled ``vocab_tokens`` when the kernel has it (~2 µs per 2 KB
    of prose instead of ~15: no object per word), else ``_vocab_tokens_python``."""
    if _kernel_vocab_tokens is None:
        return _vocab_tokens_python(text, vocab)
    return _kernel_vocab_tokens(text, _token_filter(vocab), vocab)


_TOKEN_FILTER_SIZE = 1 << 16


def _token_slot(word: str) -> int:
    """A word's slot in the kernel's filter: 32-bit FNV-1a of its ASCII bytes, folded to 16 bits
    (``tok_slot`` in ``_ngram_kernel.c`` computes the same)."""
    h = 2166136261
    for byte in word.encode("ascii"):
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return (h ^ (h >> 16)) & (_TOKEN_FILTER_SIZE - 1)


@functools.lru_cache(maxsize=8)
def _token_filter(words: frozenset[str]) -> bytes:
    """The kernel's pre-check for ``words``: 1 at every word's slot (``_token_slot``).

    Why: a token of prose is ruled out by one byte read (~0.7% of them pass by chance for the
    packaged ~440 words) before a string object is made for the set lookup."""
    table = bytearray(_TOKEN_FILTER_SIZE)
    for w in words:
        table[_token_slot(w)] = 1
    return bytes(table)


def _vocab_tokens_python(text: str, vocab: frozenset[str]) -> set[str]:
    """``_tokens(text) & vocab`` without building the set of every token (the reference for the
    compiled ``vocab_tokens``, and the fallback without it).

    Why: hashing ~350 words of 2 KB into a set cost ~120k instructions, and only the few that are rule
    words are ever looked at. ``frozenset.intersection`` of the split pieces keeps just those. Exact
    because every vocabulary word is a whole ``_TOKEN`` (``RuleScanner`` checks): a piece equal to one
    is a token as it stands, and a piece with an apostrophe contributes what ``_TOKEN`` finds in it,
    as in ``_tokens``."""
    spaced_bytes = text.encode("ascii", "replace").translate(_TOKEN_BYTES)
    # Split and intersect as bytes: ~3 µs less per 2 KB than str pieces (no decode, cheaper split).
    found = {word.decode("ascii") for word in _ascii_set(vocab).intersection(spaced_bytes.split())}
    if b"'" not in spaced_bytes:
        return found
    spaced = spaced_bytes.decode("ascii")
    at = spaced.find("'")
    while at >= 0:  # the pieces around apostrophes, each once
        start = spaced.rfind(" ", 0, at) + 1
        end = spaced.find(" ", at)
        end = len(spaced) if end < 0 else end
        found.update(vocab.intersection(_TOKEN.findall(spaced, start, end)))
        at = spaced.find("'", end)
    return found


@functools.lru_cache(maxsize=8)
def _ascii_set(words: frozenset[str]) -> frozenset[bytes]:
    """``words`` encoded (ASCII: every vocabulary word is a ``_TOKEN``), built once per vocabulary."""
    return frozenset(w.encode("ascii") for w in words)


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


_NO_SCORES: Mapping[str, float] = MappingProxyType({c: 0.0 for c in CATEGORIES})


def _noisy_or(hits: Sequence[RuleHit]) -> Mapping[str, float]:
    """Per category: ``1 - prod(1 - weight)`` over distinct rule ids (repeats do not inflate).

    No hits (most texts) share one read-only all-zero mapping."""
    if not hits:
        return _NO_SCORES
    weights: dict[str, dict[str, float]] = {c: {} for c in CATEGORIES}
    for hit in hits:
        for cat in hit.categories:
            weights[cat][hit.rule_id] = max(weights[cat].get(hit.rule_id, 0.0), hit.weight)
    scores: dict[str, float] = {}
    for cat in CATEGORIES:
        keep = 1.0
        for w in weights[cat].values():
            keep *= 1.0 - w
        scores[cat] = 1.0 - keep
    return MappingProxyType(scores)
