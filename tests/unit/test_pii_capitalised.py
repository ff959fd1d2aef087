"""The capitalised-word scan's ASCII shortcut against the look-behind regex it replaces.

``capitalised.ascii_capitalised`` (no look-behind, one character tested per match) must give
exactly ``plain_capitalised`` (the ``_CAPITALISED`` regex) on every ASCII text, and
``capitalised_words`` (which now returns the shared scan itself for the whole text) the same
words as filtering that scan by position.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.detectors.pii.capitalised import ascii_capitalised, capitalised_words, plain_capitalised
from tests.datasets import dataset_or_skip
from tests.unit import pii_corpus

#: what decides the look-behind and the tail: capitals, lower case, digits, ``_``, ``-``, ``.``,
#: ``'``, spaces and line breaks, with words drawn from realistic fragments
_ASCII = st.text(alphabet="ABZaz09_-.' \n\tMrXé", max_size=60).filter(str.isascii)
_TEXTS = st.one_of(
    _ASCII,
    st.lists(st.sampled_from([f for f in pii_corpus._FRAGMENTS if f.isascii()]), max_size=20).map(" ".join),
    st.lists(
        st.one_of(_ASCII, st.sampled_from(["Anna-Lena", "O'Brien", "x-Ray", "_Foo", "9Ab", "-Ab"])),
        max_size=8,
    ).map("".join),
)


@settings(max_examples=1500, deadline=None)
@given(_TEXTS)
def test_ascii_scan_equals_lookbehind_regex(text: str) -> None:
    assert ascii_capitalised(text) == plain_capitalised(text)


def test_ascii_scan_equals_lookbehind_regex_on_the_dataset() -> None:
    path = dataset_or_skip("pii") / "presidio_synth_dataset_v2.json"
    texts = [row["full_text"] for row in json.loads(path.read_text())]
    ascii_texts = [t for t in texts if t.isascii()]
    assert len(ascii_texts) > 1000  # the comparison covers the set, not a few leftovers
    for text in ascii_texts:
        assert ascii_capitalised(text) == plain_capitalised(text), text
    # non-ASCII texts keep the reference scan
    other = next(t for t in texts if not t.isascii())
    assert capitalised_words(other) == plain_capitalised(other)


def test_shortcut_can_fail() -> None:
    """The comparison sees the look-behind: a capital after a word character or hyphen is no start."""
    assert [w for _, _, w in plain_capitalised("aB x-Cd _Ef Gh")] == ["gh"]
    assert ascii_capitalised("aB x-Cd _Ef Gh") == plain_capitalised("aB x-Cd _Ef Gh")


@settings(max_examples=500, deadline=None)
@given(_TEXTS, st.integers(-2, 70), st.one_of(st.none(), st.integers(0, 70)))
def test_capitalised_words_by_position(text: str, pos: int, endpos: int | None) -> None:
    every = plain_capitalised(text)
    stop = len(text) if endpos is None else endpos
    assert capitalised_words(text, pos, endpos) == [w for w in every if w[0] >= pos and w[1] <= stop]
    assert capitalised_words(text) == every
