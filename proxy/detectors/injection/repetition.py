"""Repetition collapse: a phrase said many times in a row is scored as if said once.

Why: the classifier's logit is a *mean* n-gram weight shrunk towards the prior by a pseudo-count
(``FeatureConfig.smoothing``), so a short text is weak evidence. Repeating a short text adds no
information but multiplies its n-gram count, which removes the shrinkage: "Can you help me? "
twelve times scored 0.9999 (once: 0.07), "hello " thirty times 0.52 (once: 0.004), above the
default threshold. Collapsing immediate repeats before hashing gives repeated text the score
of one copy, and leaves every text without such repeats exactly as it was (same string, same
hashes, same score).

What counts as a repeat: a unit of 1 to ``MAX_UNIT_WORDS`` words that occurs at least
``MIN_REPEATS`` times back to back ("very very" and "bye bye" are left alone); all copies but
the first are dropped, a trailing partial copy stays. Only the classifier sees the collapsed
text; the rules still see everything (an instruction repeated is still an instruction).

Cost: one hash per word and one gather of ``words x MAX_UNIT_WORDS`` comparisons (all unit
lengths at once); the exact search runs only for unit lengths that pass that count. That is ~80 µs
on 2 KB of prose, which almost never repeats, so the compiled kernel (``has_repeat`` in
``proxy/detectors/_ngram_kernel.c``) first answers whether there is any run to collapse, in a few
µs, comparing words by content; only texts with a run take the numpy search. Without the kernel
every text takes the numpy search (same output: tests/unit/test_injection_views_fast.py).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

try:  # built by setup.py when a C compiler is there (features.py warns when it is not)
    from proxy.detectors import _ngram_kernel
except ImportError:  # pragma: no cover - exercised only on installs without a compiler
    _ngram_kernel = None  # type: ignore[assignment]

MIN_REPEATS = 3
MAX_UNIT_WORDS = 32
Ids = npt.NDArray[np.int64]
_OFFSETS = np.arange(MAX_UNIT_WORDS + 1, dtype=np.int64)
#: per unit length p (index p - 1): equal pairs needed for MIN_REPEATS copies
_NEED = (MIN_REPEATS - 1) * np.arange(1, MAX_UNIT_WORDS + 1)
#: The compiled gate (None without the kernel, or with one built before it had ``has_repeat``).
_has_repeat = getattr(_ngram_kernel, "has_repeat", None)


def _candidates(ids: Ids) -> list[int]:
    """Unit lengths ``p`` for which ``ids[j] == ids[j + p]`` holds often enough for a run of
    ``MIN_REPEATS`` copies: a necessary condition, tested for every ``p`` in one gather."""
    n = len(ids)
    top = min(MAX_UNIT_WORDS, n // MIN_REPEATS)
    if top < 1:
        return []
    # Past the end: values no word hash takes (below the minimum), so they never compare equal.
    pad = np.concatenate((ids, ids.min() - 1 - _OFFSETS[:top]))
    grid = pad[_OFFSETS[: top + 1] + np.arange(n)[:, None]]  # grid[j, p] = ids[j + p]
    same = grid[:, 1:] == grid[:, :1]
    return (np.flatnonzero(same.sum(axis=0) >= _NEED[:top]) + 1).tolist()


def _collapse_period(words: list[str], ids: Ids, p: int) -> list[str] | None:
    """``words`` with runs of ``>= MIN_REPEATS`` copies of a ``p``-word unit reduced to one copy."""
    need = p * (MIN_REPEATS - 1)  # words[j] == words[j + p] for this many consecutive j
    same = ids[:-p] == ids[p:]
    if int(same.sum()) < need:
        return None
    # Runs of True in ``same``: starts and ends from the edges of the padded array.
    edges = np.diff(np.concatenate(([0], same.view(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    drop: list[tuple[int, int]] = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if e - s < need:
            continue
        copies = (e - s + p) // p  # the periodic region is words[s : e + p]
        drop.append((s + p, s + copies * p))
    if not drop:
        return None
    out: list[str] = []
    last = 0
    for lo, hi in drop:
        out.extend(words[last:lo])
        last = hi
    out.extend(words[last:])
    return out


def collapse_repeats(prepared: str) -> str:
    """``prepared`` (lower-cased, single spaces: ``FeatureHasher.prepare``) with repeats collapsed."""
    if _has_repeat is not None and not _has_repeat(prepared, MIN_REPEATS, MAX_UNIT_WORDS):
        return prepared  # no run of MIN_REPEATS copies of any unit: nothing to collapse
    words = prepared.split(" ")
    if len(words) < MIN_REPEATS or len(set(words)) == len(words):
        return prepared  # no word twice: no repeat (most short prompts stop here)
    changed = False
    while len(words) >= MIN_REPEATS:
        # Word identity by hash: a collision (2**-64) could only drop a copy of a near-repeat.
        ids = np.fromiter(map(hash, words), dtype=np.int64, count=len(words))
        for p in _candidates(ids):
            collapsed = _collapse_period(words, ids, p)
            if collapsed is not None:
                words, changed = collapsed, True
                break  # shorter now: a new repeat may appear ("a a a b" x3 -> "a b" x3)
        else:
            break
    return " ".join(words) if changed else prepared
