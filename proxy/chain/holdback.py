"""HoldBack: release the streamed text that can no longer change, keep the tail that might.

A stream filter that rewrites text (restore a placeholder, redact a pattern) cannot emit a
chunk whose end might be the first half of something it must rewrite. ``HoldBack`` owns that
bookkeeping: ``feed(text)`` returns what is safe to send now, ``flush()`` returns the rest at
the end of the stream (or before a non-text event). What is "safe" is a *split policy*: a
function from the buffered text to the number of leading characters that are final. An
optional ``transform`` is applied to released text only, so it never sees half a token.

Invariant (property-tested): for any text and any split into chunks,
``"".join(feed(c) for c in chunks) + flush() == transform(text)`` whenever ``transform``
is local within the policy's window.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

import regex

SplitPolicy = Callable[[str], int]


def _identity(text: str) -> str:
    return text


class HoldBack:
    """Per-stream (per choice) buffer; never shared between requests."""

    __slots__ = ("_buf", "_split", "_transform")

    def __init__(self, split: SplitPolicy, transform: Callable[[str], str] = _identity) -> None:
        self._split = split
        self._transform = transform
        self._buf = ""

    @property
    def pending(self) -> str:
        return self._buf

    def feed(self, text: str) -> str:
        buf = self._buf + text if self._buf else text
        n = self._split(buf)
        if n <= 0:
            self._buf = buf
            return ""
        self._buf = buf[n:]
        return self._transform(buf[:n])

    def flush(self) -> str:
        buf, self._buf = self._buf, ""
        return self._transform(buf) if buf else ""


class TextBuffer(Protocol):
    """What a per-choice stream buffer offers: ``HoldBack`` and ``RegexRewriter`` both are one."""

    @property
    def pending(self) -> str: ...

    def feed(self, text: str) -> str: ...

    def flush(self) -> str: ...


def keep_tail(k: int) -> SplitPolicy:
    """Keep the last ``k`` characters (for matches at most ``k + 1`` characters long)."""

    def split(buf: str) -> int:
        return max(0, len(buf) - k)

    return split


def regex_safe(pattern: re.Pattern[str], max_match: int) -> SplitPolicy:
    """Release up to where no match of ``pattern`` (at most ``max_match`` chars) can straddle.

    Any match starting before ``len(buf) - max_match + 1`` is fully inside the buffer, so it
    is final; a match that straddles the release point moves the point to its start, so the
    released text always ends on a boundary where a single-pass scan would also be.
    """
    tail = max(0, max_match - 1)

    def split(buf: str) -> int:
        cut = len(buf) - tail
        if cut <= 0:
            return 0
        for m in pattern.finditer(buf):
            if m.start() >= cut:
                break
            if m.end() > cut:
                return m.start()
        return cut

    return split


def until_closed(opener: str, closer: str, max_len: int) -> SplitPolicy:
    """Hold from the last unclosed ``opener`` while it could still become a token.

    Used for placeholders such as ``<PERSON_1>``: text after an opener is held until the
    closer arrives or the held part grows past ``max_len`` (then it cannot be a token).
    """

    def split(buf: str) -> int:
        start = buf.rfind(opener)
        if start == -1 or closer in buf[start:]:
            return len(buf)
        if len(buf) - start > max_len:
            return len(buf)
        return start

    return split


_SENTENCE_END = re.compile(r"[.!?\n](?=\s)|\n")


def sentence_boundary(max_hold: int = 2000) -> SplitPolicy:
    """Release whole sentences (for windowed moderation); force release past ``max_hold``."""

    def split(buf: str) -> int:
        last = -1
        for m in _SENTENCE_END.finditer(buf):
            last = m.end()
        if last > 0:
            return last
        return len(buf) if len(buf) > max_hold else 0

    return split


class RegexRewriter:
    """Streamed ``sub`` that gives the same result as on the whole text, holding back as little as it can.

    Two problems with a fixed window: ``HoldBack(regex_safe(...), transform)`` runs the transform
    on each released piece alone, so piece edges look like string edges to ``\\b``, ``^`` or a
    lookbehind; and holding the longest possible match (say 200 characters for a secret
    pattern) delays every stream's first token by that much. So this class

    * matches over ``context + buffer`` (the last ``context`` released characters are kept
      and the search starts after them), so assertions see the real neighbours;
    * uses the ``regex`` module's *partial* matching: text is held only from where a match
      could still begin or grow (a partial match, or a match touching the end of what has
      arrived); everything before is final and released at once. Ordinary text that cannot
      start a match is never held.

    ``max_match`` still bounds the hold: a candidate longer than that is decided as it stands.
    ``replace(match)`` returns the replacement (or raises, to block).
    """

    __slots__ = ("_buf", "_context", "_ctx", "_max", "_replace", "_rx")

    def __init__(
        self,
        rx: regex.Pattern[str],
        replace: Callable[[regex.Match[str]], str],
        max_match: int,
        context: int = 32,
    ) -> None:
        self._rx = rx
        self._replace = replace
        self._max = max(1, max_match)
        self._context = context
        self._ctx = ""
        self._buf = ""

    @property
    def pending(self) -> str:
        return self._buf

    def _rewrite(self, buf: str, final: bool) -> tuple[str, int]:
        """Rewrite what is decided; returns (released text, characters of ``buf`` consumed).

        A position where no match, not even a partial one, can begin is dead: text up to the
        first live position is final. An unanchored partial search that finds nothing proves
        the whole buffer dead in one C call (the common case); otherwise positions are checked
        one by one with anchored ``match``, because an unanchored search prefers a later
        complete match to an earlier partial one, and a complete short match to a longer
        alternative that could still win. So a candidate is decided only once ``max_match``
        characters from its start have arrived.
        """
        text = self._ctx + buf
        off = len(self._ctx)
        end = len(text)
        out: list[str] = []
        last = off
        rx, partial = self._rx, not final
        # None proves every position dead; a hit proves nothing about positions before it.
        p = end if rx.search(text, off, partial=partial) is None else off
        # Positions before the next *complete* match are dead, except near the end where a
        # partial one may still grow (the last ``max_match`` characters when not final): one
        # C-level search jumps over them instead of one anchored ``match`` per character, so a
        # multi-megabyte chunk costs a few searches, not millions of calls.
        limit = end - self._max if partial else end
        while p < end:
            if p < limit:
                hit = rx.search(text, p, end)
                q = end if hit is None else hit.start()
                if q > p:
                    p = min(q, limit)
                    continue
            m = rx.match(text, p, partial=partial)
            if m is None:
                p += 1
                continue
            if partial and end - p < self._max:
                end = p  # this candidate can still change: hold from here
                break
            if m.partial or m.end() == p:
                p += 1  # an over-long candidate that is not a match, or an empty match
                continue
            out.append(text[last:p])
            out.append(self._replace(m))
            last = p = m.end()
        out.append(text[last:end])
        return "".join(out), end - off

    def feed(self, text: str) -> str:
        buf = self._buf + text
        released, used = self._rewrite(buf, final=False)
        if used:
            self._ctx = (self._ctx + buf[:used])[-self._context :] if self._context else ""
        self._buf = buf[used:]
        return released

    def flush(self) -> str:
        buf, self._buf = self._buf, ""
        if not buf:
            return ""
        released, _ = self._rewrite(buf, final=True)
        return released
