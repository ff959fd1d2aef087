"""Feature hashing for the embedded injection classifier (shared by runtime scoring and training).

Why hashing: no vocabulary file to ship or keep in sync, and a fixed-size weight vector. Character
3/4/5-grams and word 1/2-grams of the lower-cased, whitespace-collapsed text are hashed with a polynomial
rolling hash computed for *all* substrings at once with numpy (prefix sums weighted by powers of P^-1 mod
2^64), then mixed with the murmur3 finaliser and bucketed by the top ``bits`` bits -- deterministic across
processes, unlike Python's salted ``hash()``. Changing anything here changes the model's input: bump
``FEATURE_VERSION`` and retrain.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FEATURE_VERSION = 2

U64 = npt.NDArray[np.uint64]
Buckets = npt.NDArray[np.intp]

_P = 0x100000001B3  # FNV-64 prime: odd, hence invertible modulo 2**64
_Q = pow(_P, -1, 2**64)
_M1, _M2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)
_BIGRAM = np.uint64(0x9E3779B97F4A7C15)
_S33 = np.uint64(33)
_ASCII_SPACE = "\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"  # str.split() whitespace in ASCII, besides " "
_WORD_CHAR = np.zeros(129, dtype=bool)  # by code point; index 128 stands for every non-ASCII one
for _c in "abcdefghijklmnopqrstuvwxyz0123456789_":
    _WORD_CHAR[ord(_c)] = True
_WORD_CHAR[128] = True  # non-ASCII letters (and symbols) are word characters
_WORD_BYTE = bytes(int(_WORD_CHAR[b]) for b in range(128)) + bytes(128)  # ASCII only: 1 = word char


def _mix(h: U64) -> U64:
    """murmur3 fmix64, in place: spreads polynomial hashes so the top bits make good bucket indices."""
    tmp = np.empty_like(h)
    for mult in (_M1, _M2):
        np.right_shift(h, _S33, out=tmp)
        np.bitwise_xor(h, tmp, out=h)
        np.multiply(h, mult, out=h)
    np.right_shift(h, _S33, out=tmp)
    np.bitwise_xor(h, tmp, out=h)
    return h


def _powers(base: int, n: int) -> U64:
    """base**i mod 2**64 for i < n (numpy integer products wrap, which is exactly mod 2**64)."""
    out = np.full(n, base, dtype=np.uint64)
    out[0] = 1
    np.cumprod(out, out=out)
    out.flags.writeable = False
    return out


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
"""Mixed 64-bit n-gram hashes (``HashedText`` whose ``buckets`` are not yet cut to ``bits``) per
(prepared string, char n-gram sizes, word n-gram sizes). Hashers that differ only in ``bits`` share
entries: a bucket is the top ``bits`` bits of the same mixed hash. One request's detectors share one
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
        self.config = config
        self._shift = np.uint64(64 - config.bits)
        self._ppow = _powers(_P, 4 * config.window + 2)  # longer texts compute theirs per call
        self._qpow = _powers(_Q, 4 * config.window + 2)
        self._salts = {
            key: np.uint64((0x51ED27 * (i + 1)) % 2**64)
            for i, key in enumerate(
                [f"c{n}" for n in config.char_ngrams] + [f"w{n}" for n in config.word_ngrams]
            )
        }

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

    def split_prepared(
        self, prepared: str, cache: HashCache | None = None
    ) -> tuple[Buckets, int, float, float]:
        """``groups_prepared`` as one array: (all buckets, how many are char n-grams, char scale, word scale).

        Why: the classifiers gather every bucket's weight in one call and sum the two groups as slices
        of it; a gather and a list of groups per group cost a numpy call and Python work each time. The
        sums are over the same contiguous values as ``groups_prepared``'s, so results are identical.
        A scale is 0.0 where its group is empty."""
        h = self.hash_prepared(prepared, cache)
        n_char = sum(count for _, count in h.char_blocks)
        n_word = h.n_uni + h.n_bi
        char_k, word_k = self.config.smoothing
        return (
            h.buckets,
            n_char,
            1.0 / (n_char + char_k) if n_char else 0.0,
            1.0 / (n_word + word_k) if n_word else 0.0,
        )

    def hash_prepared(self, s: str, cache: HashCache | None = None) -> HashedText:
        """Hash every n-gram of a prepared string (reusing ``cache``'s mixed hashes when it has them)."""
        if cache is None:
            mixed = self._mixed(s)
        else:
            key = (s, self.config.char_ngrams, self.config.word_ngrams)
            found = cache.get(key)
            mixed = found if found is not None else cache.setdefault(key, self._mixed(s))
        buckets = np.right_shift(mixed.buckets.view(np.uint64), self._shift).view(np.intp)
        return HashedText(
            buckets,
            mixed.char_blocks,
            mixed.word_starts,
            mixed.word_ends,
            mixed.n_uni,
            mixed.n_bi,
            mixed.length,
        )

    def _mixed(self, s: str) -> HashedText:
        """Every n-gram's mixed 64-bit hash (stored as ``intp`` bits: ``buckets`` before the cut to ``bits``).

        All hashes go into one preallocated buffer and are mixed in place: fresh ~200 KB temporaries per
        numpy op (mmap + page faults) would otherwise dominate the cost.
        """
        raw = np.frombuffer(s.encode("utf-32-le"), dtype=np.uint32)
        n = len(raw)
        ppow, qpow = self._ppow, self._qpow
        if n > len(ppow):
            ppow, qpow = _powers(_P, n), _powers(_Q, n)
        prefix = np.zeros(n + 1, dtype=np.uint64)
        # uint32 * uint64 is computed in uint64: the same as widening first, one numpy call fewer.
        np.cumsum(np.multiply(raw, qpow[:n]), out=prefix[1:])
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
        char_blocks = tuple((k, n - k + 1) for k in self.config.char_ngrams if n >= k)
        n_char = sum(count for _, count in char_blocks)
        n_uni = len(starts) if 1 in self.config.word_ngrams else 0
        n_bi = max(len(starts) - 1, 0) if 2 in self.config.word_ngrams else 0
        buf = np.empty(n_char + n_uni + n_bi, dtype=np.uint64)
        pos = 0
        for k, count in char_blocks:  # hash of s[i:i+k] = P^(i+k-1) * (prefix[i+k] - prefix[i])
            seg = buf[pos : pos + count]
            np.subtract(prefix[k:], prefix[:count], out=seg)
            np.multiply(seg, ppow[k - 1 : n], out=seg)
            np.bitwise_xor(seg, self._salts[f"c{k}"], out=seg)
            pos += count
        if n_uni or n_bi:
            # take, not fancy indexing: the same elements, without the general indexing machinery
            unigrams = ppow.take(ends - 1) * (prefix.take(ends) - prefix.take(starts))
            if n_uni:
                np.bitwise_xor(unigrams, self._salts["w1"], out=buf[pos : pos + n_uni])
                pos += n_uni
            if n_bi:
                bigrams = _mix(unigrams[:-1].copy())
                np.multiply(bigrams, _BIGRAM, out=bigrams)
                np.add(bigrams, unigrams[1:], out=bigrams)
                np.bitwise_xor(bigrams, self._salts["w2"], out=buf[pos : pos + n_bi])
        _mix(buf)
        buf.flags.writeable = False  # may be shared through a HashCache
        # Reinterpreted, not converted: hash_prepared views it as uint64 again before the shift.
        return HashedText(buf.view(np.intp), char_blocks, starts, ends, n_uni, n_bi, n)
