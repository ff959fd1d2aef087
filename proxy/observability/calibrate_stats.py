"""How sure a suggested threshold is: Wilson intervals on (weighted) rates, and "too few labels".

Why Wilson and not the normal approximation: labelled sets are small and the rates we care
about (false positives at 1%) sit near zero, where ``p ± z·sqrt(p(1-p)/n)`` gives negative lower
bounds and far too narrow intervals; Wilson's score interval stays in [0, 1] and behaves at
p = 0 (its upper bound is then about z² / n, the "rule of three" neighbourhood).

Weighted samples (capture's inclusion weights) use Kish's effective sample size
``n_eff = (Σw)² / Σw²``: a sample where a few records carry most of the weight tells as little
as a sample of that few, and the interval widens accordingly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Z95 = 1.959964


def wilson(p: float, n: float, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``p`` observed over ``n`` (possibly effective) trials."""
    if n <= 0:
        return 0.0, 1.0
    p = min(max(p, 0.0), 1.0)
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def effective_n(weights: Sequence[float]) -> float:
    """Kish's effective sample size; ``len(weights)`` when all weights are equal."""
    total = sum(weights)
    squares = sum(w * w for w in weights)
    return total * total / squares if squares else 0.0


def needed(p: float, target: float, z: float = Z95) -> int | None:
    """The (effective) number of labels at which a rate ``p`` has a Wilson upper bound within
    ``target``; None when ``p`` itself is not below the target (no amount of labels helps)."""
    if p >= target:
        return None
    n = 1
    while wilson(p, n, z)[1] > target:
        n *= 2
        if n > 1 << 30:
            return None
    lo, hi = n // 2, n
    while lo + 1 < hi:  # smallest n in (lo, hi] that is within the target
        mid = (lo + hi) // 2
        if wilson(p, mid, z)[1] > target:
            lo = mid
        else:
            hi = mid
    return hi


@dataclass(frozen=True)
class RateEstimate:
    """A weighted rate with its 95% interval over ``n_eff`` effective examples."""

    rate: float | None
    low: float
    high: float
    n_eff: float

    @classmethod
    def of(cls, hits: Sequence[float], total: Sequence[float]) -> RateEstimate:
        """``hits``: the weights of the examples that count; ``total``: the weights of all of them."""
        mass = sum(total)
        n_eff = effective_n(total)
        if not mass:
            return cls(None, 0.0, 1.0, 0.0)
        rate = sum(hits) / mass
        low, high = wilson(rate, n_eff)
        return cls(rate, low, high, n_eff)

    def as_dict(self) -> dict[str, Any]:
        return {"rate": self.rate, "ci95": [self.low, self.high], "n_eff": round(self.n_eff, 2)}
