"""Property tests: each shortcut taken in the detectors' pure-Python layers answers exactly as the
straightforward code it replaced (rarest-character guards before substring searches, plain loops in
``Prefilter.may_match``, byte-level token splitting in the moderation rules).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.detectors.injection import decoders
from proxy.detectors.injection.heuristics import HeuristicScanner
from proxy.detectors.injection.literals import LiteralIndex, rarest_char
from proxy.detectors.injection.prefilter import Prefilter
from proxy.detectors.moderation import rules as rules_module
from proxy.detectors.moderation.rules import RuleScanner

FAST = settings(max_examples=300, deadline=None)

# Short literals of the packaged index (including the rot13 anchors), characters that guard them and
# the markers of ``maybe_encoded``, so generated texts hit and nearly hit all of them.
_PIECES = st.sampled_from(
    [
        *("#", "<|", "<", "|", "not", "now", "abg", "abj", "j", "DAN", "QNA", "D", "Q"),
        *("\\x", "\\", "0x", "0", "x", "ignore", "you", "nobody ", "likes ", "one", "cut"),
        *("don't", "'", " ", ".", "é", "日"),
    ]
)
_TEXT = st.one_of(st.text(max_size=80), st.lists(_PIECES, max_size=20).map("".join))


@given(st.text(min_size=1, max_size=8))
def test_rarest_char_is_a_character_of_the_literal(literal: str) -> None:
    assert rarest_char(literal) in literal


@FAST
@given(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=12), _TEXT)
def test_literal_index_equals_one_search_per_literal(literals: list[str], text: str) -> None:
    """Short literals go through a one-character guard first; the answer must not change."""
    assert LiteralIndex(literals).present(text) == {lit for lit in literals if lit in text}


@FAST
@given(_TEXT)
def test_packaged_literal_index_equals_one_search_per_literal(text: str) -> None:
    index = HeuristicScanner.default()._folded
    literals = [lit for lit, _ in index._short] + [
        lit for keyed in index._by_key.values() for _, lit in keyed
    ]
    assert index.present(text) == {lit for lit in literals if lit in text}


@FAST
@given(_TEXT)
def test_exact_anchor_guards_equal_plain_searches(text: str) -> None:
    """``DAN`` and its rot13 ``QNA`` are looked for behind a guard in ``_find`` and the rot13 gate."""
    scanner = HeuristicScanner.default()
    anchors = [a for a, _ in scanner._exact_guarded]
    assert "DAN" in anchors and [a for _, _, a in scanner._rot_exact] == anchors
    assert all(guard in a for a, guard in scanner._exact_guarded)  # a guard is necessary for its anchor
    assert all(guard in lit for lit, guard, _ in scanner._rot_exact)
    assert [a for a, guard in scanner._exact_guarded if guard in text and a in text] == [
        a for a in anchors if a in text
    ]
    assert [a for lit, guard, a in scanner._rot_exact if guard in text and lit in text] == [
        a for a in anchors if decoders.rot13(a) in text
    ]


@FAST
@given(_TEXT)
def test_encoding_gate_guards_equal_plain_searches(text: str) -> None:
    """``maybe_encoded`` looks for a backslash or a zero before ``\\x`` and ``0x``."""
    markers = "%" in text or "\\x" in text or "0x" in text
    if markers:
        assert decoders.maybe_encoded(text)
    else:
        raw = text.encode("utf-8", "surrogatepass")
        runs = decoders._B64_MIN in raw.translate(
            decoders._B64_CLASS
        ) or decoders._HEX_SEP_MIN in raw.translate(decoders._HEX_SEP_CLASS)
        assert decoders.maybe_encoded(text) == runs


def _nested_may_match(prefilter: Prefilter, text: str) -> bool:
    """``may_match`` as it was first written."""
    return any(all(any(lit in text for lit in group) for group in alt) for alt in prefilter.alternatives)


@FAST
@given(_TEXT)
def test_prefilter_loops_equal_the_nested_formula(text: str) -> None:
    scanner = RuleScanner.default()
    prefilters = [p.prefilter for p in scanner._patterns] + [a.prefilter for a in scanner._allow]
    for prefilter in prefilters:
        if prefilter is not None:
            assert prefilter.may_match(text) == _nested_may_match(prefilter, text)
            assert prefilter.may_match(text.lower()) == _nested_may_match(prefilter, text.lower())


@FAST
@given(_TEXT)
def test_vocabulary_tokens_split_as_bytes_equal_the_token_set(text: str) -> None:
    vocab = RuleScanner.default()._vocab
    assert rules_module._vocab_tokens(text, vocab) == rules_module._tokens(text) & vocab
    small = frozenset({"don't", "one", "cut", "nobody", "s"})
    assert rules_module._vocab_tokens(text, small) == rules_module._tokens(text) & small
