"""Model routing: which upstream (and which model there) may serve a requested model.

``plan(model)`` returns the candidates for one request, best first. Routes are checked in
policy order, first match wins; ``weighted`` draws the first choice by weight (A/B splits,
load balancing) and keeps the others, heaviest first, as fallbacks. A model no route matches
goes to the first upstream whose ``models`` globs match it, else to the default upstream.
"""

from __future__ import annotations

import fnmatch
import random
import re
from collections.abc import Callable, Sequence

from proxy.models.upstream import Candidate
from proxy.upstream.config import RouteSpec, UpstreamConfig


def _glob(patterns: Sequence[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


class _Route:
    def __init__(self, spec: RouteSpec, upstreams: Sequence[str]) -> None:
        self.rx = _glob([spec.match])
        self.weighted = spec.strategy == "weighted"
        self.targets: list[tuple[str, str | None, float]] = []
        for t in spec.specs():
            name, sep, model = t.target.partition(":")
            if name not in upstreams:  # a colon inside a model name (llama3:8b) with no upstream prefix
                raise ValueError(f"unknown upstream in {t.target!r}")
            self.targets.append((name, model if sep else None, t.weight))

    def plan(self, model: str, rand: Callable[[], float]) -> tuple[Candidate, ...]:
        cands = [(Candidate(name, m or model), w) for name, m, w in self.targets]
        if not self.weighted or len(cands) == 1:
            return tuple(c for c, _ in cands)
        total = sum(w for _, w in cands)
        pick = rand() * total
        first = 0
        for i, (_, w) in enumerate(cands):
            if pick < w:
                first = i
                break
            pick -= w
        rest = sorted((c for i, c in enumerate(cands) if i != first), key=lambda cw: -cw[1])
        return (cands[first][0], *(c for c, _ in rest))


class RouteTable:
    def __init__(
        self,
        routes: Sequence[RouteSpec],
        upstreams: dict[str, UpstreamConfig],
        default: str,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._routes = [_Route(r, list(upstreams)) for r in routes]
        self._by_model = [(_glob(cfg.models), name) for name, cfg in upstreams.items() if cfg.models]
        self._default = default
        self._rand = rand

    def plan(self, model: str) -> tuple[Candidate, ...]:
        for route in self._routes:
            if route.rx.match(model):
                return route.plan(model, self._rand)
        for rx, name in self._by_model:
            if rx.match(model):
                return (Candidate(name, model),)
        return (Candidate(self._default, model),)
