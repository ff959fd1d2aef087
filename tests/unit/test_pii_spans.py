"""Overlap resolution, merging, restore tolerance and the stream split policy."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.chain import HoldBack
from proxy.detectors.pii import LITERAL, Span, literal_spans, resolve, restore, splice, stream_split


@settings(max_examples=400, deadline=None)
@given(
    text=st.text(alphabet="ab <>_1", max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=12),
    news=st.lists(st.text(alphabet="XY<>_", max_size=8), min_size=6, max_size=6),
)
def test_splice_is_the_slice_by_slice_redaction(text: str, cuts: list[int], news: list[str]) -> None:
    """What the plugin did per span (``text[:start] + new + text[end:]``, from the last span),
    on ordered non-overlapping spans (empty ones too)."""
    points = sorted(min(c, len(text)) for c in cuts)
    spans = list(zip(points[::2], points[1::2], strict=False))
    edits = [(a, b, news[i % len(news)]) for i, (a, b) in enumerate(spans)][::-1]
    expected = text
    for start, end, new in edits:
        expected = expected[:start] + new + expected[end:]
    assert splice(text, edits) == expected


def test_higher_score_wins_then_longer_span() -> None:
    text = "x" * 40
    spans = [Span(0, 10, "URL", 0.5), Span(2, 8, "EMAIL_ADDRESS", 1.0), Span(20, 30, "A", 0.5)]
    spans.append(Span(18, 35, "B", 0.5))
    assert resolve(spans, text) == [Span(2, 8, "EMAIL_ADDRESS", 1.0), Span(18, 35, "B", 0.5)]


def test_adjacent_same_type_spans_merge() -> None:
    text = "John Smith and 12"
    spans = [
        Span(0, 4, "PERSON", 0.85),
        Span(5, 10, "PERSON", 0.6),
        Span(15, 16, "X", 1),
        Span(16, 17, "X", 1),
    ]
    assert resolve(spans, text) == [Span(0, 10, "PERSON", 0.85), Span(15, 17, "X", 1)]
    emails = "a@b.co c@d.co"
    two = [Span(0, 6, "EMAIL_ADDRESS", 1.0), Span(7, 13, "EMAIL_ADDRESS", 1.0)]
    assert resolve(two, emails) == two  # separate values stay separate


def test_literal_placeholder_text_always_wins() -> None:
    text = "see <PERSON_1> now"
    found = resolve([Span(4, 14, "PERSON", 1.0), *literal_spans(text)], text)
    assert found == [Span(4, 14, LITERAL, 2.0)]


def test_restore_tolerates_case_and_brackets_but_only_known_tokens() -> None:
    mapping = {"<PERSON_1>": "Ann", "<EMAIL_ADDRESS_2>": "a@b.co"}
    text = "<PERSON_1>, [person_1], < Person_1 >, <EMAIL_ADDRESS_2>, <PERSON_2>, <PERSON_1, PERSON_1"
    out, restored, unknown = restore(text, mapping)
    assert out == "Ann, Ann, Ann, a@b.co, <PERSON_2>, <PERSON_1, PERSON_1"
    assert (restored, unknown) == (4, 1)


def test_restore_escapes_values_inside_json_strings() -> None:
    out, n, _ = restore('{"to": "<PERSON_1>"}', {"<PERSON_1>": 'A "B" \\ C'}, escape=True)
    assert out == '{"to": "A \\"B\\" \\\\ C"}' and n == 1


def test_stream_split_holds_only_an_unclosed_candidate() -> None:
    hb = HoldBack(stream_split, lambda t: restore(t, {"<PERSON_1>": "Ann"})[0])
    out = [hb.feed(c) for c in ["Hi <PER", "SON", "_1> and [x", "] a < b ", "x" * 70]]
    assert out[0] == "Hi " and out[1] == "" and out[2] == "Ann and "
    assert "".join(out) + hb.flush() == "Hi Ann and [x] a < b " + "x" * 70


@settings(max_examples=400, deadline=None)
@given(text=st.text(alphabet="<>[]_ aZ1\n", max_size=40))
def test_literal_spans_are_the_placeholder_matches(text: str) -> None:
    from proxy.detectors.pii.spans import PLACEHOLDER_RX

    expected = [Span(m.start(), m.end(), LITERAL, 2.0) for m in PLACEHOLDER_RX.finditer(text)]
    assert literal_spans(text) == expected


def _restore_reference(text: str, mapping: dict[str, str]) -> tuple[str, int, int]:
    """``restore`` before its exact-token fast path: every token normalised, then looked up."""
    from proxy.detectors.pii.spans import PLACEHOLDER_RX, placeholder

    counts = [0, 0]

    def sub(m: re.Match[str]) -> str:
        value = mapping.get(placeholder((m.group(1) or m.group(3)).upper(), int(m.group(2) or m.group(4))))
        counts[value is None] += 1
        return m.group(0) if value is None else value

    return PLACEHOLDER_RX.sub(sub, text), counts[0], counts[1]


_TOKENS = st.sampled_from(
    ["<EMAIL_ADDRESS_1>", "<EMAIL_ADDRESS_2>", "<email_address_1>", "< PERSON_1 >", "[PERSON_1]",
     "<PERSON_01>", "<TYPE_2_1>", "<TYPE_2_10>", "<LITERAL_3>", "<X_1>", "<X_1", "x", " ", "\n", "<",
     "_1>", "[", "]"]
)  # fmt: skip
_MAPPING = {"<EMAIL_ADDRESS_1>": "a@b.co", "<PERSON_1>": "Ann", "<TYPE_2_1>": "v21", "<LITERAL_3>": "<X_9>"}


@settings(max_examples=800, deadline=None)
@given(st.lists(_TOKENS, max_size=12).map("".join))
def test_restore_fast_path_equals_the_normalised_lookup(text: str) -> None:
    assert restore(text, _MAPPING) == _restore_reference(text, _MAPPING)
