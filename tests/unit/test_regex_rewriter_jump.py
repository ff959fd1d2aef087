"""RegexRewriter jumps over dead text with one search: the output must equal the per-character scan.

The per-character loop below is the implementation before the jump (kept here as the
reference): for any text, chunking, pattern and ``max_match`` the streamed result, what is held
back after every chunk included, must be the same. The jump exists because the reference costs
one anchored ``match`` call per character: a 4 MB chunk through a blocklist stream filter
blocked the event loop for seconds.
"""

from __future__ import annotations

from collections.abc import Callable

import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.chain.holdback import RegexRewriter


class _Reference(RegexRewriter):
    __slots__ = ()

    def _rewrite(self, buf: str, final: bool) -> tuple[str, int]:
        text = self._ctx + buf
        off = len(self._ctx)
        end = len(text)
        out: list[str] = []
        last = off
        rx, partial = self._rx, not final
        p = end if rx.search(text, off, partial=partial) is None else off
        while p < end:
            m = rx.match(text, p, partial=partial)
            if m is None:
                p += 1
                continue
            if partial and end - p < self._max:
                end = p
                break
            if m.partial or m.end() == p:
                p += 1
                continue
            out.append(text[last:p])
            out.append(self._replace(m))
            last = p = m.end()
        out.append(text[last:end])
        return "".join(out), end - off


PATTERNS = [
    r"sk-[a-c0-9]{4,}",
    r"\bab\b",
    r"(?<=x)ab+",
    r"a(?:bc|b)c?",
    r"(?i)secret",
    r"b*",  # empty matches
    r"[ab]{2,6}x",
]


def _numbered() -> Callable[[regex.Match[str]], str]:
    seen: list[str] = []

    def replace(m: regex.Match[str]) -> str:
        seen.append(m.group())
        return f"<{len(seen)}>"

    return replace


def _run(cls: type[RegexRewriter], pattern: str, max_match: int, chunks: list[str]) -> list[str]:
    rw = cls(regex.compile(pattern), _numbered(), max_match)
    steps = []
    for chunk in chunks:
        steps.append(rw.feed(chunk))
        steps.append("|held:" + rw.pending)
    steps.append(rw.flush())
    return steps


_TEXT = st.text(alphabet="abcsk-0123x ?SECRETsecret.\n", max_size=160)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(PATTERNS),
    st.integers(1, 12),
    _TEXT,
    st.lists(st.integers(0, 160), max_size=6),
)
def test_jump_gives_the_reference_output(pattern: str, max_match: int, text: str, cuts: list[int]) -> None:
    points = sorted({min(c, len(text)) for c in cuts})
    chunks = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    assert _run(RegexRewriter, pattern, max_match, chunks) == _run(_Reference, pattern, max_match, chunks)


def test_a_long_chunk_is_searched_not_walked() -> None:
    """Counts anchored ``match`` calls: the jump needs a handful for a long clean chunk."""
    calls = 0

    class Counting:
        def __init__(self, rx: regex.Pattern[str]) -> None:
            self.rx = rx

        def search(self, *args: object, **kwargs: object) -> object:
            return self.rx.search(*args, **kwargs)  # type: ignore[arg-type]

        def match(self, *args: object, **kwargs: object) -> object:
            nonlocal calls
            calls += 1
            return self.rx.match(*args, **kwargs)  # type: ignore[arg-type]

    rw = RegexRewriter(Counting(regex.compile(r"sk-[a-z0-9]{20,}")), lambda m: "[X]", 200)  # type: ignore[arg-type]
    text = "plain words here. " * 50_000 + "sk-abcdefghijklmnopqrstuvwxyz tail"
    out = rw.feed(text) + rw.flush()
    assert out.endswith("[X] tail") and out.count("[X]") == 1
    # Only the last max_match (200) characters, where a partial match may still grow, are
    # walked one by one; the per-character scan made ~900,000 calls.
    assert calls <= 2 * 200
