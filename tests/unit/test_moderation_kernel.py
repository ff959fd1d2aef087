"""The moderation block of the compiled kernel (``_ngram_kernel.c``) against its Python references.

(``hash_bucket_sums``, at the end, against the hasher's ``bucket_sums`` it stands in for.)

``leet_fold`` and ``has_letter_triple`` replace per-character Python loops of the rule layer's
canonicaliser (issue 17); they must answer exactly as ``rules._fold_leet_python`` and
``rules._has_triple``, which stay as the fallback when the kernel is missing or was built before
these functions existed. The canonical text decides every rule hit and what the classifier reads,
so any difference would change scores (``test_moderation_output_digest.py`` checks those too).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.detectors import _ngram_kernel as kernel
from proxy.detectors.injection.features import FeatureConfig, FeatureHasher
from proxy.detectors.moderation import _moderation_kernel as kernel16
from proxy.detectors.moderation import rules
from proxy.detectors.moderation.classifier import ModerationClassifier, _fused_args

FAST = settings(max_examples=500, deadline=None)
# Letters, every leet character and digit, token breakers ("!", "|", "'", "-", "."), spaces, and
# Latin-1, BMP and astral code points (the three string kinds the kernel reads).
ALPHABET = "aeilostkx0123456789@$!|'-. \n\u00e9\u00df\u4e2d\U0001f600"
TEXTS = st.one_of(
    st.text(alphabet=ALPHABET, max_size=80),
    st.lists(
        st.sampled_from(["k1ll", "$h1t", "1488", "f1n@nce1", "lll", "aaa", "sh!t", "x", " ", "é", "日"])
    ).map("".join),
    st.text(max_size=40),
)


def test_the_moderation_functions_are_built() -> None:
    """A kernel built from this source has them; without them each scan pays ~30 µs more per 2 KB."""
    assert rules._fold_leet is kernel.leet_fold, "the kernel predates leet_fold: rebuild it"
    assert rules._has_letter_triple is kernel.has_letter_triple, "rebuild the kernel"


@FAST
@given(TEXTS)
def test_leet_fold_equals_the_python_reference(text: str) -> None:
    low = text.lower()
    assert kernel.leet_fold(low) == rules._fold_leet_python(low)


@FAST
@given(st.one_of(TEXTS, st.text(alphabet="aaabbbllliiizzzo0ZZé日\U0001f600 .", max_size=60)))
def test_squeeze_runs_equals_the_python_reference(text: str) -> None:
    """Both compiled versions: ``_ngram_kernel``'s, and ``_moderation_kernel``'s that the rules use."""
    assert rules._squeeze_runs is kernel16.squeeze_runs, "_moderation_kernel missing: rebuild it"
    low = text.lower()
    expected = rules._squeeze_runs_python(low)
    assert kernel.squeeze_runs(low) == expected
    assert kernel16.squeeze_runs(low) == expected
    assert kernel16.squeeze_runs(text) == rules._squeeze_runs_python(text)


@FAST
@given(TEXTS)
def test_has_letter_triple_equals_the_python_reference(text: str) -> None:
    low = text.lower()
    assert kernel.has_letter_triple(low) == rules._has_triple(low)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("k1ll", ("kill", "klll", "klll")),
        ("$h1t and 1488", ("shit and 1488", "shlt and 1488", "shlt")),
        ("h3llo", ("hello", None, None)),
        ("no digits", None),
        ("1488 -9", None),
        ("caf\u00e9 k1ll\U0001f600", ("caf\u00e9 kill\U0001f600", "caf\u00e9 klll\U0001f600", "klll")),
        (
            "x k1l!ng's, 1ll| and k1ll",
            ("x kil!ng's, ill| and kill", "x kll!ng's, lll| and klll", "kll!ng's lll| klll"),
        ),
    ],
)
def test_leet_fold_examples(text: str, expected: tuple[str, str | None, str | None] | None) -> None:
    assert kernel.leet_fold(text) == expected
    assert rules._fold_leet_python(text) == expected


def test_canonicalise_without_the_kernel_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    samples = ["I w4nt t0 k1lll mys3lf!!", "sh!t happens, kiiilll", "plain text", "f1n@nce1@acme", "k1l!ng"]
    fast = [(c, c.alt_pieces) for c in map(rules.canonicalise, samples)]
    monkeypatch.setattr(rules, "_fold_leet", rules._fold_leet_python)
    monkeypatch.setattr(rules, "_has_letter_triple", rules._has_triple)
    monkeypatch.setattr(rules, "_squeeze_runs", rules._squeeze_runs_python)
    assert [(c, c.alt_pieces) for c in map(rules.canonicalise, samples)] == fast


@FAST
@given(TEXTS)
def test_alt_pieces_hold_every_token_alt_adds(text: str) -> None:
    """The rules read ``text``'s tokens and ``alt_pieces``' in place of ``alt``'s: the same union."""
    canon = rules.canonicalise(text)
    if canon.alt is None:
        assert canon.alt_pieces is None
        return
    assert canon.alt_pieces is not None
    whole = rules._tokens(canon.text) | rules._tokens(canon.alt)
    assert rules._tokens(canon.text) | rules._tokens(canon.alt_pieces) == whole
    assert rules._tokens(canon.alt_pieces) <= rules._tokens(canon.alt)


# --- hash_bucket_sums: the moderation classifier's one-call hashing and summing ---------------------

SUM_ALPHABET = "ab z_09 .,'\t\n-é\u00df\u4e2d\U0001f600"


def test_the_classifier_uses_the_one_call_sums() -> None:
    assert ModerationClassifier.default()._fused is not None, "hash_bucket_sums missing: rebuild the kernel"


@FAST
@given(st.text(alphabet=SUM_ALPHABET, max_size=120))
def test_hash_bucket_sums_equal_the_hasher_sums(text: str) -> None:
    """Bit for bit (same hashes, same summation order), for the moderation model and other shapes."""
    clf = ModerationClassifier.default()
    cases = [(clf.hasher, clf._w)]
    for config, cols in ((FeatureConfig(bits=12, word_ngrams=(2,)), 3), (FeatureConfig(bits=10), 1)):
        hasher = FeatureHasher(config)
        weights = (
            np.random.default_rng(len(text)).standard_normal((1 << config.bits, cols)).astype(np.float32)
        )
        cases.append((hasher, weights if cols > 1 else weights[:, 0].copy()))
    for hasher, weights in cases:
        prepared = hasher.prepare(text)
        args = _fused_args(hasher)
        assert args is not None
        char_sums, word_sums, n_char, n_word = kernel.hash_bucket_sums(prepared, *args, weights)
        expected = hasher.bucket_sums(prepared, weights)
        char_k, word_k = hasher.config.smoothing
        assert (char_sums, word_sums) == expected[:2]
        assert (1.0 / (n_char + char_k) if n_char else 0.0) == expected[2]
        assert (1.0 / (n_word + word_k) if n_word else 0.0) == expected[3]


def test_classifier_scores_do_not_depend_on_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    clf = ModerationClassifier.default()
    texts = ["you are a worthless idiot", "kill -9 the process", "a benign sentence " * 40, ""]
    fast = [clf.score_list(t) for t in texts]
    monkeypatch.setattr(clf, "_fused", None)
    assert [clf.score_list(t) for t in texts] == fast


def test_a_request_cache_keeps_the_hasher_path_and_the_scores() -> None:
    """With the request's cache (prompts) hashes found there are used, same scores; the classifier
    reads the cache only (``_half_sums``: entries of its own cost more than they saved)."""
    clf = ModerationClassifier.default()
    text = "you are a worthless idiot and nobody likes you"
    prepared = clf.hasher.prepare(text)
    cache: dict = {}  # type: ignore[type-arg]
    clf.hasher.hash_prepared(prepared, cache)  # what another step leaves behind
    assert len(cache) == 1
    assert clf.score_list(text, cache) == clf.score_list(text)
    empty: dict = {}  # type: ignore[type-arg]
    assert clf.score_list(text, empty) == clf.score_list(text) and len(empty) == 0  # read, not written


# --- vocab_tokens: the rule vocabulary's words among a text's tokens ------------------------------

VOCAB_WORDS = st.sampled_from(["one", "kill", "don't", "you're", "1488", "14words", "a", "u", "kill's", "x9"])
TOKEN_TEXTS = st.one_of(
    st.lists(
        st.one_of(VOCAB_WORDS, st.sampled_from(["'", " ", "-", "9", "é", "日", "K", "\n", "s", "''"]))
    ).map("".join),
    st.text(alphabet="ak1o9ne' -é\U0001f600", max_size=60),
)


def test_vocab_tokens_is_built() -> None:
    assert rules._kernel_vocab_tokens is kernel.vocab_tokens, "vocab_tokens missing: rebuild the kernel"


@FAST
@given(TOKEN_TEXTS, st.frozensets(VOCAB_WORDS, min_size=1))
def test_vocab_tokens_equals_the_python_reference(text: str, vocab: frozenset[str]) -> None:
    assert rules._vocab_tokens(text, vocab) == rules._vocab_tokens_python(text, vocab)
    assert rules._vocab_tokens(text, vocab) == rules._tokens(text) & vocab


@FAST
@given(TEXTS)
def test_vocab_tokens_with_the_packaged_vocabulary(text: str) -> None:
    vocab = rules.RuleScanner.default()._vocab
    canon = rules.canonicalise(text).text
    assert rules._vocab_tokens(canon, vocab) == rules._vocab_tokens_python(canon, vocab)


# --- the prefilter gate on an aligned 1-as-l reading ----------------------------------------------

_GATE_PIECES = ["no one ", "nob1dy ", "1ikes you", "the wor1d ", "everyone ", "hates ", "you deserve to die"]
GATE_TEXTS = st.lists(
    st.sampled_from(
        [*_GATE_PIECES, "f1n@nce1", "1", "l", "i", " ", "!", "111", "ll", "k1ll", "se1f", "u", "."]
    ),
    max_size=25,
).map("".join)


@FAST
@given(GATE_TEXTS)
def test_aligned_alt_differs_only_by_l(text: str) -> None:
    canon = rules.canonicalise(text)
    if canon.alt_aligned:
        assert canon.alt is not None and len(canon.alt) == len(canon.text)
        assert all(a == t or (a, t) == ("l", "i") for a, t in zip(canon.alt, canon.text, strict=True))


@FAST
@given(GATE_TEXTS)
def test_the_aligned_gate_never_closes_where_the_plain_one_opens(text: str) -> None:
    canon = rules.canonicalise(text)
    if canon.alt is None or not canon.alt_aligned:
        return
    for pattern in rules.RuleScanner.default()._patterns:
        if pattern.may_match((canon.text, canon.alt)):
            assert pattern.may_match_aligned(canon.text, canon.alt), pattern.id
