"""Decoders for text hidden in common encodings (hex, base64, URL-encoding, rot13).

Why separate: these are the only places where arbitrary bytes become text, so their acceptance rule
lives in one spot: a decoding is kept only when the result looks like human text (or like another
encoded layer), which keeps hashes, ids and random tokens from producing noise segments.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator
from urllib.parse import unquote_plus

from .compiled import kernel as _kernel

Span = tuple[int, int]

# Each pattern starts with a plain character class so ``re`` can skip ahead quickly; boundaries are
# checked in Python on the (rare) hits. A single alternation with look-behinds was ~5x slower.
_HEX_RUN = re.compile(r"[0-9A-Fa-f]{16,}")
_HEX_SEP = re.compile(r"[0-9A-Fa-f][0-9A-Fa-f][ ,:][0-9A-Fa-f]{2}(?:[ ,:][0-9A-Fa-f]{2}){4,}")
_HEX_0X = re.compile(r"0x[0-9A-Fa-f]{2}(?:[ ,]*0x[0-9A-Fa-f]{2}){3,}")
_HEX_ESC = re.compile(r"(?:\\x[0-9A-Fa-f]{2}){4,}")
_B64_RUN = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_URL_ESC = re.compile(r"%[0-9A-Fa-f]{2}")
# Attempts start only at token starts, and each scans its token once: linear overall.
_URL_TOKEN = re.compile(r"(?<!\S)\S*?%[0-9A-Fa-f]{2}\S*")
_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-"
_HEX_SEP_CHARS = b"0123456789ABCDEFabcdef ,:"
# Byte class tables for the pre-checks: a class member becomes "r", anything else (including every
# byte of a non-ASCII character) "."; a run of the class is then one fast substring search away.
_B64_CLASS = bytes(ord("r") if b in _B64_CHARS else ord(".") for b in range(256))
_HEX_SEP_CLASS = bytes(ord("r") if b in _HEX_SEP_CHARS else ord(".") for b in range(256))
_HEX_CLASS = bytes(ord("r") if b in b"0123456789ABCDEFabcdef" else ord(".") for b in range(256))
_B64_MIN = b"r" * 16  # the shortest _B64_RUN (and _HEX_RUN: hex digits are base64 characters)
_HEX_SEP_MIN = b"r" * 17  # the shortest _HEX_SEP: 6 pairs and 5 separators
_ROT13_BYTES = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    b"NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm",
)


def rot13(text: str) -> str:
    """rot13 via a bytes table: UTF-8 multi-byte sequences never contain ASCII letter bytes."""
    return text.encode("utf-8", "surrogatepass").translate(_ROT13_BYTES).decode("utf-8", "surrogatepass")


def _isolated(text: str, start: int, end: int) -> bool:
    """The run is not glued to other letters/digits (so it is not part of a longer word)."""
    return (start == 0 or not text[start - 1].isalnum()) and (end == len(text) or not text[end].isalnum())


def _has_run(text: str, table: bytes, run: bytes) -> bool:
    """Pre-check: does ``text`` hold ``len(run)`` consecutive characters of the class ``table`` marks?

    Why: on ordinary prose the run regexes below found nothing yet cost ~100 µs per 2 KB, because
    ``re`` starts a match attempt at every letter. Mapping bytes to their class (``bytes.translate``)
    and searching for the shortest possible run costs a few µs and skips them. It is exact as a
    filter: every match of the guarded pattern contains such a run (ASCII characters are one byte in
    UTF-8, and no byte of a multi-byte character is in a class)."""
    return run in text.encode("utf-8", "surrogatepass").translate(table)


def maybe_encoded(text: str) -> bool:
    """``maybe_encoded_python`` in one compiled pass when the kernel is built (~1 µs per 2 KB,
    against ~5; the same answer: tests/unit/test_injection_kernel.py)."""
    if _kernel is not None:
        return _kernel.maybe_encoded(text)
    return maybe_encoded_python(text)


def maybe_encoded_python(text: str) -> bool:
    """Could any finder below yield a span for ``text``? False means none can, so all are skipped.

    Why: each finder checks its own cheap pre-condition, but that meant encoding and translating the
    text once per finder (and the base64 one twice); on prose, where nothing is encoded, this one
    check with a single encoding is most of what the decoding layer costs. It is exactly the union
    of the finders' own pre-conditions, so it never hides a span they would find."""
    # Each two-character marker is guarded by a one-character search (memchr: ~0.1 µs per 2 KB,
    # against ~2 µs for a two-character search): prose seldom holds a backslash or a zero.
    if "%" in text or ("\\" in text and "\\x" in text) or ("0" in text and "0x" in text):
        return True
    raw = text.encode("utf-8", "surrogatepass")
    return _B64_MIN in raw.translate(_B64_CLASS) or _HEX_SEP_MIN in raw.translate(_HEX_SEP_CLASS)


def _class_runs(text: str, table: bytes) -> list[Span] | None:
    """The maximal runs of at least 16 characters of the class ``table`` marks, in order; None for
    a non-ASCII text (there byte offsets are not character offsets: callers take the regex).

    Why: ``_HEX_RUN`` and ``_B64_RUN`` are a repeated class with no literal to skip ahead to, so
    ``re`` starts a match at every letter of the text and walks each word to its end (~15 µs per
    2 KB each, and a hyphenated name such as ``umbrella-freight`` is a 16-character base64 run, so
    the pre-check lets most tickets through). On the class-mapped bytes a run is one substring
    search for 16 marks and one for the next non-mark (~2 µs). Exact: the leftmost match of
    ``[class]{16,}`` starts where the first run of 16 marks does and, greedy, ends where the run
    ends; ``finditer`` resumes there, where no mark follows (tests/unit/test_injection_decoders_fast.py)."""
    if not text.isascii():
        return None
    classed = text.encode("ascii").translate(table)
    runs: list[Span] = []
    at = classed.find(_B64_MIN)
    while at >= 0:
        end = classed.find(b".", at + 16)
        if end < 0:
            end = len(classed)
        runs.append((at, end))
        at = classed.find(_B64_MIN, end)
    return runs


def find_hex(text: str) -> Iterator[Span]:
    runs = _class_runs(text, _HEX_CLASS)
    if runs is not None:
        for start, end in runs:
            if _isolated(text, start, end):
                yield start, end
    guarded = (
        (_HEX_RUN, runs is None and _has_run(text, _B64_CLASS, _B64_MIN)),
        (_HEX_SEP, _has_run(text, _HEX_SEP_CLASS, _HEX_SEP_MIN)),
    )
    for pattern, candidate in guarded:
        if candidate:
            for m in pattern.finditer(text):
                if _isolated(text, *m.span()):
                    yield m.span()
    for pattern, marker in ((_HEX_ESC, "\\x"), (_HEX_0X, "0x")):
        if marker in text:
            for m in pattern.finditer(text):
                yield m.span()


def find_b64(text: str) -> Iterator[Span]:
    runs = _class_runs(text, _B64_CLASS)
    if runs is not None:  # each run with the up to two "=" of its padding, as ``_B64_RUN`` takes them
        for start, end in runs:
            pad = 0
            while pad < 2 and text.startswith("=", end + pad):
                pad += 1
            yield start, end + pad
        return
    if not _has_run(text, _B64_CLASS, _B64_MIN):
        return
    for m in _B64_RUN.finditer(text):
        yield m.span()  # greedy runs are maximal, so they are already bounded


def find_url(text: str) -> Iterator[Span]:
    """Whitespace-delimited tokens holding at least two %XX escapes."""
    if "%" not in text:
        return
    for m in _URL_TOKEN.finditer(text):
        if len(_URL_ESC.findall(m.group())) >= 2:
            yield m.span()


def _is_texty(text: str) -> bool:
    """True when decoded bytes look like human text, so random-looking tokens are not "decoded"."""
    if len(text) < 4:
        return False
    printable = sum(1 for c in text if c.isprintable() or c in "\t\n\r")
    wordy = sum(1 for c in text if c.isalpha() or c == " ")
    return printable >= 0.95 * len(text) and wordy >= 0.5 * len(text)


def _bytes_to_text(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _is_texty(text) or (
        text.isprintable() and any(p.fullmatch(text) for p in (_HEX_RUN, _HEX_SEP, _B64_RUN))
    ):
        return text  # the second case is a further encoded layer (e.g. base64 of hex): decoded next level
    return None


def decode_hex(run: str) -> str | None:
    digits = re.sub(r"\\x|0x|[ ,:]", "", run)
    try:
        return _bytes_to_text(binascii.unhexlify(digits))
    except (binascii.Error, ValueError):
        return None


def decode_b64(run: str) -> str | None:
    body = run.rstrip("=")
    if len(body) % 4 == 1:
        return None
    altchars = b"-_" if ("-" in body or "_" in body) else None
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _bytes_to_text(raw)


def decode_url(token: str) -> str | None:
    try:
        decoded = unquote_plus(token, errors="strict")
    except UnicodeDecodeError:
        return None
    return decoded if decoded != token and _is_texty(decoded) else None


FINDERS: tuple[tuple[str, Callable[[str], Iterator[Span]], Callable[[str], str | None]], ...] = (
    ("hex", find_hex, decode_hex),
    ("base64", find_b64, decode_b64),
    ("url", find_url, decode_url),
)
"""(encoding, finder, decoder) in priority order: hex runs are also valid base64, so hex goes first."""

# The ``encoded_kinds`` bits (``_injection_kernel.c``) under which each finder can yield a span:
# hex needs a run of 16 hex digits, a hex-with-separators run, "\x" or "0x"; base64 a run of 16
# base64 characters; url a "%". Indexed by the bits: the finders to run, in ``FINDERS`` order.
_NEEDS = {"hex": 2 | 4 | 16 | 32, "base64": 8, "url": 1}
_BY_KINDS = tuple(tuple(f for f in FINDERS if kinds & _NEEDS[f[0]]) for kinds in range(64))


def applicable(
    text: str,
) -> tuple[tuple[str, Callable[[str], Iterator[Span]], Callable[[str], str | None]], ...]:
    """The ``FINDERS`` that can yield a span for ``text``, in order; the rest would find nothing.

    Why: ``maybe_encoded`` answers for all finders at once, so a text with one base64-looking run
    (a hyphenated domain such as ``umbrella-freight`` is 16 base64 characters) still paid the hex
    finder's own pre-checks and marker searches (~8 µs per 2 KB). The kernel's one pass tells
    each finder's pre-conditions apart (each finder still checks its own). Without the kernel,
    all finders or none, as ``maybe_encoded`` says."""
    if _kernel is None:
        return FINDERS if maybe_encoded_python(text) else ()
    return _BY_KINDS[_kernel.encoded_kinds(text)]
