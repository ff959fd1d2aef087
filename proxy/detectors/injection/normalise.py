"""Canonical text for prompt-injection scanning.

Why this exists: the rule and classifier layers match mostly-English, mostly-ASCII text, and attackers
defeat such matchers cheaply with invisible characters, bidi controls, look-alike letters, compatibility
forms, combining marks and encodings (base64, hex, URL-encoding, rot13, Unicode tag characters). This
module undoes those tricks *for scanning only* -- the proxy still forwards the caller's original text --
and keeps an offset map so that findings can be reported against the original string.

Folding is done per character (NFKD-to-ASCII for accented Latin letters, NFKC otherwise) rather than
with a whole-string ``unicodedata.normalize``: the result is the same for everything the rules care
about, and it lets us keep exact offsets. Decoded payloads are returned separately as segments so that
the caller scans both the visible text and whatever it was hiding.
"""

from __future__ import annotations

import functools
import json
import re
import string
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from .decoders import applicable, rot13
from .views import views

Rot13Probe = Callable[[str], bool]
"""Decides whether a rot13-decoded text contains trigger phrases (the heuristic layer provides it)."""
Rot13Gate = Callable[[str], bool]
"""Given the *un*-rotated text, False when the probe could not fire on its rot13 (so rotating and
probing are skipped). It must never answer False where the probe would answer True."""

_INVISIBLE = frozenset(
    "\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u180e\u00ad\u034f\u115f\u1160\u3164\uffa0"
) | frozenset(chr(c) for c in range(0xFE00, 0xFE10))
_BIDI = frozenset("\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_TAG_FIRST, _TAG_LAST = 0xE0000, 0xE007F
_MAX_ATTEMPTS = 256  # decode attempts per encoding and level
_MARK = "mark"  # a combining mark: dropped only when it decorates an ASCII letter (see _fold)

_WORD = re.compile(r"[^\W\d_]+")


@dataclass(frozen=True, slots=True)
class Confusables:
    """Homoglyph table loaded from ``confusables.json`` (kept as data so it can grow without code)."""

    always: Mapping[str, tuple[str, str]]
    cross_script: Mapping[str, str]

    @classmethod
    def load(cls, path: Path | None = None) -> Confusables:
        if path is None:
            raw = resources.files(__package__).joinpath("confusables.json").read_text("utf-8")
        else:
            raw = path.read_text("utf-8")
        doc = json.loads(raw)
        always = {k: (v, "nfkc") for k, v in doc["compat"].items()}
        always |= {k: (v, "homoglyph") for k, v in doc["latin_lookalikes"].items()}
        cross = dict(doc["cross_script"])
        for k, v in [*((k, v) for k, (v, _) in always.items()), *cross.items()]:
            if len(k) != 1 or len(v) != 1 or not v.isascii():
                raise ValueError(f"confusables entry {k!r} -> {v!r} must map one char to one ASCII char")
        return cls(MappingProxyType(always), MappingProxyType(cross))


@dataclass(frozen=True, slots=True)
class OffsetMap:
    """Piecewise map from normalised offsets back to original offsets (empty tuples = identity)."""

    norm_starts: tuple[int, ...] = ()
    orig_starts: tuple[int, ...] = ()
    copies: tuple[bool, ...] = ()

    def _index(self, i: int) -> int:
        if not self.norm_starts:
            return i
        k = max(bisect_right(self.norm_starts, i) - 1, 0)
        start = self.orig_starts[k]
        return start + (i - self.norm_starts[k]) if self.copies[k] else start

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map a half-open span of the normalised text to the smallest covering original span."""
        if end <= start:
            pos = self._index(start)
            return pos, pos
        return self._index(start), self._index(end - 1) + 1


_IDENTITY = OffsetMap()
"""The map of text that folding left unchanged. Immutable, so one instance serves every call: building a
frozen dataclass costs ~0.6 µs, a quarter of what the moderation normaliser spends on ASCII prose."""


@dataclass(frozen=True, slots=True)
class DecodedSegment:
    """Hidden text recovered by a decoder; ``span`` is where its source lies in the original text."""

    encoding: str  # "base64", "hex", "url", "rot13", "unicode_tags"; nested ones as "base64>hex"
    span: tuple[int, int]
    text: str


@dataclass(frozen=True, slots=True)
class NormalisedText:
    """The scanning view of one input: folded text, decoded segments and what had to be undone."""

    original: str
    text: str
    segments: tuple[DecodedSegment, ...] = ()
    flags: frozenset[str] = frozenset()
    offsets: OffsetMap = OffsetMap()

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        return self.offsets.to_original(start, end)


def _fold_char(ch: str, always: Mapping[str, tuple[str, str]]) -> tuple[str, str] | None:
    """Replacement and flag for one non-ASCII character, or None when it is left alone."""
    if ch in _INVISIBLE:
        return "", "invisible"
    if ch in _BIDI:
        return "", "bidi"
    if _TAG_FIRST <= ord(ch) <= _TAG_LAST:
        return "", "tag_chars"
    if ch in always:
        return always[ch]
    if unicodedata.category(ch) == "Mn":
        return ch, _MARK
    if not unicodedata.is_normalized("NFKD", ch):
        decomposed = unicodedata.normalize("NFKD", ch)
        base = "".join(c for c in decomposed if not unicodedata.combining(c))
        if base and base.isascii():
            return base, ("diacritics" if base != decomposed else "nfkc")
    if not unicodedata.is_normalized("NFKC", ch):
        folded = unicodedata.normalize("NFKC", ch)
        return "".join(always.get(c, (c, ""))[0] for c in folded), "nfkc"
    return None


def _group_tags(text: str, hits: list[int]) -> list[tuple[tuple[int, int], str]]:
    """Runs of adjacent Unicode tag characters -> (span, the ASCII text they mirror)."""
    groups: list[tuple[tuple[int, int], str]] = []
    start = 0
    for k in range(1, len(hits) + 1):
        if k == len(hits) or hits[k] != hits[k - 1] + 1:
            run = text[hits[start] : hits[k - 1] + 1]
            hidden = "".join(chr(ord(c) - _TAG_FIRST) for c in run if 0x20 <= ord(c) - _TAG_FIRST < 0x7F)
            if hidden.strip():
                groups.append(((hits[start], hits[k - 1] + 1), hidden))
            start = k
    return groups


class Normaliser:
    """Immutable, thread-safe normaliser; build once and call many times."""

    def __init__(
        self,
        confusables: Confusables | None = None,
        rot13_probe: Rot13Probe | None = None,
        *,
        rot13_gate: Rot13Gate | None = None,
        max_depth: int = 2,
        max_segments: int = 16,
        deobfuscate: bool = True,
    ) -> None:
        self._conf = confusables or Confusables.load()
        self._probe = rot13_probe
        self._gate = rot13_gate
        self._max_depth = max_depth
        self._max_segments = max_segments
        self._views = deobfuscate
        cross = "".join(re.escape(c) for c in sorted(self._conf.cross_script))
        self._cross_char = re.compile(f"[{cross}]") if cross else None

    def __call__(self, text: str) -> NormalisedText:
        return self._normalise(text, 0, rot13_allowed=True)

    def _normalise(self, text: str, depth: int, *, rot13_allowed: bool) -> NormalisedText:
        folded, offsets, flags, tags = self._fold(text)
        folded = self._fold_homoglyphs(folded, flags)
        segments = [DecodedSegment("unicode_tags", span, hidden) for span, hidden in tags]
        if depth >= self._max_depth:
            return NormalisedText(text, folded, tuple(segments), frozenset(flags), offsets)
        candidates: list[tuple[str, tuple[int, int], str]] = []
        taken: list[tuple[int, int]] = []
        for encoding, finder, decoder in applicable(folded):  # the finders that can find a span
            for attempt, (start, end) in enumerate(finder(folded)):
                if len(candidates) >= self._max_segments or attempt >= _MAX_ATTEMPTS:
                    break  # bounds the work on inputs stuffed with encoded-looking runs
                if any(start < e and s < end for s, e in taken):
                    continue
                decoded = decoder(folded[start:end])
                if decoded is not None:
                    taken.append((start, end))
                    candidates.append((encoding, offsets.to_original(start, end), decoded))
        if (
            rot13_allowed
            and self._probe is not None
            and len(folded) >= 8
            and (self._gate is None or self._gate(folded))
        ):
            rotated = rot13(folded)
            if self._probe(rotated):
                candidates.append(("rot13", (0, len(text)), rotated))
        if depth == 0 and self._views:
            # De-obfuscated views of the whole text (leetspeak, spaced letters, readable rot13): scored
            # like decoded segments, so the detector keeps the highest score and names the view.
            seen = {c[0] for c in candidates}
            for name, view in views(folded):
                if name not in seen:
                    candidates.append((name, (0, len(text)), view))
        for encoding, span, decoded in candidates:
            flags.add(encoding)
            inner = self._normalise(decoded, depth + 1, rot13_allowed=encoding != "rot13")
            flags |= inner.flags
            segments.append(DecodedSegment(encoding, span, inner.text))
            segments.extend(DecodedSegment(f"{encoding}>{s.encoding}", span, s.text) for s in inner.segments)
        return NormalisedText(text, folded, tuple(segments[: self._max_segments]), frozenset(flags), offsets)

    def _fold(self, text: str) -> tuple[str, OffsetMap, set[str], list[tuple[tuple[int, int], str]]]:
        """Per-character folding with an offset map; also lifts out Unicode tag-character payloads."""
        flags: set[str] = set()
        tags: list[tuple[tuple[int, int], str]] = []
        if text.isascii():
            return text, _IDENTITY, flags, tags
        plan = {
            ch: step for ch in set(text) if not ch.isascii() and (step := _fold_char(ch, self._conf.always))
        }
        if not plan:
            return text, _IDENTITY, flags, tags
        out: list[str] = []
        norm_starts: list[int] = []
        orig_starts: list[int] = []
        copies: list[bool] = []
        n_out = run_start = 0
        prev = ""
        tag_hits: list[int] = []
        # Visit only the characters that change (a regex over the planned set runs at C speed).
        changing = re.compile("[" + "".join(re.escape(c) for c in sorted(plan)) + "]")
        for hit in changing.finditer(text):
            i, ch = hit.start(), hit.group()
            rep, flag = plan[ch]
            if flag == _MARK:
                before = text[i - 1] if i > run_start else prev
                if not (before.isascii() and before.isalpha()):
                    continue  # a mark on a non-Latin letter is part of that script: keep it
                rep, flag = "", "diacritics"
            if i > run_start:
                norm_starts.append(n_out)
                orig_starts.append(run_start)
                copies.append(True)
                out.append(text[run_start:i])
                n_out += i - run_start
                prev = text[i - 1]
            run_start = i + 1
            flags.add(flag)
            if flag == "tag_chars":
                tag_hits.append(i)
            if rep:
                norm_starts.append(n_out)
                orig_starts.append(i)
                copies.append(False)
                out.append(rep)
                n_out += len(rep)
                prev = rep[-1]
        if not flags:
            return text, _IDENTITY, flags, tags
        if run_start < len(text):
            norm_starts.append(n_out)
            orig_starts.append(run_start)
            copies.append(True)
            out.append(text[run_start:])
        tags = _group_tags(text, tag_hits)
        return "".join(out), OffsetMap(tuple(norm_starts), tuple(orig_starts), tuple(copies)), flags, tags

    def _fold_homoglyphs(self, text: str, flags: set[str]) -> str:
        """Fold cross-script look-alikes (length-preserving) inside mixed-script words, and inside words made
        only of look-alikes when the text is mostly Latin -- so Russian prose ("как") stays untouched."""
        if text.isascii() or self._cross_char is None or not self._cross_char.search(text):
            return text
        cross = self._conf.cross_script
        latin = sum(map(text.count, string.ascii_letters))  # C-level counting; no per-char Python loop
        mostly_latin = latin > len(text) - len(text.encode("ascii", "ignore"))

        def fold(m: re.Match[str]) -> str:
            word = m.group()
            if word.isascii() or not any(c in cross for c in word):
                return word
            if any(c.isascii() for c in word) or (mostly_latin and all(c in cross for c in word)):
                flags.add("homoglyph")
                return "".join(cross.get(c, c) for c in word)
            return word

        return _WORD.sub(fold, text)


@functools.cache
def default_normaliser() -> Normaliser:
    """The shared default instance (immutable once built, so caching it is not mutable global state)."""
    from .heuristics import HeuristicScanner  # local import: heuristics depends on this module's types

    scanner = HeuristicScanner.default()
    return Normaliser(rot13_probe=scanner.reveals_trigger, rot13_gate=scanner.may_reveal_trigger)


def normalise(text: str) -> NormalisedText:
    """Normalise ``text`` with the packaged confusables table and the default rule set as rot13 probe."""
    return default_normaliser()(text)
