"""Overlap resolution, merging, and the placeholder grammar shared by redaction and restore."""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence

from proxy.detectors.pii.engine import NER_ENTITIES, Span

LITERAL = "LITERAL"  # placeholder-shaped text typed by the user, carried through verbatim

# What restore accepts: <TYPE_N> or [TYPE_N], any case, optional inner spaces. Anything in
# the *input* this pattern matches is neutralised first, so only proxy-issued tokens remain.
PLACEHOLDER_RX = re.compile(
    r"<\s*([A-Za-z][A-Za-z0-9_]*?)_(\d{1,6})\s*>|\[\s*([A-Za-z][A-Za-z0-9_]*?)_(\d{1,6})\s*\]"
)
MAX_PLACEHOLDER = 64  # the longest text restore can match (hold-back window on streams)


def placeholder(entity_type: str, number: int) -> str:
    return f"<{entity_type}_{number}>"


def literal_spans(text: str) -> list[Span]:
    """Placeholder-shaped input: always wins over any other detection (score above 1)."""
    if "<" not in text and "[" not in text:
        return []  # every placeholder opens with one of them: two memchr scans, not a regex walk
    return [Span(m.start(), m.end(), LITERAL, 2.0) for m in PLACEHOLDER_RX.finditer(text)]


def resolve(spans: Iterable[Span], text: str) -> list[Span]:
    """Non-overlapping spans: higher score wins, then the longer span, then the earlier one.

    Then same-type neighbours are merged: touching spans always, spans separated only by
    whitespace for name-like types (``John`` + ``Smith`` -> one PERSON).
    """
    # Kept spans never overlap and have positive length, so ordered by start their ends are
    # ordered too: a candidate overlaps one iff the last kept span starting before its end
    # reaches past its start. One bisection per candidate instead of a pass over all kept.
    kept: list[Span] = []
    starts: list[int] = []
    for s in sorted(spans, key=lambda s: (-s.score, -(s.end - s.start), s.start)):
        if s.end <= s.start:
            continue
        i = bisect_left(starts, s.end)
        if i and kept[i - 1].end > s.start:
            continue
        kept.insert(i, s)
        starts.insert(i, s.start)
    merged: list[Span] = []
    for s in kept:
        if merged and s.entity_type != LITERAL:
            prev = merged[-1]
            gap = text[prev.end : s.start]
            if prev.entity_type == s.entity_type and (
                gap == "" or (s.entity_type in NER_ENTITIES and gap.isspace() and len(gap) <= 2)
            ):
                merged[-1] = Span(prev.start, s.end, s.entity_type, max(prev.score, s.score))
                continue
        merged.append(s)
    return merged


def splice(text: str, edits: Sequence[tuple[int, int, str]]) -> str:
    """``text`` with each ``(start, end, new)`` edit applied; ``edits`` do not overlap and come
    from the last to the first (so each one's offsets are the original text's).

    Why not ``text[:start] + new + text[end:]`` per edit: that copies the whole text once per
    span (a PII-dense 2 KB prompt has dozens); here each character is copied once."""
    parts: list[str] = []
    end = len(text)
    for start, stop, new in edits:
        parts += (text[stop:end], new)
        end = start
    parts.append(text[:end])
    return "".join(reversed(parts))


def restore(text: str, mapping: Mapping[str, str], escape: bool = False) -> tuple[str, int, int]:
    """Replace proxy-issued placeholders; returns (text, restored, unknown).

    Only tokens in ``mapping`` (the placeholders this request's own history was given) are
    replaced, so a token the model invented, or one from another conversation, stays as it is.
    ``escape``: the text is a JSON string body (tool-call arguments); values are escaped.
    """
    restored = unknown = 0

    def sub(m: re.Match[str]) -> str:
        nonlocal restored, unknown
        # A token exactly as issued (``<EMAIL_ADDRESS_1>``, the common case) is a key itself:
        # the same lookup as the normalised one below, without rebuilding the token.
        value = mapping.get(m.group(0))
        if value is None:
            name = (m.group(1) or m.group(3)).upper()
            number = int(m.group(2) or m.group(4))
            value = mapping.get(placeholder(name, number))
        if value is None:
            unknown += 1
            return m.group(0)
        restored += 1
        if escape:
            import json

            return json.dumps(value, ensure_ascii=False)[1:-1]
        return value

    if "<" not in text and "[" not in text:
        return text, 0, 0
    return PLACEHOLDER_RX.sub(sub, text), restored, unknown


def stream_split(buf: str) -> int:
    """Hold from the last unclosed ``<`` or ``[`` while it could still become a placeholder."""
    cut = len(buf)
    for opener, closer in (("<", ">"), ("[", "]")):
        start = buf.rfind(opener)
        if start != -1 and closer not in buf[start:] and len(buf) - start <= MAX_PLACEHOLDER:
            cut = min(cut, start)
    return cut
