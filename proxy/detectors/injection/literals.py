"""Which of many literal strings occur in a text, in one vectorised pass.

Why: the heuristic rules are gated by ~80 anchor literals, and checking them with one ``in`` each
cost ~100 µs per 2 KB of prose, twice per scan (the text and its rot13 probe): more than the
classifier (now once: the index also holds the anchors' rot13s, see ``HeuristicScanner``).
Here every 4-byte window of the UTF-8 text is read as one integer (numpy, one aligned copy),
hashed into a small table that marks the literals' first four bytes, and only the few windows that
hit are confirmed in Python with ``bytes.startswith``. Literals shorter than four bytes are rare
and use ``in``. The answer is exact: a hash collision only costs one failed confirmation.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from proxy.detectors import multiscan

_BITS = 16
_MULT = np.uint32(0x9E3779B1)  # Knuth's multiplicative hash: the top bits of key * MULT spread well
_SHIFT = np.uint32(32 - _BITS)
_MULT0, _SHIFT0 = np.array(_MULT), np.array(_SHIFT)  # 0-d arrays: no scalar conversion per ufunc call
_U4 = np.dtype("<u4")  # built once: a dtype string is parsed again on every use


_BY_FREQUENCY = " etaoinshrdlcumwfgypbvk"  # the commonest characters of English prose, commonest first


def rarest_char(literal: str) -> str:
    """The character of ``literal`` least likely in prose: any not in ``_BY_FREQUENCY`` (``|``,
    ``j``, a digit), else the latest in it. Finding it is a necessary condition for the literal."""
    return max(literal, key=lambda c: _BY_FREQUENCY.find(c) if c in _BY_FREQUENCY else len(_BY_FREQUENCY))


def _slot(key: int) -> int:
    return ((key * int(_MULT)) & 0xFFFFFFFF) >> int(_SHIFT)


class LiteralIndex:
    """Immutable once built (safe to share across threads): ``present(text)`` -> literals in ``text``."""

    def __init__(self, literals: Iterable[str]) -> None:
        unique = sorted(set(literals))
        if any(not lit for lit in unique):
            raise ValueError("literals must be non-empty")
        encoded = [(lit, lit.encode("utf-8", "surrogatepass")) for lit in unique]
        self._short = tuple((lit, rarest_char(lit)) for lit, raw in encoded if len(raw) < 4)
        by_key: dict[int, list[tuple[bytes, str]]] = {}
        for lit, raw in encoded:
            if len(raw) >= 4:
                by_key.setdefault(int.from_bytes(raw[:4], "little"), []).append((raw, lit))
        self._by_key = {k: tuple(v) for k, v in by_key.items()}
        self._table = np.zeros(1 << _BITS, dtype=bool)
        for key in self._by_key:
            self._table[_slot(key)] = True
        self._table.flags.writeable = False
        # One Hyperscan pass when the wheel is there (~6x faster, same answer: issue 17).
        self._fast = multiscan.literal_set(unique)

    def present(self, text: str) -> set[str]:
        """The literals that occur in ``text`` (case-sensitive: lower-case the text for folded ones)."""
        if self._fast is not None:
            return self._fast.present(text)
        return self.present_numpy(text)

    def present_numpy(self, text: str) -> set[str]:
        """``present`` without Hyperscan: the numpy window hash (module docstring)."""
        # A literal's rarest character first: one memchr (~0.1 µs per 2 KB) rules out one holding a
        # character prose lacks ("<|"), where the substring search costs ~2 µs.
        found = {lit for lit, guard in self._short if guard in text and lit in text}
        if not self._by_key:
            return found
        raw = text.encode("utf-8", "surrogatepass")
        if len(raw) < 4:
            return found
        # Every 4-byte window as a little-endian uint32 (one aligned copy: numpy would otherwise copy
        # the unaligned view once per operation on it).
        keys = np.array(np.ndarray((len(raw) - 3,), dtype=_U4, buffer=raw, strides=(1,)))
        slots = np.multiply(keys, _MULT0)
        np.right_shift(slots, _SHIFT0, slots)
        hits = np.take(self._table, slots).nonzero()[0]
        # Confirm the hits in order; a literal already found is not confirmed again (common words such
        # as "your" hit many times in prose).
        by_key = self._by_key
        for pos, key in zip(hits.tolist(), keys.take(hits).tolist(), strict=True):
            for lit_raw, lit in by_key.get(key, ()):
                if lit not in found and raw.startswith(lit_raw, pos):
                    found.add(lit)
        return found
