"""HoldBack split policies and TextStreamFilter: chunking never changes the released text."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.chain.holdback import HoldBack, SplitPolicy, keep_tail, regex_safe, sentence_boundary, until_closed
from proxy.chain.textfilter import TextStreamFilter
from proxy.models.stream import Finish, RawEvent, StreamEvent, TextDelta, ToolCallDelta, Usage

FAST = settings(max_examples=150, deadline=None)


@st.composite
def _chunked(draw: st.DrawFn, text: st.SearchStrategy[str]) -> tuple[str, list[str]]:
    """A text and an arbitrary split of it into chunks (empty chunks included)."""
    t = draw(text)
    cuts = sorted(draw(st.lists(st.integers(0, len(t)), max_size=15)))
    bounds = [0, *cuts, len(t)]
    return t, [t[a:b] for a, b in itertools.pairwise(bounds)]


def _run(split: SplitPolicy, transform: Callable[[str], str], chunks: list[str]) -> tuple[list[str], str]:
    hb = HoldBack(split, transform)
    return [hb.feed(c) for c in chunks], hb.flush()


def _released_prefixes(split: SplitPolicy, chunks: list[str]) -> list[tuple[str, str]]:
    """With the identity transform: (text released so far, text fed so far) after each feed."""
    hb = HoldBack(split)
    released = fed = ""
    out = []
    for c in chunks:
        released += hb.feed(c)
        fed += c
        assert released + hb.pending == fed  # nothing lost, nothing duplicated
        out.append((released, fed))
    return out


# ---------------------------------------------------------------- keep_tail


@FAST
@given(_chunked(st.text(max_size=60)), st.integers(0, 12))
def test_keep_tail_releases_text_and_holds_last_k(case: tuple[str, list[str]], k: int) -> None:
    text, chunks = case
    pieces, rest = _run(keep_tail(k), lambda s: s, chunks)
    assert "".join(pieces) + rest == text
    for released, fed in _released_prefixes(keep_tail(k), chunks):
        # Nothing is released while at most k chars are buffered; then exactly the last k stay.
        assert released == fed[: max(0, len(fed) - k)]


# ---------------------------------------------------------------- regex_safe


_KEYWORDS = st.lists(st.text(alphabet="abcAB", min_size=1, max_size=10), min_size=1, max_size=4)


@st.composite
def _keyword_case(draw: st.DrawFn) -> tuple[list[str], str, list[str]]:
    """Keywords, and a chunked text built from them, their fragments and filler (so matches happen)."""
    keywords = draw(_KEYWORDS)
    fragments = [k[a:b] for k in keywords for a in range(len(k)) for b in range(a + 1, len(k) + 1)]
    piece = st.sampled_from(keywords) | st.sampled_from(fragments) | st.text(alphabet="abcAB x", max_size=3)
    text, chunks = draw(_chunked(st.lists(piece, max_size=12).map("".join)))
    return keywords, text, chunks


@FAST
@given(_keyword_case())
def test_regex_safe_keywords_match_whole_text(case: tuple[list[str], str, list[str]]) -> None:
    keywords, text, chunks = case
    rx = re.compile("|".join(re.escape(k) for k in keywords), re.IGNORECASE)
    max_match = max(len(k) for k in keywords)

    def redact(s: str) -> str:
        return rx.sub("[X]", s)

    pieces, rest = _run(regex_safe(rx, max_match), redact, chunks)
    assert "".join(pieces) + rest == redact(text)
    for released, _fed in _released_prefixes(regex_safe(rx, max_match), chunks):
        # A release point is never inside a match of the whole-text scan.
        assert all(not (m.start() < len(released) < m.end()) for m in rx.finditer(text))


_KEY_PIECES = st.sampled_from(
    ["sk-", "sk-ab12", "sk-abcdefghij", "s", "k-", "-", "ab", "z0", "19", " ", "a b"]
)


@FAST
@given(_chunked(st.lists(_KEY_PIECES, max_size=12).map("".join)))
def test_regex_safe_bounded_pattern(case: tuple[str, list[str]]) -> None:
    text, chunks = case
    rx = re.compile(r"sk-[a-z0-9]{4,8}")

    def redact(s: str) -> str:
        return rx.sub("[KEY]", s)

    pieces, rest = _run(regex_safe(rx, 11), redact, chunks)
    assert "".join(pieces) + rest == redact(text)


def test_regex_safe_example_key_split_across_chunks() -> None:
    rx = re.compile(r"sk-[a-z0-9]{4,8}")
    hb = HoldBack(regex_safe(rx, 11), lambda s: rx.sub("[KEY]", s))
    out = [hb.feed(c) for c in ["my key is s", "k-ab", "c12345 and", " more text here"]]
    out.append(hb.flush())
    # 10 chars (max_match - 1) are held; "sk-ab..." is held until the key cannot grow, then redacted.
    assert out == ["m", "y ke", "y is ", "[KEY] and more", " text here"]
    assert "".join(out[:3]) == "my key is "  # nothing of the key before it was complete


def test_regex_safe_holds_nothing_beyond_window() -> None:
    rx = re.compile("secret")
    hb = HoldBack(regex_safe(rx, 6))
    assert hb.feed("hello world") == "hello "
    assert hb.pending == "world"


# ---------------------------------------------------------------- until_closed


_PLACEHOLDERS = {"<P_1>": "Alice", "<EMAIL_12>": "bob@example.com", "<X_3>": "Carol"}
_PH_RX = re.compile(r"<[A-Z]+_\d+>")
_MAX_LEN = max(len(p) for p in _PLACEHOLDERS)
_PIECES = st.sampled_from(
    [*_PLACEHOLDERS, "<P_", "<EMAIL", "_1>", "<", ">", "<Q_9>", "hi ", "x", "P", "_", "1"]
)


def _restore(s: str) -> str:
    return _PH_RX.sub(lambda m: _PLACEHOLDERS.get(m[0], m[0]), s)


@FAST
@given(_chunked(st.lists(_PIECES, max_size=20).map("".join)), st.integers(_MAX_LEN, _MAX_LEN + 5))
def test_until_closed_restores_like_whole_text(case: tuple[str, list[str]], max_len: int) -> None:
    text, chunks = case
    pieces, rest = _run(until_closed("<", ">", max_len), _restore, chunks)
    assert "".join(pieces) + rest == _restore(text)

    known = [m.span() for m in _PH_RX.finditer(text) if m[0] in _PLACEHOLDERS]
    for released, fed in _released_prefixes(until_closed("<", ">", max_len), chunks):
        # Released text never ends inside an unclosed "<..." that could still become a token
        # (no ">" or newer "<" after it yet) unless that is already longer than max_len ...
        j = released.rfind("<")
        if j != -1 and not any(c in fed[j + 1 :] for c in "<>"):
            assert len(released) - j > max_len
        # ... so half a placeholder never leaks.
        assert all(not (s < len(released) < e) for s, e in known)


def test_until_closed_example() -> None:
    hb = HoldBack(until_closed("<", ">", 12), _restore)
    assert hb.feed("Hi <P") == "Hi "
    assert hb.feed("_1") == ""
    assert hb.feed(">, hello <EMA") == "Alice, hello "
    assert hb.feed("IL_12> bye") == "bob@example.com bye"
    assert hb.flush() == ""


def test_until_closed_gives_up_past_max_len() -> None:
    hb = HoldBack(until_closed("<", ">", 5))
    assert hb.feed("a <b") == "a "
    assert hb.feed("cdef") == "<bcdef"  # 6 chars after the opener: cannot be a token


# ---------------------------------------------------------------- sentence_boundary


def _ends_at_boundary(released: str, text: str) -> bool:
    last, after = released[-1], text[len(released) : len(released) + 1]
    return last == "\n" or (last in ".!?" and re.match(r"\s", after) is not None)


@FAST
@given(_chunked(st.text(alphabet="ab .!?\n\t", max_size=120)))
def test_sentence_boundary_releases_whole_sentences(case: tuple[str, list[str]]) -> None:
    text, chunks = case
    pieces, rest = _run(sentence_boundary(), str.upper, chunks)
    assert "".join(pieces) + rest == text.upper()
    for released, _fed in _released_prefixes(sentence_boundary(), chunks):
        if released:
            assert _ends_at_boundary(released, text), released


@FAST
@given(_chunked(st.text(alphabet="ab .\n", max_size=120)), st.integers(1, 10))
def test_sentence_boundary_forced_release_past_max_hold(case: tuple[str, list[str]], max_hold: int) -> None:
    text, chunks = case
    pieces, rest = _run(sentence_boundary(max_hold), lambda s: s, chunks)
    assert "".join(pieces) + rest == text
    hb = HoldBack(sentence_boundary(max_hold))
    released = ""
    for c in chunks:
        before = hb.pending + c
        piece = hb.feed(c)
        released += piece
        if piece and not _ends_at_boundary(released, text):
            # Only a buffer with no boundary and longer than max_hold is released mid-sentence.
            assert len(before) > max_hold
            assert hb.pending == ""


def test_sentence_boundary_example() -> None:
    hb = HoldBack(sentence_boundary())
    assert hb.feed("Hello there. How") == "Hello there."
    assert hb.feed(" are you? Fine") == " How are you?"
    assert hb.feed("\nok") == " Fine\n"
    assert hb.flush() == "ok"


# ---------------------------------------------------------------- TextStreamFilter


_FILTER_KEYWORDS = ("ab", "bca", "aaa")
_FILTER_RX = re.compile("|".join(_FILTER_KEYWORDS), re.IGNORECASE)


def _filter() -> TextStreamFilter:
    return TextStreamFilter(lambda: HoldBack(regex_safe(_FILTER_RX, 3), lambda s: _FILTER_RX.sub("#", s)))


@st.composite
def _two_choice_stream(draw: st.DrawFn) -> tuple[dict[int, str], list[StreamEvent]]:
    """Interleaved TextDeltas of choices 0 and 1, each followed (eventually) by its Finish."""
    per_index: dict[int, list[StreamEvent]] = {}
    texts: dict[int, str] = {}
    for i in (0, 1):
        text, chunks = draw(_chunked(st.text(alphabet="abcAB ", max_size=40)))
        texts[i] = text
        per_index[i] = [TextDelta(i, c) for c in chunks] + [Finish(i, "stop")]
    order = draw(st.permutations([0] * len(per_index[0]) + [1] * len(per_index[1])))
    cursors = {0: 0, 1: 0}
    events: list[StreamEvent] = []
    for i in order:
        events.append(per_index[i][cursors[i]])
        cursors[i] += 1
    return texts, events


@FAST
@given(_two_choice_stream())
async def test_text_filter_per_choice(case: tuple[dict[int, str], list[StreamEvent]]) -> None:
    texts, events = case
    flt = _filter()
    out: list[StreamEvent] = []
    for ev in events:
        out.extend(await flt.on_event(ev))
    out.extend(await flt.on_end())

    for i, text in texts.items():
        got = "".join(e.text for e in out if isinstance(e, TextDelta) and e.index == i)
        assert got == _FILTER_RX.sub("#", text)
        finishes = [n for n, e in enumerate(out) if isinstance(e, Finish) and e.index == i]
        assert len(finishes) == 1
        last_text = max(
            (n for n, e in enumerate(out) if isinstance(e, TextDelta) and e.index == i and e.text), default=-1
        )
        assert last_text < finishes[0]


async def test_text_filter_flushes_before_tool_call_and_other_events() -> None:
    flt = _filter()
    assert await flt.on_event(TextDelta(0, "hello a")) == [TextDelta(0, "hello")]
    assert await flt.on_event(TextDelta(1, "world b")) == [TextDelta(1, "world")]
    call = ToolCallDelta(0, 0, '{"a"', "call_1", "f")
    out = await flt.on_event(call)
    assert [e.text for e in out if isinstance(e, TextDelta)] == [" a"]
    assert out[-1] == call
    usage = Usage({"prompt_tokens": 1})
    out = await flt.on_event(usage)  # a stream-wide event flushes every choice first
    assert [(e.index, e.text) for e in out if isinstance(e, TextDelta)] == [(1, " b")]
    assert out[-1] == usage
    assert await flt.on_event(RawEvent(b"data: x\n\n")) == [RawEvent(b"data: x\n\n")]
    assert await flt.on_end() == []


async def test_text_filter_keeps_extra_when_text_is_held() -> None:
    flt = _filter()
    role = {"delta": {"role": "assistant"}, "choice": {}}
    out = await flt.on_event(TextDelta(0, "b", role))
    # The text is held (it may start "bca"), but the role must still reach the client now.
    assert [(e.text, e.extra) for e in out if isinstance(e, TextDelta)] == [
        ("", {"delta": {"role": "assistant"}})
    ]
    assert "".join(e.text for e in await flt.on_end() if isinstance(e, TextDelta)) == "b"


async def test_text_filter_redacts_keyword_split_across_deltas() -> None:
    flt = _filter()
    out: list[StreamEvent] = []
    for piece in ["x b", "c", "a y"]:
        out.extend(await flt.on_event(TextDelta(0, piece)))
    out.extend(await flt.on_event(Finish(0, "stop")))
    assert "".join(e.text for e in out if isinstance(e, TextDelta)) == "x # y"
    assert out[-1] == Finish(0, "stop")
