"""One compiled multi-pattern pass that says which of many regexes can match a text at all.

Why: the PII pattern engine runs ~40 triggers and rules per text, each a separate walk with
Python's ``re``/``regex`` (most of them to find nothing: an IBAN, card or SSN pattern over a
support ticket). Hyperscan (the ``hyperscan`` wheel: Intel's Hyperscan / Vectorscan, the engine
IDS systems use for exactly this) compiles all of them into one database and answers "which of
these patterns occur anywhere" in one pass (~30 µs for 2 KB and 43 patterns, against ~1.2 ms
for the separate Python searches). Callers then run the exact Python regex only for the
patterns the pass reported, so their output is what it always was.

Exactness is kept by using the pass only as a *gate*: a pattern it does not report is known
not to match, and callers skip it; whatever it reports is confirmed by the Python regex. So
the gate must never miss a match (a false positive only costs the Python search). That holds
because:

- patterns are compiled with ``HS_FLAG_PREFILTER`` when Hyperscan cannot take them exactly
  (look-behind, back-references): Hyperscan then matches a superset of the pattern;
- non-ASCII characters of a pattern (literal or ``\\u2019``) are passed as code points, except
  the four that Python's IGNORECASE folds onto ASCII letters (dotted/dotless i, long s, Kelvin
  sign) and ranges with a non-ASCII end: a pattern holding those stays outside the gate,
  and patterns that fail to compile, or use flags we do not map, stay outside the gate;
- only texts that are ASCII without control characters other than tab, newline and carriage
  return are gated (``eligible``): on those, ``\\w``, ``\\d``, ``\\s``, ``\\b``, ``.`` and case folding
  agree between the two engines. Other texts (any non-ASCII character) take the plain path.

Platforms without the wheel fall back to the plain path: ``available()`` is False and a warning
is logged once when the first gate is built (tests/unit/test_multiscan.py fails there, so a
build that silently lost the fast path is noticed).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import re
import threading
import time
from collections.abc import Collection, Hashable, Sequence
from typing import Any

import regex

log = logging.getLogger("policy_sidecar")

_hs: Any
try:
    import hyperscan

    _hs = hyperscan
except ImportError:  # pragma: no cover - exercised where the wheel is missing
    _hs = None

#: Control characters on which ``\\s`` (Python counts \\x1c-\\x1f as space) or other classes may
#: differ between the engines: a text holding one is not gated.
_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: Flags of ``re`` / ``regex`` patterns we can map; a pattern with any other flag is not gated.
_KNOWN_FLAGS = re.IGNORECASE | re.MULTILINE | re.DOTALL | re.UNICODE | re.ASCII | regex.VERSION0
_warned = False


def _warn_missing() -> None:
    """Log once per process that the fast path is missing (at start: detectors build eagerly)."""
    global _warned
    if not _warned:
        _warned = True
        log.warning(
            "hyperscan is not installed: pattern detectors scan with one Python regex per "
            "pattern (slower, same results); pip install hyperscan"
        )


def available() -> bool:
    """True when the Hyperscan wheel is installed and usable here (the fast path)."""
    return _hs is not None


def eligible(text: str) -> bool:
    """Texts on which the gate is exact: ASCII, no control characters but tab, LF and CR."""
    return text.isascii() and _UNSAFE.search(text) is None


def source(pattern: Any) -> tuple[str, int] | None:
    """(pattern text, flags) of a compiled ``re``/``regex`` pattern, or of an object exposing
    ``pattern`` and ``flags`` the same way; None for anything else (gazetteers, capitalised-word sets)."""
    text, flags = getattr(pattern, "pattern", None), getattr(pattern, "flags", None)
    if isinstance(text, str) and isinstance(flags, int):
        return text, flags
    return None


class Gate:
    """Which of a fixed set of patterns may match a text: one Hyperscan pass.

    ``keys`` are the caller's names for the patterns that made it into the database; a key not
    in ``keys`` was not admitted and must always take the plain path. Thread-safe: each thread
    scans with its own scratch space.
    """

    def __init__(
        self,
        patterns: Sequence[tuple[Hashable, Any]],
        ends_of: Collection[Hashable] = (),
        starts_of: Collection[Hashable] = (),
    ) -> None:
        """``ends_of``: keys whose match end offsets ``scan`` reports (all of them, not only
        "some match"), so a caller can run the exact regex only near them (``narrowed``).
        ``starts_of``: keys whose leftmost start offset per match end ``scan`` reports
        (Hyperscan's ``HS_FLAG_SOM_LEFTMOST``; only for patterns it compiles exactly), for
        ``from_starts``."""
        self.keys: frozenset[Hashable] = frozenset()
        self.ends_of: frozenset[Hashable] = frozenset()
        self.starts_of: frozenset[Hashable] = frozenset()
        #: keys compiled exactly (not ``HS_FLAG_PREFILTER``): on a gated text, such a key is
        #: reported exactly when its pattern's ``search`` finds a match, so a caller that only
        #: asks "is there a match" needs no Python search at all
        self.exact: frozenset[Hashable] = frozenset()
        self._db: Any = None
        self._record: list[bool] = []
        self._som: list[bool] = []
        self._local = threading.local()
        if _hs is None:
            _warn_missing()
            return
        admitted: list[tuple[Hashable, bytes, int]] = []
        for key, pattern in patterns:
            compiled = _admit(pattern)
            if compiled is not None:
                admitted.append((key, *compiled))
        if not admitted:
            return
        record = [key in ends_of for key, _, _ in admitted]
        som = [key in starts_of and not flags & _hs.HS_FLAG_PREFILTER for key, _, flags in admitted]
        try:  # every end offset of the recorded patterns: compiled without SINGLEMATCH
            db = _compile(admitted, record, som)
        except _hs.error:  # pragma: no cover - a pattern that compiles only as single-match
            record = som = [False] * len(admitted)
            db = _compile(admitted, record, som)
        self._db = db
        self._som = [*som, False]
        self._hs = _hs
        self._ids = [key for key, _, _ in admitted]
        self._record = [*record, False]  # ``_UNSAFE_HS``: never recorded
        self.keys = frozenset(self._ids)
        self.ends_of = frozenset(k for k, r in zip(self._ids, record, strict=True) if r)
        self.starts_of = frozenset(k for k, r in zip(self._ids, som, strict=True) if r)
        self.exact = frozenset(key for key, _, flags in admitted if not flags & _hs.HS_FLAG_PREFILTER)
        _trim_heap()

    def matching(self, text: str) -> frozenset[Hashable] | None:
        """The admitted keys whose pattern may match ``text`` (a superset of those that do);
        None when the text is not gated (not ``eligible``, or no database): check everything."""
        found = self.scan(text)
        return None if found is None else found.keys

    def scan(self, text: str) -> Scan | None:
        """One pass: the keys that may match ``text`` and, for the ``ends_of`` keys among them,
        the sorted end offsets of their matches (``starts_of`` keys: the sorted distinct leftmost
        start offsets); None when the text is not gated."""
        if self._db is None or not text.isascii():
            return None
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = self._hs.Scratch(self._db)
        found: set[int] = set()
        ends: dict[int, list[int]] = {}
        starts: dict[int, set[int]] = {}
        record = self._record
        som = self._som

        def on_match(pattern_id: int, start: int, end: int, flags: int, context: Any) -> None:
            if record[pattern_id]:
                ends.setdefault(pattern_id, []).append(end)
            elif som[pattern_id]:
                starts.setdefault(pattern_id, set()).add(start)
            found.add(pattern_id)

        self._db.scan(text.encode("ascii"), match_event_handler=on_match, scratch=scratch)
        if len(self._ids) in found:
            return None  # a control character (``_UNSAFE``, the last pattern): not ``eligible``
        ids = self._ids
        found_ends = {ids[i]: sorted(e) for i, e in ends.items()}
        if starts:
            found_ends.update((ids[i], sorted(e)) for i, e in starts.items())
        return Scan(frozenset(ids[i] for i in found), found_ends)


class Scan:
    """What one ``Gate.scan`` found: ``keys`` that may match, ``ends`` per recorded key (the
    start offsets for a ``starts_of`` key)."""

    __slots__ = ("ends", "keys")

    def __init__(self, keys: frozenset[Hashable], ends: dict[Hashable, list[int]]) -> None:
        self.keys = keys
        self.ends = ends


#: ``_UNSAFE`` for Hyperscan: the gate's last pattern, so the pass itself tells whether an ASCII
#: text is ``eligible`` (a separate ``_UNSAFE.search`` walked the whole text again: ~5 µs per 2 KB)
_UNSAFE_HS = rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"


def _compile(
    admitted: Sequence[tuple[Hashable, bytes, int]], record: Sequence[bool], som: Sequence[bool]
) -> Any:
    """The gate's database: the admitted patterns (ids 0..n-1), then ``_UNSAFE_HS`` (id n)."""
    db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
    db.compile(
        expressions=[*(expr for _, expr, _ in admitted), _UNSAFE_HS],
        ids=list(range(len(admitted) + 1)),
        elements=len(admitted) + 1,
        flags=[
            *(
                (flags & ~_hs.HS_FLAG_SINGLEMATCH) | _hs.HS_FLAG_SOM_LEFTMOST
                if leftmost
                else flags & ~_hs.HS_FLAG_SINGLEMATCH
                if recorded
                else flags
                for (_, _, flags), recorded, leftmost in zip(admitted, record, som, strict=True)
            ),
            _hs.HS_FLAG_SINGLEMATCH,
        ],
    )
    return db


def narrowed(pattern: Any, text: str, ends: Sequence[int], width: int) -> list[Any]:
    """Exactly ``list(pattern.finditer(text))``, searching only near the reported ``ends``.

    ``ends``: sorted end offsets that include the end of every match of ``pattern`` in ``text``
    (a ``Gate.scan`` of a recorded key); ``width``: the most characters one match can span. A
    match starting at ``p`` ends at some ``e`` in ``ends`` with ``p >= e - width``, so no match
    starts between the current position and the first unconsumed end minus ``width``: a search
    from there finds the same next match ``finditer`` would (a search sees the text before its
    start position, for look-behinds and ``\b``, exactly as ``finditer`` does). Each character is
    searched at most once, so the cost never exceeds the plain ``finditer``'s. An empty match (whose
    ``finditer`` stepping rules differ) falls back to the plain ``finditer``.
    """
    out: list[Any] = []
    pos = 0
    # ``search(text, p)`` is the first match of ``finditer(text, p)`` without building an iterator
    # (``regex`` and ``re`` patterns both have it; other objects keep ``finditer``)
    search = getattr(pattern, "search", None)
    match = getattr(pattern, "match", None)
    for end in ends:
        if end < pos:
            continue  # a match starting at or after pos ends at or after pos
        if end == pos and match is not None and match(text, pos) is None:
            # Only a match *starting* at pos can end here (an empty one, or one that ends later):
            # there is none, so the next match ends at a later reported end. Searching from pos
            # instead would walk on to that match, however far (the end of the previous match is
            # usually reported too, so this was the common case: ~50 µs per 2 KB for a phone rule).
            continue
        start = max(pos, end - width)
        m = search(text, start) if search is not None else next(iter(pattern.finditer(text, start)), None)
        if m is None:
            break
        if m.end() == m.start():
            return list(pattern.finditer(text))
        out.append(m)
        pos = m.end()
    return out


def from_starts(pattern: Any, text: str, starts: Sequence[int], timeout: float | None = None) -> list[Any]:
    """Exactly ``list(pattern.finditer(text, timeout=timeout))``, trying only the ``starts``.

    ``starts``: sorted offsets that include the start of every match ``pattern`` could have in
    ``text`` (whatever position a search would begin at). ``finditer`` returns, from the end of
    its last match on, the match at the first position where ``pattern`` matches; that position
    is one of ``starts``, and ``match`` there gives the same match (like a search, it sees the
    text before its position, for look-behinds). Why: a pattern that opens with a look-behind or
    a class is tried at every position of the text; here only where a hint (a ``Gate``
    ``starts_of`` key) matched. ``timeout`` bounds the whole call, as it bounds ``finditer``.
    An empty match (whose ``finditer`` stepping rules differ) falls back to ``finditer``.
    """
    out: list[Any] = []
    pos = 0
    match = pattern.match
    deadline = None if timeout is None else time.monotonic() + timeout
    for start in starts:
        if start < pos:
            continue
        if deadline is None:
            m = match(text, start)
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("regex timed out")
            m = match(text, start, timeout=left)
        if m is None:
            continue
        if m.end() == m.start():
            return list(
                pattern.finditer(text) if timeout is None else pattern.finditer(text, timeout=timeout)
            )
        out.append(m)
        pos = m.end()
    return out


class LiteralSet:
    """Which of a fixed set of literal strings occur in a text: one Hyperscan pass.

    Why: the injection rules' ~220 anchor literals and the multilingual lexicon's ~160 keys are
    looked up several times per scan (the text, its rot13 probe, every decoded view); Hyperscan's
    pure-literal compiler answers all of them in ~5 µs per 2 KB, against ~30 µs for the numpy
    window hash (``injection.literals.LiteralIndex``, which uses this when it can). Exact: the
    literals and the text are matched as UTF-8 bytes, and a UTF-8 byte string occurs in another
    exactly when the characters do (UTF-8 is self-synchronising). Case-sensitive, like ``in``.
    Thread-safe: each thread scans with its own scratch space.
    """

    def __init__(self, literals: Sequence[str], every_match: bool = False, word_start: bool = False) -> None:
        """``every_match``: report every occurrence (for ``spans``), not only the first.
        ``word_start``: ``spans`` reports only occurrences that start a word (not after an ASCII
        word character, Hyperscan's ``\\b``; ``present`` likewise): every literal must start with
        a word character. Why: a caller that only wants word starts ("text" in "context" is
        none) is spared about half the occurrences, each a Python callback."""
        self._literals = tuple(literals)
        raw = [lit.encode("utf-8", "surrogatepass") for lit in self._literals]
        self._sizes = [len(r) for r in raw]
        self._hs = _hs  # the module this database belongs to (tests swap the global out)
        self._db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
        flags = 0 if every_match else _hs.HS_FLAG_SINGLEMATCH
        if word_start:  # \b, then every byte of the literal as \xHH: no character is special
            self._db.compile(
                expressions=[b"\\b" + b"".join(b"\\x%02x" % c for c in r) for r in raw],
                ids=list(range(len(raw))),
                elements=len(raw),
                flags=flags,
            )
        else:
            self._db.compile(
                expressions=raw, ids=list(range(len(raw))), elements=len(raw), flags=flags, literal=True
            )
        self._local = threading.local()

    def spans(self, text: str) -> list[tuple[int, int]] | None:
        """(start, end) of every occurrence of every literal (overlaps and repeats included),
        sorted; None for a non-ASCII text (there byte offsets are not character offsets)."""
        if not text.isascii():
            return None
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = self._hs.Scratch(self._db)
        found: list[tuple[int, int]] = []
        sizes = self._sizes

        def on_match(pattern_id: int, start: int, end: int, flags: int, context: Any) -> None:
            found.append((end - sizes[pattern_id], end))

        self._db.scan(text.encode("ascii"), match_event_handler=on_match, scratch=scratch)
        found.sort()
        return found

    def present(self, text: str) -> set[str]:
        """The literals that occur in ``text``."""
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = self._hs.Scratch(self._db)
        found: list[int] = []

        def on_match(pattern_id: int, start: int, end: int, flags: int, context: Any) -> None:
            found.append(pattern_id)

        self._db.scan(text.encode("utf-8", "surrogatepass"), match_event_handler=on_match, scratch=scratch)
        literals = self._literals
        return {literals[i] for i in found}


def literal_set(
    literals: Sequence[str], every_match: bool = False, word_start: bool = False
) -> LiteralSet | None:
    """A ``LiteralSet`` for ``literals`` (non-empty strings), or None without the Hyperscan wheel
    (callers keep their own path, and the start-up warning is logged) or if it does not compile."""
    if _hs is None:
        _warn_missing()
        return None
    if not literals:
        return None
    try:
        return LiteralSet(literals, every_match, word_start)
    except _hs.error:  # pragma: no cover - the literal compiler takes any non-empty byte string
        log.warning("hyperscan could not compile a literal set of %d entries: plain path", len(literals))
        return None


#: Non-ASCII characters that Python's ``re`` or ``regex`` match against an ASCII letter under
#: IGNORECASE (dotted and dotless i, long s, Kelvin sign; found by trying every BMP character).
_FOLDS_TO_ASCII = frozenset("\u0130\u0131\u017f\u212a")
_HEX = frozenset("0123456789abcdefABCDEF")


def _ascii_source(text: str) -> str | None:
    """``text`` with every non-ASCII character (literal, or a ``\\u`` / ``\\U`` escape of its code
    point) written as PCRE's ``\\x{...}`` with the code point in hex; None when a non-ASCII
    character could match ASCII text in Python (``_FOLDS_TO_ASCII``), sits in a range, or is
    named (``\\N{...}``)."""
    out: list[str] = []
    wide: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            nxt = text[i + 1]
            if nxt in "uU":
                size = 4 if nxt == "u" else 8
                digits = text[i + 2 : i + 2 + size]
                if len(digits) != size or not _HEX.issuperset(digits):
                    return None
                wide.append(chr(int(digits, 16)))
                out.append(f"\\x{{{int(digits, 16):x}}}")
                i += 2 + size
                continue
            if nxt == "N":
                return None
            if nxt.isascii():
                out.append(c + nxt)  # an ASCII escape (an escaped backslash too) passes as it is
                i += 2
                continue
            c = nxt  # an escaped non-ASCII character is that character
            i += 1
        if not c.isascii():
            wide.append(c)
            out.append(f"\\x{{{ord(c):x}}}")
        else:
            out.append(c)
        i += 1
    if _FOLDS_TO_ASCII.intersection(wide):
        return None
    converted = "".join(out)
    if wide and re.search(r"\\x\{[0-9a-f]+\}-|-\\x\{", converted):
        return None  # a range with a non-ASCII end may hold a character that folds onto ASCII
    return converted


def _admit(pattern: Any) -> tuple[bytes, int] | None:
    """The Hyperscan expression and flags for ``pattern``, or None if it stays outside the gate."""
    src = source(pattern)
    if src is None:
        return None
    text, flags = src
    if flags & ~_KNOWN_FLAGS or "{," in text or "{" in _BRACES.sub("", text):
        # "{,n}" is a repetition in Python, a literal in PCRE; any other brace that is not a
        # plain {m} / {m,} / {m,n} or part of \p{..} / \x{..} may mean something else to the
        # regex module ("(?:foo){e<=1}" is a fuzzy match there, a literal in PCRE and in re).
        return None
    converted = _ascii_source(text)
    if converted is None:
        return None
    utf8 = converted != text  # ASCII sources come back unchanged
    text = converted
    hs_flags = _hs.HS_FLAG_SINGLEMATCH | _hs.HS_FLAG_ALLOWEMPTY
    if utf8:  # non-ASCII characters as \x{...}: code points, not bytes
        hs_flags |= _hs.HS_FLAG_UTF8
    if flags & re.IGNORECASE:
        hs_flags |= _hs.HS_FLAG_CASELESS
    if flags & re.MULTILINE:
        hs_flags |= _hs.HS_FLAG_MULTILINE
    if flags & re.DOTALL:
        hs_flags |= _hs.HS_FLAG_DOTALL
    expr = text.encode("ascii")
    for extra in (0, _hs.HS_FLAG_PREFILTER):
        try:
            _hs.Database(mode=_hs.HS_MODE_BLOCK).compile(
                expressions=[expr], ids=[0], elements=1, flags=[hs_flags | extra]
            )
        except _hs.error:
            continue
        return expr, hs_flags | extra
    return None


#: What may hold a "{" in a pattern Hyperscan reads the same way: an escaped character (with a
#: braced argument: \p{Lu}, \x{2019}) and plain counted repetitions.
_BRACES = re.compile(r"\\[pPxN]\{[^}]*\}|\\.|\{\d+(?:,\d*)?\}", re.DOTALL)

_built: dict[tuple[tuple[tuple[Hashable, str, int], ...], tuple[str, ...], tuple[str, ...]], Gate] = {}
_built_lock = threading.Lock()
_BUILT_MAX = 64


def gate(
    patterns: Sequence[tuple[Hashable, Any]],
    ends_of: Collection[Hashable] = (),
    starts_of: Collection[Hashable] = (),
) -> Gate:
    """A ``Gate`` for ``patterns``, shared with every earlier request for the same keys and
    pattern sources (policy reloads and equal plugin configurations compile once)."""
    signature = (
        tuple((key, *(source(p) or ("", -1))) for key, p in patterns),
        tuple(sorted(map(repr, ends_of))),
        tuple(sorted(map(repr, starts_of))),
    )
    with _built_lock:
        found = _built.get(signature)
        if found is None:
            if len(_built) >= _BUILT_MAX:  # bounded: reloads with ever-new blocklists must not pile up
                del _built[next(iter(_built))]  # the oldest; plugins still using it keep their own reference
            found = _built[signature] = Gate(patterns, ends_of, starts_of)
    return found


def _trim_heap() -> None:
    """Give the Hyperscan compiler's freed working memory back to the OS (glibc's ``malloc_trim``).

    Why: compiling the PII gate (one trial compile per pattern, then the database) leaves ~13 MB
    of freed but still resident heap that glibc keeps for later allocations; the database itself
    is ~1.6 MB. Measured: +20 MB RSS without the trim, +7 MB with it. A no-op off glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
