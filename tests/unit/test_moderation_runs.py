"""The moderation canonicaliser's run check is exact, so it skips the regex search (issue 17).

``rules._has_triple`` now answers "does ``_RUN`` match" by itself (numpy, a few µs), where it
used to be a loose filter (any byte three times: "1000", "...") followed by the ``_RUN`` search
(~150 µs per 2 KB support ticket). It must agree with the regex on every text.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.detectors.moderation import rules

TEXTS = st.text(alphabet=st.sampled_from("aabbz.01!? -\u00e9\u00c9\u4e1c\ud800"), max_size=60) | st.text(
    max_size=30
)


@settings(max_examples=1000, deadline=None)
@given(text=TEXTS)
def test_has_triple_is_exactly_the_run_regex(text: str) -> None:
    assert rules._has_triple(text) == (rules._RUN.search(text) is not None), repr(text)


def test_runs_of_non_letters_do_not_count_and_letter_runs_do() -> None:
    for text in ("order 1000", "wait...", "---", "   ", "éééé", "AAA", ""):
        assert not rules._has_triple(text), text
    for text in ("soooo bad", "zzz", "x" * 3, "é aaa"):
        assert rules._has_triple(text), text
    assert rules.canonicalise("soooo baaaad 1000...").text == "soo bad 1000..."  # "o" squeezes to two
