"""``_moderation_kernel`` (the classifier's sums from its float16 table) against ``_ngram_kernel``.

The moderation classifier reads its weights from a float16 copy of the table (2 MB instead of
4 MB) through its own compiled module; the sums, and so every score, must equal those of the
float32 table bit for bit: ``hash_sums16`` those of ``hash_bucket_sums``, ``sums16`` those of
``bucket_sums``, with four accumulators (exact below the bound, see the C file's header) and with
one (the reference's order).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.detectors import _ngram_kernel as kernel
from proxy.detectors.moderation import _moderation_kernel as kernel16
from proxy.detectors.moderation import classifier as classifier_module
from proxy.detectors.moderation.classifier import ModerationClassifier, _half_table
from proxy.detectors.moderation.rules import RuleScanner
from proxy.detectors.shared import ScanCache

FAST = settings(max_examples=300, deadline=None)
TEXTS = st.one_of(
    st.text(alphabet="abcdefghij klmnop0123_'.\n\u00e9\u4e2d\U0001f600", max_size=300),
    st.text(max_size=60),
    st.lists(st.sampled_from(["kill ", "you ", "hate ", "the ", "invoice ", "é ", "  "]), max_size=80).map(
        "".join
    ),
)
ENDLESS = 1e300  # a bound no text stays under: one accumulator, the reference's order


def _clf() -> ModerationClassifier:
    return ModerationClassifier.default()


def _args(clf: ModerationClassifier) -> tuple[tuple[int, ...], tuple[int, ...], bool, bool, int, int, int]:
    sizes, salts, w1, w2, salt_w1, salt_w2 = clf.hasher._kernel_args
    return sizes, salts, w1, w2, salt_w1, salt_w2, clf.hasher._shift_bits


def test_the_classifier_reads_the_float16_table() -> None:
    """Built and in use: without it every scan pays ~6 µs more per 2 KB (rebuild the module)."""
    half = _clf()._half
    assert half is not None, "_moderation_kernel missing or the table is not float16: rebuild it"
    assert half[0].dtype == np.float16 and half[0].shape == (1 << 17, 8)


@FAST
@given(TEXTS)
def test_hash_sums16_equal_hash_bucket_sums(text: str) -> None:
    clf = _clf()
    assert clf._half is not None
    half, bound = clf._half
    prepared = clf.hasher.prepare(text)
    expected = kernel.hash_bucket_sums(prepared, *_args(clf), clf._w)
    assert kernel16.hash_sums16(prepared, *_args(clf), half, bound) == expected
    assert kernel16.hash_sums16(prepared, *_args(clf), half, ENDLESS) == expected


@FAST
@given(TEXTS)
def test_sums16_equal_bucket_sums(text: str) -> None:
    clf = _clf()
    assert clf._half is not None
    half, bound = clf._half
    prepared = clf.hasher.prepare(text)
    hashes, _, _, n_uni, n_bi = kernel.hash_ngrams(prepared, *clf.hasher._kernel_args)
    n_char = len(hashes) // 8 - n_uni - n_bi
    shift = clf.hasher._shift_bits
    expected = kernel.bucket_sums(hashes, shift, clf._w, n_char)
    assert kernel16.sums16(hashes, shift, half, n_char, bound) == expected
    assert kernel16.sums16(hashes, shift, half, n_char, ENDLESS) == expected


@pytest.mark.parametrize("simd", [True, False])
def test_a_random_float16_table_sums_equal_in_any_order(simd: bool) -> None:
    """The exactness argument on a table with the extremes float16 has (subnormals, ~99, signs),
    on the x86 path and on the portable one (its own float16 conversion)."""
    rng = np.random.default_rng(17)
    bits = 12
    half = (rng.standard_normal((1 << bits, 8)) * 30).astype(np.float16)
    half[:64] = np.float16(2.0**-24) * rng.integers(-3, 4, size=(64, 8))  # subnormals
    half[64:80] = np.float16(99.3125)
    weights = half.astype(np.float32)
    hashes = rng.integers(0, 2**63, size=20_000, dtype=np.uint64) * 2 + 1
    shift = 64 - bits
    bound = float(np.abs(weights).max())
    before = kernel16.set_simd(simd)
    try:
        for n_char in (0, 1, 3, 7, 12_345, 20_000):
            expected = kernel.bucket_sums(hashes.tobytes(), shift, weights, n_char)
            assert kernel16.sums16(hashes.tobytes(), shift, half, n_char, bound) == expected
            assert kernel16.sums16(hashes.tobytes(), shift, half, n_char, ENDLESS) == expected
    finally:
        kernel16.set_simd(before)


def test_a_table_that_is_not_float16_keeps_the_float32_path() -> None:
    weights = np.full((1 << 17, 8), 0.1, dtype=np.float32)  # 0.1 has no exact float16
    assert _half_table(weights) is None
    assert _half_table(np.zeros((1 << 17, 4), dtype=np.float32)) is None
    half = _half_table(np.full((1 << 17, 8), -0.5, dtype=np.float32))
    assert half is not None and half[1] == 0.5


def test_wrong_arguments_raise() -> None:
    clf = _clf()
    assert clf._half is not None
    half, bound = clf._half
    with pytest.raises(ValueError, match="float16"):
        kernel16.hash_sums16(" a ", *_args(clf), clf._w, bound)
    with pytest.raises(ValueError, match="shift"):
        kernel16.sums16(b"", 5, half, 0, bound)
    with pytest.raises(ValueError, match="n_char"):
        kernel16.sums16(b"\0" * 8, clf.hasher._shift_bits, half, 2, bound)
    with pytest.raises(TypeError):
        kernel16.hash_sums16(b"not a str", *_args(clf), half, bound)  # type: ignore[arg-type]


@pytest.mark.parametrize("cached", [False, True])
def test_scores_equal_the_float32_path(cached: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [
        "I will kill you, you worthless idiot",
        "Please reply to finance1@example.com about invoice 5079 " * 40,
        "x" * 9000 + " hate " * 300,  # several windows
        "",
    ]
    clf = _clf()
    fast = [clf.score_list(t, ScanCache().hashes if cached else None) for t in texts]
    reference = ModerationClassifier(clf._w, clf.meta)
    monkeypatch.setattr(reference, "_half", None)
    assert [reference.score_list(t, ScanCache().hashes if cached else None) for t in texts] == fast


ASCII_TEXTS = st.one_of(
    st.text(alphabet="abcXYZ kill you 019_'.!\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x00~", max_size=300),
    st.lists(st.sampled_from(["Kill ", "you", "  ", "\t", "HATE ", " the\n", "x"]), max_size=60).map("".join),
)


def _reference_scores(clf: ModerationClassifier, text: str) -> list[float]:
    """``score_list``'s window path without the one-call kernel: ``_window_list`` and the sigmoid."""
    logits = clf._window_list(text)
    return [classifier_module._sigmoid(min(max(z, -60.0), 60.0)) for z in logits]


@FAST
@given(ASCII_TEXTS)
def test_ascii_scores16_equal_the_python_path(text: str) -> None:
    clf = _clf()
    assert clf._ascii_scores(text) == _reference_scores(clf, text)
    assert clf.score_list(text) == _reference_scores(clf, text)


def test_ascii_scores16_on_real_texts_and_edges() -> None:
    clf = _clf()
    window = clf.meta.features.window
    texts = [
        "",
        " ",
        "\t\n",
        "I will KILL you, you worthless idiot!!",
        "  leading and trailing  ",
        "a" * window,  # exactly one window: prepared is window + 2 characters
        ("word " * 2000)[:window],
    ]
    for text in texts:
        assert clf._ascii_scores(text) == _reference_scores(clf, text), text[:40]
    assert clf._ascii_scores("caf\u00e9 au lait") is None  # not ASCII: prepared in Python
    assert clf.score_list("caf\u00e9 au lait") == _reference_scores(clf, "caf\u00e9 au lait")


@FAST
@given(TEXTS)
def test_the_sums_are_the_same_with_and_without_simd(text: str) -> None:
    """The x86 paths (AVX-512 hashing, F16C sums, when the CPU has them) and the portable C that
    other CPUs run give the same sums as ``_ngram_kernel``; ``set_simd`` switches between them."""
    clf = _clf()
    assert clf._half is not None
    half, bound = clf._half
    prepared = clf.hasher.prepare(text) + text.lower()  # every string kind, long and short
    expected = kernel.hash_bucket_sums(prepared, *_args(clf), clf._w)
    before = kernel16.set_simd(False)
    try:
        assert kernel16.hash_sums16(prepared, *_args(clf), half, bound) == expected
        assert kernel16.hash_sums16(prepared, *_args(clf), half, ENDLESS) == expected
        assert clf._ascii_scores(prepared.encode("ascii", "replace").decode()) == _reference_scores(
            clf, prepared.encode("ascii", "replace").decode()
        )
    finally:
        kernel16.set_simd(before)
    assert kernel16.hash_sums16(prepared, *_args(clf), half, bound) == expected


def test_set_simd_reports_the_previous_setting() -> None:
    before = kernel16.set_simd(False)
    try:
        assert kernel16.set_simd(True) is False
    finally:
        kernel16.set_simd(before)


# --- literals_present and the rules' one-pass prefilter gate (rules._LiteralScan) -----------------

LITERALS = ["no one ", "nobody ", "noone ", "the world ", "you deserve to ", "yo", "you ", "xy"]
GATE_TEXTS = st.one_of(
    st.lists(st.sampled_from([*LITERALS, "one", " ", "no", "body", "deserve", "caf\u00e9", "u", "\n"])).map(
        "".join
    ),
    st.text(alphabet="noe ybdywrlthu", max_size=200),
)


def _buckets(literals: list[str]) -> tuple[bytes, tuple[tuple[str, ...], ...]]:
    by_pair: dict[str, list[str]] = {}
    for lit in literals:
        by_pair.setdefault(lit[:2], []).append(lit)
    table = bytearray(1 << 16)
    for slot, pair in enumerate(by_pair, start=1):
        table[ord(pair[0]) << 8 | ord(pair[1])] = slot
    return bytes(table), tuple(tuple(v) for v in by_pair.values())


@FAST
@given(GATE_TEXTS)
def test_literals_present_finds_exactly_the_literals_in_the_text(text: str) -> None:
    table, buckets = _buckets(LITERALS)
    found = kernel16.literals_present(text, table, buckets)
    if not text.isascii():
        assert found is None
        return
    assert found == {lit for lit in LITERALS if lit in text}


def test_literals_present_rejects_bad_arguments() -> None:
    table, buckets = _buckets(LITERALS)
    with pytest.raises(ValueError, match="two characters"):
        kernel16.literals_present("x", table, (("a",),))
    with pytest.raises(ValueError, match="wrong size"):
        kernel16.literals_present("x", b"\0", buckets)


@FAST
@given(st.lists(GATE_TEXTS, min_size=1, max_size=2))
def test_the_rules_literal_gate_never_rules_out_a_possible_match(texts: list[str]) -> None:
    """Where the one-pass gate says no, the pattern's own prefilter says no as well (both forms)."""
    scanner = RuleScanner.default()
    for pattern, gate in zip(scanner._patterns, scanner._literal_scans, strict=True):
        if gate is not None and not gate.may_match(texts):
            assert not pattern.may_match(texts)
            if len(texts) == 2:
                assert not pattern.may_match_aligned(texts[0], texts[1])


def test_rule_results_are_the_same_without_the_literal_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [
        "Honestly, no one likes you and everyone hates you.",
        "You deserve to suffer for this.",
        "Only one of the two invoices was paid; nobody told us why.",
        "n0 0ne l1kes y0u",  # folded: a 1-as-l reading
        "The world would be better off without you, caf\u00e9 owner",  # not ASCII: no gate
        "One more thing: the world is big. " * 40,
    ]
    scanner = RuleScanner.default()
    assert any(gate is not None for gate in scanner._literal_scans)
    gated = [scanner.scan(t) for t in texts]
    monkeypatch.setattr(scanner, "_literal_scans", (None,) * len(scanner._patterns))
    assert [scanner.scan(t) for t in texts] == gated
    assert any(result.hits for result in gated)


def test_a_cache_holding_other_texts_gives_the_same_scores() -> None:
    """A request cache with another step's entry (a miss for this text), with this text's entry
    (a hit), or empty: the same scores as without a cache, and nothing added to it."""
    clf = _clf()
    text = "you are a worthless idiot and nobody likes you"
    expected = _reference_scores(clf, text)
    other: dict = {}  # type: ignore[type-arg]
    clf.hasher.hash_prepared(clf.hasher.prepare("an unrelated prompt"), other)
    assert clf.score_list(text, other) == expected and len(other) == 1
    hit: dict = {}  # type: ignore[type-arg]
    clf.hasher.hash_prepared(clf.hasher.prepare(text), hit)
    assert clf.score_list(text, hit) == expected and len(hit) == 1
    assert clf.score_list(text, {}) == expected
