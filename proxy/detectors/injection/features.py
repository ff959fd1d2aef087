"""Feature hashing for the embedded injection classifier (shared by runtime scoring and training).

Why hashing: no vocabulary file to ship or keep in sync, and a fixed-size weight vector. Character
3/4/5-grams and word 1/2-grams of the lower-cased, whitespace-collapsed text are hashed with a polynomial
rolling hash computed for *all* substrings at once with numpy (prefix sums weighted by powers of P^-1 mod
2^64), then mixed with the murmur3 finaliser and bucketed by the top ``bits`` bits -- deterministic across
processes, unlike Python's salted ``hash()``. Changing anything here changes the model's input: bump
``FEATURE_VERSION`` and retrain.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

try:  # built by setup.py when a C compiler is there; the numpy implementation below is the reference
    from proxy.detectors import _ngram_kernel
except ImportError:  # pragma: no cover - exercised only on installs without a compiler
    _ngram_kernel = None  # type: ignore[assignment]
    logging.getLogger(__name__).warning(
        "compiled n-gram hashing not built (no C compiler at install time?): the injection and "
        "moderation classifiers use the numpy implementation: same scores, ~1.5x the CPU per scan"
    )

FEATURE_VERSION = 2

U64 = npt.NDArray[np.uint64]
Buckets = npt.NDArray[np.intp]

_P = 0x100000001B3  # FNV-64 prime: odd, hence invertible modulo 2**64
_Q = pow(_P, -1, 2**64)
# 0-d arrays rather than numpy scalars: passed to a ufunc they skip a per-call conversion.
_M1 = np.array(0xFF51AFD7ED558CCD, dtype=np.uint64)
_M2 = np.array(0xC4CEB9FE1A85EC53, dtype=np.uint64)
_BIGRAM = np.array(0x9E3779B97F4A7C15, dtype=np.uint64)
_S33 = np.array(33, dtype=np.uint64)
_MAX_BITS = 33  # buckets are the top bits of a hash whose last fmix64 xor-shift is skipped (see _mix)
_mul, _xor, _rshift, _sub = np.multiply, np.bitwise_xor, np.right_shift, np.subtract
_ASCII_SPACE = "\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"  # str.split() whitespace in ASCII, besides " "
_WORD_CHAR = np.zeros(129, dtype=bool)  # by code point; index 128 stands for every non-ASCII one
for _c in "abcdefghijklmnopqrstuvwxyz0123456789_":
    _WORD_CHAR[ord(_c)] = True
_WORD_CHAR[128] = True  # non-ASCII letters (and symbols) are word characters
_WORD_BYTE = bytes(int(_WORD_CHAR[b]) for b in range(128)) + bytes(128)  # ASCII only: 1 = word char


def _mix(h: U64, tmp: U64, *, final_shift: bool = True) -> U64:
    """murmur3 fmix64, in place (``tmp``: scratch of the same length): spreads polynomial hashes so the
    top bits make good bucket indices.

    ``final_shift=False`` skips fmix64's last ``h ^= h >> 33``. Why: a bucket is the top ``bits`` bits
    of the hash, and for ``bits <= 33`` that xor only touches bits below them, so the buckets are the
    same and two passes over every n-gram are saved. Hashes that feed further arithmetic (the bigram
    combination) need the full finaliser. Constants are 0-d arrays and ``out`` is positional: a numpy
    scalar argument costs a conversion per call, which on 2 KB texts is a good part of the time."""
    _rshift(h, _S33, tmp)
    _xor(h, tmp, h)
    _mul(h, _M1, h)
    _rshift(h, _S33, tmp)
    _xor(h, tmp, h)
    _mul(h, _M2, h)
    if final_shift:
        _rshift(h, _S33, tmp)
        _xor(h, tmp, h)
    return h


def _powers(base: int, n: int) -> U64:
    """base**i mod 2**64 for i < n (numpy integer products wrap, which is exactly mod 2**64)."""
    out = np.full(n, base, dtype=np.uint64)
    out[0] = 1
    np.cumprod(out, out=out)
    out.flags.writeable = False
    return out


@functools.cache
def _window_powers(base: int, n: int) -> U64:
    """``_powers`` for a hasher's window: one read-only array per (base, n) in the whole process.

    Why: the injection and moderation hashers differ in ``bits`` but use the same window, so their
    P and P^-1 tables (128 KB each at 4096 characters) are equal; one shared copy keeps 256 KB less
    competing for the CPU caches between scans in the server. Only window-sized tables come from
    here: longer texts compute theirs per call (caching those would grow with every new length)."""
    return _powers(base, n)


@dataclass(frozen=True, slots=True)
class HashedText:
    """All n-gram buckets of one prepared string, with the positions needed to slice windows.

    Layout of ``buckets``: one block per char n-gram size (element j starts at offset j), then word
    unigrams, then word bigrams; word n-gram j spans ``[word_starts[j], word_ends[j + order - 1])``.
    """

    buckets: Buckets
    char_blocks: tuple[tuple[int, int], ...]  # (k, count) per char block, in buffer order
    word_starts: npt.NDArray[np.intp]
    word_ends: npt.NDArray[np.intp]
    n_uni: int
    n_bi: int
    length: int


HashCache = MutableMapping[tuple[str, tuple[int, ...], tuple[int, ...]], HashedText]
"""Mixed 64-bit n-gram hashes (``HashedText`` whose ``buckets`` are not yet cut to ``bits``; their top
``_MAX_BITS`` bits are fmix64's, see ``_mix``) per (prepared string, char n-gram sizes, word n-gram
sizes). Hashers that differ only in ``bits`` share entries: a bucket is the top ``bits`` bits of the
same mixed hash. One request's detectors share one
cache (``proxy.detectors.shared``) so a text hashed by the injection classifier is not hashed again by
the moderation classifier."""


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    bits: int = 18
    char_ngrams: tuple[int, ...] = (3, 4, 5)
    word_ngrams: tuple[int, ...] = (1, 2)
    window: int = 4096
    smoothing: tuple[int, int] = (300, 50)  # pseudo-counts for the char and word groups

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature_version": FEATURE_VERSION,
            "bits": self.bits,
            "char_ngrams": list(self.char_ngrams),
            "word_ngrams": list(self.word_ngrams),
            "window": self.window,
            "smoothing": list(self.smoothing),
        }


class FeatureHasher:
    """Maps a text to groups of bucket indices; immutable and thread-safe once built."""

    def __init__(self, config: FeatureConfig = FeatureConfig()) -> None:
        if not set(config.word_ngrams) <= {1, 2}:
            raise ValueError("word n-grams are limited to unigrams and bigrams")
        if not 1 <= config.bits <= _MAX_BITS:
            raise ValueError(f"bits must be within [1, {_MAX_BITS}]")
        self.config = config
        self._shift = np.array(64 - config.bits, dtype=np.uint64)
        self._shift_bits = 64 - config.bits
        # Shared by every hasher with this window (read-only); longer texts compute theirs per call.
        self._ppow = _window_powers(_P, 4 * config.window + 2)
        self._qpow = _window_powers(_Q, 4 * config.window + 2)
        salts = {
            key: np.array((0x51ED27 * (i + 1)) % 2**64, dtype=np.uint64)
            for i, key in enumerate(
                [f"c{n}" for n in config.char_ngrams] + [f"w{n}" for n in config.word_ngrams]
            )
        }
        self._char_salts = tuple((k, salts[f"c{k}"]) for k in config.char_ngrams)
        self._w1 = 1 in config.word_ngrams
        self._w2 = 2 in config.word_ngrams
        self._salt_w1 = salts.get("w1", _S33)
        self._salt_w2 = salts.get("w2", _S33)
        # The same salts as Python ints, in the compiled kernel's argument order.
        self._kernel_args = (
            config.char_ngrams,
            tuple(int(salt) for _, salt in self._char_salts),
            self._w1,
            self._w2,
            int(self._salt_w1),
            int(self._salt_w2),
        )

    @staticmethod
    def prepare(text: str) -> str:
        """Lower-case, collapse whitespace and pad with spaces (word boundaries at both ends)."""
        lowered = text.lower()
        if lowered.isascii() and "  " not in lowered and not any(c in lowered for c in _ASCII_SPACE):
            # Only single spaces: split + join would just strip the ends (several times cheaper).
            return " " + lowered.strip(" ") + " "
        return " " + " ".join(lowered.split()) + " "

    def groups(self, text: str, cache: HashCache | None = None) -> list[tuple[Buckets, float]]:
        """Bucket indices per feature group (chars, words) with that group's scale 1/(count + k).

        Only the first window is used (this is what training sees); the classifier handles longer
        texts with ``hash_prepared`` and per-window sums.
        """
        return self.groups_prepared(self.prepare(text)[: self.config.window + 2], cache)

    def groups_prepared(self, prepared: str, cache: HashCache | None = None) -> list[tuple[Buckets, float]]:
        """``groups`` for a string that is already prepared and cut to the window."""
        h = self.hash_prepared(prepared, cache)
        n_char = sum(count for _, count in h.char_blocks)
        n_word = h.n_uni + h.n_bi
        out: list[tuple[Buckets, float]] = []
        bounds = ((0, n_char), (n_char, n_char + n_word))
        for (lo, hi), pseudo in zip(bounds, self.config.smoothing, strict=True):
            if hi > lo:
                out.append((h.buckets[lo:hi], 1.0 / (hi - lo + pseudo)))
        return out

    def bucket_sums(
        self,
        prepared: str,
        weights: npt.NDArray[np.float32],
        cache: HashCache | None = None,
    ) -> tuple[tuple[float, ...], tuple[float, ...], float, float]:
        """A linear model's raw evidence for a prepared, window-cut string: per weight column, the sum of
        the char n-grams' bucket weights and of the word n-grams', then each group's scale (0.0 where
        the group is empty). ``weights``: float32, ``(2**bits,)`` or ``(2**bits, columns)``.

        Why one call: a classifier's logit is ``bias + char_sum * char_scale + word_sum * word_scale``;
        the compiled kernel sums straight from the table (no shifted bucket array, no gathered
        ``(n, columns)`` temporary). Sums are accumulated in float64 by both implementations, so they
        agree to rounding (summation order differs: ~1e-16 relative)."""
        mixed = self._lookup(prepared, cache)
        n_char = sum(count for _, count in mixed.char_blocks)
        n_word = mixed.n_uni + mixed.n_bi
        char_k, word_k = self.config.smoothing
        char_scale = 1.0 / (n_char + char_k) if n_char else 0.0
        word_scale = 1.0 / (n_word + word_k) if n_word else 0.0
        if _ngram_kernel is None:  # installs without a compiler
            char_sums, word_sums = self._bucket_sums_numpy(mixed.buckets, weights, n_char)
        else:
            char_sums, word_sums = _ngram_kernel.bucket_sums(mixed.buckets, self._shift_bits, weights, n_char)
        return char_sums, word_sums, char_scale, word_scale

    def _bucket_sums_numpy(
        self, mixed: Buckets, weights: npt.NDArray[np.float32], n_char: int
    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``bucket_sums``' sums with numpy: the reference, and the fallback without a compiler."""
        buckets = _rshift(mixed.view(np.uint64), self._shift).view(np.intp)
        columns = weights.shape[1] if weights.ndim == 2 else 1
        rows = weights.take(buckets, axis=0).reshape(len(buckets), columns)
        char_sums = rows[:n_char].sum(axis=0, dtype=np.float64)
        word_sums = rows[n_char:].sum(axis=0, dtype=np.float64)
        return tuple(char_sums.tolist()), tuple(word_sums.tolist())

    def hash_prepared(self, s: str, cache: HashCache | None = None) -> HashedText:
        """Hash every n-gram of a prepared string (reusing ``cache``'s mixed hashes when it has them)."""
        mixed = self._lookup(s, cache)
        buckets = _rshift(mixed.buckets.view(np.uint64), self._shift).view(np.intp)
        return HashedText(
            buckets,
            mixed.char_blocks,
            mixed.word_starts,
            mixed.word_ends,
            mixed.n_uni,
            mixed.n_bi,
            mixed.length,
        )

    def _lookup(self, s: str, cache: HashCache | None) -> HashedText:
        """The mixed hashes of ``s``: from ``cache`` when it has them, else computed (and left there)."""
        if cache is None:
            return self._mixed(s)
        key = (s, self.config.char_ngrams, self.config.word_ngrams)
        found = cache.get(key)
        return found if found is not None else cache.setdefault(key, self._mixed(s))

    def _mixed(self, s: str) -> HashedText:
        """Every n-gram's mixed 64-bit hash (stored as ``intp`` bits: ``buckets`` before the cut to ``bits``).

        Only the top ``_MAX_BITS`` bits of each value are fmix64's (see ``_mix``): enough for any bucket.
        The compiled kernel when it is built (one pass over the string, ~10x less CPU on 2 KB), else
        the numpy implementation; both give the same values (tests/unit/test_ngram_kernel.py)."""
        if _ngram_kernel is None:  # installs without a compiler
            return self._mixed_numpy(s)
        return self._mixed_compiled(s)

    def _mixed_compiled(self, s: str) -> HashedText:
        """``_mixed`` by ``proxy/detectors/_ngram_kernel.c``: its buffers are viewed, not copied."""
        hashes, starts, ends, n_uni, n_bi = _ngram_kernel.hash_ngrams(s, *self._kernel_args)
        n = len(s)
        char_blocks = tuple((k, n - k + 1) for k, _ in self._char_salts if n >= k)
        return HashedText(
            np.frombuffer(hashes, dtype=np.intp),  # bytes: read-only, as a HashCache entry must be
            char_blocks,
            np.frombuffer(starts, dtype=np.intp),
            np.frombuffer(ends, dtype=np.intp),
            n_uni,
            n_bi,
            n,
        )

    def _mixed_numpy(self, s: str) -> HashedText:
        """``_mixed`` with numpy only: the reference implementation, and the fallback without a compiler.

        All hashes go into one preallocated buffer and are mixed in place: fresh ~200 KB temporaries per
        numpy op (mmap + page faults) would otherwise dominate the cost. On a 2 KB text the ~40 numpy
        calls, not the arithmetic, are most of the time, so each one saved counts.
        """
        raw = np.frombuffer(s.encode("utf-32-le"), dtype=np.uint32)
        n = len(raw)
        ppow, qpow = self._ppow, self._qpow
        if n > len(ppow):
            ppow, qpow = _powers(_P, n), _powers(_Q, n)
        prefix = np.empty(n + 1, dtype=np.uint64)  # not zeros: only its first element needs clearing
        prefix[0] = 0
        body = prefix[1:]
        # uint32 * uint64 is computed in uint64; the running sum is then taken in place.
        _mul(raw, qpow[:n], body)
        np.cumsum(body, out=body)
        # Word characters, padded with a non-word character at both ends; every change between
        # neighbours is a word start or end, alternately (a table lookup and one comparison: masked
        # assignment and np.diff cost several times more). ASCII text (the usual case) looks the
        # table up with ``bytes.translate``: no index array to clip and convert.
        if s.isascii():
            is_word = np.frombuffer(b"\0" + s.encode("ascii").translate(_WORD_BYTE) + b"\0", dtype=bool)
        else:
            is_word = np.zeros(n + 2, dtype=bool)
            np.take(_WORD_CHAR, np.minimum(raw, 128), out=is_word[1 : n + 1])
        changes = np.flatnonzero(is_word[1:] != is_word[:-1])
        starts, ends = changes[0::2], changes[1::2]
        char_blocks = tuple((k, n - k + 1) for k, _ in self._char_salts if n >= k)
        n_char = sum(count for _, count in char_blocks)
        n_words = len(starts)
        n_uni = n_words if self._w1 else 0
        n_bi = max(n_words - 1, 0) if self._w2 else 0
        buf = np.empty(n_char + n_uni + n_bi, dtype=np.uint64)
        tmp = np.empty_like(buf)
        pos = 0
        for k, salt in self._char_salts:  # hash of s[i:i+k] = P^(i+k-1) * (prefix[i+k] - prefix[i])
            if n < k:
                continue
            count = n - k + 1
            seg = buf[pos : pos + count]
            _sub(prefix[k:], prefix[:count], seg)
            _mul(seg, ppow[k - 1 : n], seg)
            _xor(seg, salt, seg)
            pos += count
        if n_uni or n_bi:
            # Word j is s[starts[j]:ends[j]]: one gather of the prefix sums at every boundary, then
            # ends minus starts (the boundaries alternate), scaled by P^(end - 1).
            at = prefix.take(changes)
            unigrams = _sub(at[1::2], at[0::2])
            _mul(unigrams, ppow.take(ends - 1), unigrams)
            if n_uni:
                _xor(unigrams, self._salt_w1, buf[pos : pos + n_uni])
                pos += n_uni
            if n_bi:
                bigrams = buf[pos : pos + n_bi]
                bigrams[:] = unigrams[:-1]
                _mix(bigrams, tmp[:n_bi])
                _mul(bigrams, _BIGRAM, bigrams)
                np.add(bigrams, unigrams[1:], bigrams)
                _xor(bigrams, self._salt_w2, bigrams)
        _mix(buf, tmp, final_shift=False)
        buf.flags.writeable = False  # may be shared through a HashCache
        # Reinterpreted, not converted: hash_prepared views it as uint64 again before the shift.
        return HashedText(buf.view(np.intp), char_blocks, starts, ends, n_uni, n_bi, n)
