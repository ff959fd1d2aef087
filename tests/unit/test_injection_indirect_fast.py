"""The indirect path's shortcuts (issue #17) give exactly what the plain versions give.

``segments`` cuts the whole text in one pass (one pattern that starts with a character class), and
``candidates`` finds the anchor literals in the lower-cased text once instead of per segment;
each is compared here with the straightforward version on generated texts and the shared
datasets. (``tests/unit/test_gated_cues.py`` compares ``segments`` with its line-by-line
ancestor and the gated features with the plain regexes.)
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.detectors.injection import indirect
from proxy.detectors.injection.indirect import ANCHORS, IndirectDetector, _holding, segments
from tests.datasets import dataset_or_skip

# Sentence stops (ASCII and CJK), every kind of whitespace str.split/strip and \s treat
# differently from a space (\r, \x0b, \x1c, \x85, \u2028, \u3000), and anchor words.
ALPHABET = "ab .!?\u3002\uff01\uff1f\t\n\r\x0b\x1c\x85\u2028\u3000"
PHRASES = ["ignore", " the", " rest", ". ", "\n", "Instead", " your task", "!", " ", "rather than", "x" * 150]


def line_segments(text: str) -> list[indirect.Segment]:
    """``segments`` line by line with ``_SENTENCE``, as it was written before the one-pass cut."""
    out: list[indirect.Segment] = []
    pos = 0
    for line in text.split("\n"):
        line_start = pos
        pos += len(line) + 1
        cut = 0
        for m in [*indirect._SENTENCE.finditer(line), None]:
            if m is None:
                end = nxt = len(line)
            elif m.group(1) is not None:
                end, nxt = m.span(1)
            else:
                end = nxt = m.end()
            piece = line[cut:end]
            for k in range(0, len(piece), indirect._MAX_SEGMENT):
                chunk = piece[k : k + indirect._MAX_SEGMENT]
                stripped = chunk.strip()
                if stripped:
                    s = line_start + cut + k + (len(chunk) - len(chunk.lstrip()))
                    out.append(indirect.Segment(stripped, s, s + len(stripped)))
            cut = nxt
    return out


def plain_candidates(text: str, segs: list[indirect.Segment]) -> list[int]:
    present = indirect._GATE.present(text.lower())
    return [i for i, s in enumerate(segs) if any(lit in s.text.lower() for lit in present)]


# Anchors (upper-cased too), and non-ASCII letters whose lower case is longer ("İ") or depends
# on context (final sigma): those texts take the per-segment path.
CUE_PARTS = [*PHRASES, *(a + " " for a in ANCHORS), "YOUR TASK ", "IGNOR", "\u0130", "\u03a3 "]
TEXTS = st.text(alphabet=ALPHABET, max_size=80) | st.lists(st.sampled_from(PHRASES), max_size=30).map("".join)


@settings(max_examples=2000, deadline=None)
@given(TEXTS)
def test_segments_match_the_line_by_line_cut(text: str) -> None:
    assert segments(text) == line_segments(text)


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(st.sampled_from(PHRASES + [a + " " for a in ANCHORS[:20]] + ["YOUR TASK", "Ignor"]), max_size=40)
)
def test_candidates_match_the_per_segment_search(parts: list[str]) -> None:
    text = "".join(parts)
    segs = segments(text)
    assert IndirectDetector.default().candidates(text, segs) == plain_candidates(text, segs)


def test_holding_finds_literals_only_inside_a_segment() -> None:
    text = "ignore. the rest"  # "ignore. the" would cross the cut: no segment holds it
    segs = segments(text)
    assert _holding(text, segs, {"ignore. the"}) == []
    assert _holding(text, segs, {"ignore", "rest"}) == [0, 1]


def test_segments_and_candidates_on_the_shared_datasets() -> None:
    from tests.unit.injection_corpus import all_sources

    dataset_or_skip("injection")
    detector = IndirectDetector.default()
    checked = 0
    for texts in all_sources().values():
        for text in texts:
            segs = segments(text)
            assert segs == line_segments(text), text[:60]
            assert detector.candidates(text, segs) == plain_candidates(text, segs), text[:60]
            checked += 1
    assert checked > 10_000
