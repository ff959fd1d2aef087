"""Layer 2 of the moderation detector: per-category hashed n-gram logistic regression (one-vs-rest).

Why this design: same constraints as the injection classifier (ship inside the package, load in
milliseconds, score 2 KB in well under a millisecond, no ML runtime), so it reuses that package's feature
hashing (``proxy.detectors.injection.features``, compiled kernel or numpy) unchanged. One weight *row*
of 8 per bucket: scoring is one pass summing each n-gram's row, so eight categories cost about as much
as one.

Input is the rule layer's canonical text (normalised, lower-cased, leetspeak folded, letter runs
squeezed, allow-listed spans blanked) -- the training script featurises exactly the same way. Texts
longer than the feature window are scored per half-overlapping window and the maximum per category is
kept, so a harmful paragraph inside a long benign document is not diluted away.

Weights are stored as float16 in ``moderation_model.npz`` with a JSON meta record (feature config,
biases, default thresholds, provenance), written by ``scripts/train_moderation.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from proxy.detectors.linear_model import PackagedModel, feature_config, windowed_max

from ..injection.features import FeatureConfig, FeatureHasher, HashCache
from .rules import CLASSIFIER_CATEGORIES, RuleScanner

try:  # built by setup.py when a C compiler is there
    from proxy.detectors import _ngram_kernel as _kernel
except ImportError:  # pragma: no cover - installs without a compiler
    _kernel = None  # type: ignore[assignment]
try:  # ours, also optional (setup.py): the sums from the float16 table
    from . import _moderation_kernel as _kernel16
except ImportError:  # pragma: no cover - installs without a compiler
    _kernel16 = None  # type: ignore[assignment]

MODEL_FILE = "moderation_model.npz"


def _sigmoid(z: float) -> float:
    """``1 / (1 + exp(-z))`` on a clipped logit (|z| <= 60, so exp cannot overflow)."""
    return 1.0 / (1.0 + math.exp(-z))


_FusedArgs = tuple[tuple[int, ...], tuple[int, ...], bool, bool, int, int, int]
_Sums = tuple[tuple[float, ...], tuple[float, ...], float, float]


def _half_table(weights: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float16], float] | None:
    """The weights as float16 and their largest magnitude, for ``_moderation_kernel``; None when
    that kernel is missing, the table is not 8 columns wide, or a weight is not a float16 value.

    Why only then: the kernel's sums equal the float32 table's bit for bit because float16 ->
    float32 is exact (the packaged model is stored as float16, so it always qualifies); a table
    trained or loaded otherwise keeps the float32 path."""
    if _kernel16 is None or weights.ndim != 2 or weights.shape[1] != 8:
        return None
    half = weights.astype(np.float16)
    if not np.array_equal(half.astype(np.float32), weights):
        return None
    half.flags.writeable = False
    return half, float(np.abs(weights).max(initial=0.0))


def _fused_args(hasher: FeatureHasher) -> _FusedArgs | None:
    """``hash_bucket_sums``' arguments between the text and the weights, or None without that
    function (no compiler, or a kernel built before it): windows then go through the hasher."""
    args = getattr(hasher, "_kernel_args", None)
    shift = getattr(hasher, "_shift_bits", None)
    if getattr(_kernel, "hash_bucket_sums", None) is None or args is None or shift is None:
        return None
    sizes, salts, w1, w2, salt_w1, salt_w2 = args
    return (tuple(sizes), tuple(salts), bool(w1), bool(w2), int(salt_w1), int(salt_w2), int(shift))


@dataclass(frozen=True, slots=True)
class ModelMeta:
    """Everything besides the weights; written by scripts/train_moderation.py."""

    features: FeatureConfig
    categories: tuple[str, ...]
    biases: tuple[float, ...]
    thresholds: Mapping[str, Mapping[str, float]] = field(default_factory=lambda: MappingProxyType({}))
    info: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ModelMeta:
        config = feature_config(raw["features"])
        categories = tuple(str(c) for c in raw["categories"])
        if categories != CLASSIFIER_CATEGORIES:
            raise ValueError(f"model categories {categories} != {CLASSIFIER_CATEGORIES}")
        thresholds = {
            str(layer): MappingProxyType({str(c): float(v) for c, v in per_cat.items()})
            for layer, per_cat in raw.get("thresholds", {}).items()
        }
        return cls(
            config,
            categories,
            tuple(float(b) for b in raw["biases"]),
            MappingProxyType(thresholds),
            MappingProxyType(dict(raw.get("info", {}))),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": self.features.to_dict(),
            "categories": list(self.categories),
            "biases": list(self.biases),
            "thresholds": {k: dict(v) for k, v in self.thresholds.items()},
            "info": dict(self.info),
        }


class ModerationClassifier(PackagedModel):
    """Loaded once, then immutable: safe to share across threads."""

    MODEL_FILE = MODEL_FILE

    def __init__(self, weights: npt.NDArray[np.floating[Any]], meta: ModelMeta) -> None:
        expected = (1 << meta.features.bits, len(meta.categories))
        if weights.shape != expected:
            raise ValueError(f"weights shape {weights.shape} != {expected}")
        if len(meta.biases) != len(meta.categories):
            raise ValueError("one bias per category expected")
        # Own copy; float32 gathers are faster than float16, with cold caches too: keeping the file's
        # float16 (2 MB, not 4) and upcasting the gathered rows gives equal scores, but numpy's float16
        # conversion of ~7k x 8 values costs ~100 µs, far more than the misses it saves (2 KB gather:
        # 20 -> 119 µs warm, 33 -> 137 cold). Rows are already contiguous (a row is one bucket's 8 weights).
        self._w = np.array(weights, dtype=np.float32)
        self._w.flags.writeable = False
        self.meta = meta
        self._hasher = FeatureHasher(meta.features)
        self._fused = _fused_args(self._hasher)
        # The float16 copy (2 MB) the hot path reads: ``_half_sums``. ``_w`` stays the reference.
        self._half = _half_table(self._w)

    @classmethod
    def parse_meta(cls, raw: Mapping[str, Any]) -> ModelMeta:
        return ModelMeta.from_dict(raw)

    @property
    def hasher(self) -> FeatureHasher:
        return self._hasher

    def logits_canonical(self, canonical: str, cache: HashCache | None = None) -> npt.NDArray[np.float64]:
        """Log-odds per category (``CATEGORIES`` order) for text already canonicalised by the rules.

        ``cache``: the request's shared n-gram hashes (``proxy.detectors.shared``): canonical text of
        ordinary prose prepares to the same string the injection classifier hashed."""
        window = self.meta.features.window
        if len(canonical) <= window:
            return self._window_logits(canonical, cache)
        # Each window through the shared cache too (it used to be hashed afresh every time), and left
        # there: the injection classifier cuts a long prompt into the same windows.
        best = windowed_max(canonical, window, lambda part: self._window_list(part, cache, store=True))
        return np.array(best, dtype=np.float64)

    def _window_logits(self, text: str, cache: HashCache | None = None) -> npt.NDArray[np.float64]:
        return np.array(self._window_list(text, cache), dtype=np.float64)

    def _window_list(self, text: str, cache: HashCache | None = None, store: bool = False) -> list[float]:
        """One window's logits as Python floats: the per-category weight sums of the char and word
        n-grams (``FeatureHasher.bucket_sums``, one pass over the weight rows), scaled, plus the biases.

        Why lists: the eight-element arithmetic after the sums (scale, add the biases, the sigmoid)
        cost a numpy call of ~1 µs each; Python floats are float64, as the sums are."""
        prepared = self._hasher.prepare(text)[: self.meta.features.window + 2]
        return self._prepared_list(prepared, cache, store)

    def _prepared_list(
        self, prepared: str, cache: HashCache | None = None, store: bool = False
    ) -> list[float]:
        """``_window_list`` of a text already prepared and cut to the window."""
        if self._half is not None:
            char_sums, word_sums, char_scale, word_scale = self._half_sums(prepared, cache, store)
        elif self._fused is None or cache is not None:  # a request's text: hashes shared through the cache
            char_sums, word_sums, char_scale, word_scale = self._hasher.bucket_sums(prepared, self._w, cache)
        else:  # answers and stream windows (no cache): nobody else reads their hashes
            char_sums, word_sums, char_scale, word_scale = self._fused_sums(prepared)
        return [
            bias + c * char_scale + w * word_scale
            for bias, c, w in zip(self.meta.biases, char_sums, word_sums, strict=True)
        ]

    def _fused_sums(self, prepared: str) -> tuple[tuple[float, ...], tuple[float, ...], float, float]:
        """``FeatureHasher.bucket_sums(prepared, weights)`` by the kernel's ``hash_bucket_sums``: the
        same sums bit for bit (tests/unit/test_moderation_kernel.py) in one call (~5 µs less per 2 KB:
        no bytes objects, numpy views or Python between hashing and summing). Only for texts scored
        without the request's cache (answers, stream windows): a prompt's hashes go through the cache,
        where the injection step may have left them or may find them."""
        assert self._fused is not None and _kernel is not None
        sizes, salts, w1, w2, salt_w1, salt_w2, shift = self._fused
        char_sums, word_sums, n_char, n_word = _kernel.hash_bucket_sums(
            prepared, sizes, salts, w1, w2, salt_w1, salt_w2, shift, self._w
        )
        char_k, word_k = self.meta.features.smoothing
        char_scale = 1.0 / (n_char + char_k) if n_char else 0.0
        word_scale = 1.0 / (n_word + word_k) if n_word else 0.0
        return char_sums, word_sums, char_scale, word_scale

    def _half_sums(self, prepared: str, cache: HashCache | None, store: bool = False) -> _Sums:
        """``FeatureHasher.bucket_sums(prepared, self._w, cache)`` from the float16 table
        (``_moderation_kernel.c``): equal bit for bit (tests/unit/test_moderation_kernel16.py), with
        half the table competing for the CPU caches.

        ``cache``: read; written only with ``store`` (the windows of a long text). Hashes an earlier
        step (injection) left for this very string are summed as they are; otherwise the kernel
        hashes and sums in one call and keeps nothing. Why not leave ours for a single window:
        making the cache entry (three buffers, numpy views, a ``HashedText``) cost ~12 µs per 2 KB,
        and it is rarely read: the injection step usually runs first, and a pii step between the
        two changes the prompt (redacted addresses) so the strings differ."""
        assert self._half is not None and _kernel16 is not None
        half, bound = self._half
        hasher = self._hasher
        features = self.meta.features
        char_k, word_k = features.smoothing
        if cache is None:
            mixed = None
        elif store:
            mixed = hasher._lookup(prepared, cache)  # computed and left there on a miss
        else:
            mixed = cache.get((prepared, features.char_ngrams, features.word_ngrams))
        if mixed is None:
            sizes, salts, w1, w2, salt_w1, salt_w2 = hasher._kernel_args
            char_sums, word_sums, n_char, n_word = _kernel16.hash_sums16(
                prepared, sizes, salts, w1, w2, salt_w1, salt_w2, hasher._shift_bits, half, bound
            )
        else:
            n_char = sum(count for _, count in mixed.char_blocks)
            n_word = mixed.n_uni + mixed.n_bi
            char_sums, word_sums = _kernel16.sums16(mixed.buckets, hasher._shift_bits, half, n_char, bound)
        char_scale = 1.0 / (n_char + char_k) if n_char else 0.0
        word_scale = 1.0 / (n_word + word_k) if n_word else 0.0
        return char_sums, word_sums, char_scale, word_scale

    def _ascii_scores(self, canonical: str) -> list[float] | None:
        """``score_list`` of one window by ``_moderation_kernel.ascii_scores16`` (prepare, hash, sum,
        logits and sigmoid in C: ~6 µs less per scan than the Python around ``_half_sums``; equal
        bit for bit, tests/unit/test_moderation_kernel16.py); None when ``canonical`` is not ASCII."""
        assert self._half is not None and _kernel16 is not None
        half, bound = self._half
        hasher, features = self._hasher, self.meta.features
        sizes, salts, w1, w2, salt_w1, salt_w2 = hasher._kernel_args
        char_k, word_k = features.smoothing
        return _kernel16.ascii_scores16(
            canonical,
            sizes,
            salts,
            w1,
            w2,
            salt_w1,
            salt_w2,
            hasher._shift_bits,
            half,
            bound,
            self.meta.biases,
            char_k,
            word_k,
            features.window,
        )

    def scores_canonical(self, canonical: str, cache: HashCache | None = None) -> npt.NDArray[np.float64]:
        """Probability-like scores in [0, 1] per category for canonical text."""
        return np.array(self.score_list(canonical, cache), dtype=np.float64)

    def score_list(self, canonical: str, cache: HashCache | None = None) -> list[float]:
        """``scores_canonical`` as Python floats (``CATEGORIES`` order): what the detector consumes.

        Short texts (the common case) stay in Python floats from the reductions on; longer ones take
        the per-window maximum of ``logits_canonical``."""
        features = self.meta.features
        if len(canonical) <= features.window:
            if self._half is None:
                logits = self._window_list(canonical, cache)
            else:  # without hashes to use from the cache, all of it in one call
                prepared = None
                if cache:  # an earlier step's hashes of this very string, if it left them
                    prepared = self._hasher.prepare(canonical)[: features.window + 2]
                    if (prepared, features.char_ngrams, features.word_ngrams) not in cache:
                        prepared = None
                scores = self._ascii_scores(canonical) if prepared is None else None
                if scores is not None:
                    return scores
                logits = (
                    self._prepared_list(prepared, cache) if prepared else self._window_list(canonical, cache)
                )
        else:
            logits = self.logits_canonical(canonical, cache).tolist()
        return [_sigmoid(min(max(z, -60.0), 60.0)) for z in logits]

    def scores(self, text: str) -> Mapping[str, float]:
        """Convenience: canonicalise raw ``text`` like the detector does (allow-listed spans blanked)."""
        rules = RuleScanner.default().scan(text)
        values = self.scores_canonical(rules.classifier_text)
        return MappingProxyType({c: float(v) for c, v in zip(self.meta.categories, values, strict=True)})
