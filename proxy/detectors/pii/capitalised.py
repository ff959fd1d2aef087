"""Capitalised-word candidates and the word-list lookups built on them (gazetteers).

Split out of ``recognizers.py`` (module size). Countries, nationalities and given names are
found by looking up capitalised words, so one scan of the capitalised words per text is shared
by all of them (``capitalised_words``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

import regex

from proxy.detectors.pii.tuned import NAME_PART


class _Found:
    __slots__ = ("_span",)

    def __init__(self, start: int, end: int) -> None:
        self._span = (start, end)

    def span(self, group: int = 0) -> tuple[int, int]:
        return self._span


_CAPITALISED = regex.compile(r"(?<![\w\-])\p{Lu}[\w\-]*")
#: ``_CAPITALISED`` without its look-behind, for ASCII texts (``ascii_capitalised``)
_ASCII_CAPITALISED = regex.compile(r"[A-Z][\w\-]*")
#: ``[\w\-]`` on ASCII text: a capital after one of these starts no capitalised word
_WORD_OR_HYPHEN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_scan_cache = threading.local()

try:  # built by setup.py when a C compiler is there (optional: the Python scan is the reference)
    from proxy.detectors.pii import _pii_kernel as kernel
except ImportError:  # pragma: no cover - installs without a compiler
    kernel = None  # type: ignore[assignment]


def plain_capitalised(text: str) -> list[tuple[int, int, str]]:
    """(start, end, lower-cased word) of every ``_CAPITALISED`` match: the reference scan."""
    return [(m.start(), m.end(), m.group(0).lower()) for m in _CAPITALISED.finditer(text)]


def ascii_capitalised(text: str) -> list[tuple[int, int, str]]:
    r"""``plain_capitalised`` of an ASCII ``text``, at about half the cost.

    Why: a pattern that opens with a look-behind is tried at every position of the text (~60 %
    of this scan's time). On ASCII text ``\p{Lu}`` is ``[A-Z]`` and ``\w`` is
    ``[A-Za-z0-9_]``, so the look-behind is a test of one character, done here on the matches of
    the pattern without it. Same matches: a capital after ``[\w\-]`` never lies strictly inside
    a match of ``_ASCII_CAPITALISED`` at an accepted start, since every character after a match's
    first is in ``[\w\-]``: so the scan reaches every start ``_CAPITALISED`` accepts, with the same
    greedy tail; and a match at a rejected start holds no accepted start either."""
    out: list[tuple[int, int, str]] = []
    for m in _ASCII_CAPITALISED.finditer(text):
        start, end = m.span()
        if start and text[start - 1] in _WORD_OR_HYPHEN:
            continue
        out.append((start, end, m.group(0).lower()))
    return out


def scan_capitalised(text: str) -> list[tuple[int, int, str]]:
    """``plain_capitalised(text)``: compiled for ASCII texts when the kernel is built (~1 µs per
    2 KB against ~13 µs for ``ascii_capitalised``, the same list), else ``ascii_capitalised`` for
    ASCII texts, else the look-behind regex."""
    if kernel is not None:
        found = kernel.capitalised(text)
        if found is not None:
            return found
    return ascii_capitalised(text) if text.isascii() else plain_capitalised(text)


def capitalised_words(text: str, pos: int = 0, endpos: int | None = None) -> list[tuple[int, int, str]]:
    """(start, end, lower-cased word) of every capitalised word: one scan per text, shared by
    the gazetteers (countries, nationalities, given names). The last text's scan is kept per
    thread, so ``scan`` stays thread-safe and three gazetteers cost one pass. The list returned
    may be that shared scan itself (the whole text asked for): callers only read it."""
    stop = len(text) if endpos is None else endpos
    cached = getattr(_scan_cache, "value", None)
    if cached is None or cached[0] is not text:
        words = scan_capitalised(text)
        _scan_cache.value = cached = (text, words)
    if pos <= 0 and stop >= len(text):
        return cached[1]  # every word: no copy
    return [w for w in cached[1] if w[0] >= pos and w[1] <= stop]


class Gazetteer:
    """Whole-word, case-insensitive lookup of a word list, with the interface of a compiled regex.

    Why not one regex alternation: 200 country names with IGNORECASE cost 2-3 ms per 2 KB in
    either regex engine. Here only capitalised words are candidates (one fast scan), and each is
    looked up by its lower-cased first word; the longest listed name starting there wins.
    """

    def __init__(self, names: Iterable[str], not_before: str = "") -> None:
        self.pattern = f"gazetteer({len(list(names))} names)"
        #: a name followed by this is part of something else ("Czech" in "Czech Republic")
        self._not_before = re.compile(not_before) if not_before else None
        first: dict[str, list[str]] = {}
        for name in names:
            low = name.lower()
            first.setdefault(low.split(" ", 1)[0], []).append(low)
        self._first = {k: sorted(v, key=len, reverse=True) for k, v in first.items()}

    def finditer(
        self, text: str, pos: int = 0, endpos: int | None = None, timeout: float | None = None
    ) -> list[_Found]:
        out: list[_Found] = []
        lowered: str | None = None
        stop = len(text) if endpos is None else endpos
        for start, _, word in capitalised_words(text, pos, stop):
            names = self._first.get(word)
            if names is None:
                continue
            if lowered is None:
                lowered = text.lower()
            for name in names:
                end = start + len(name)
                if (
                    end <= stop
                    and lowered.startswith(name, start)
                    and not (end < len(text) and text[end].isalnum())
                    and not (self._not_before is not None and self._not_before.match(text, end))
                ):
                    out.append(_Found(start, end))
                    break
        return out


#: Words that end a place or an organisation, never a surname.
NOT_SURNAMES = frozenset(
    """street st road rd avenue ave lane drive way square place court park hill hills bridge
    station hospital university college school church inc ltd llc group company corporation
    bank hotel airport centre center museum foundation institute""".split()  # noqa: SIM905
)


class NameGazetteer:
    """A known given name followed by an optional initial and one or two capitalised words.

    Same candidate scan as ``Gazetteer`` (capitalised words only, dictionary lookup); the
    surname must follow, so a lone "Anna" or a given name used as a word is left to NER.
    """

    _TAIL = regex.compile(
        r"(?:[ ]\p{Lu}\.?)?(?:[ ](?:van|von|de|der|den|da|di|dos|del|le|la|ten|ter)){0,2}"
        r"[ ]" + NAME_PART + r"(?:[ ]" + NAME_PART + r")?(?![\w\-])"
    )

    #: a given name alone is a person where it is addressed or speaks: "Ella: What a ...",
    #: "Danial, can I ...", "Remember me, Maria?", "Dear Anna", "named him Luis", "Jacob lives"
    _CUE_BEFORE = regex.compile(
        r"(?i:\b(?:dear|hi|hello|hey|(?:named|called)(?:[ ](?:him|her|me|them))?|call[ ]me|calls[ ]me"
        r"|thanks)[ ,]*)$"
    )
    _CUE_AFTER = regex.compile(r"[ ](?:lives|lived|said|says|asked|told|wrote|replied|smiled)\b|[?!]")

    def _alone(self, text: str, start: int, end: int) -> bool:
        line_start = start == 0 or text[start - 1] == "\n"
        nxt = text[end : end + 1]
        if line_start and nxt in (":", ","):
            return True
        if text[max(0, start - 2) : start] == ", " and self._CUE_AFTER.match(text, end) is not None:
            return True  # vocative: "Remember me, Maria?"
        if self._CUE_BEFORE.search(text[max(0, start - 16) : start]) is not None:
            return True
        return bool(line_start and self._CUE_AFTER.match(text, end) is not None)

    def __init__(self, names: Iterable[str]) -> None:
        self._names = frozenset(n.lower() for n in names)
        self.pattern = f"names({len(self._names)})"

    def _given(self, word: str, text: str, start: int) -> bool:
        """A known given name, or a hyphenated one that starts with it ("Jean-Luc", "Anna-Lena":
        every part capitalised, so "Anna-based" is not one)."""
        if word in self._names:
            return True
        parts = word.split("-")
        if len(parts) < 2 or parts[0] not in self._names:
            return False
        offset = start
        for part in parts:
            if not part or not text[offset].isupper():
                return False
            offset += len(part) + 1
        return True

    def finditer(
        self, text: str, pos: int = 0, endpos: int | None = None, timeout: float | None = None
    ) -> list[_Found]:
        out: list[_Found] = []
        stop = len(text) if endpos is None else endpos
        after = pos
        for start, first_end, word in capitalised_words(text, pos, stop):
            if start < after or not self._given(word, text, start):
                continue
            tail = self._TAIL.match(text, first_end, stop)
            if tail is None:
                if self._alone(text, start, first_end):
                    out.append(_Found(start, first_end))
                continue
            end = tail.end()
            last = text.rfind(" ", first_end, end)
            if text[last + 1 : end].lower() in NOT_SURNAMES:  # "Thomas Street", "Maria Hospital"
                if last <= first_end:
                    continue  # nothing but the given name would be left
                end = last
            out.append(_Found(start, end))
            after = end
        return out
