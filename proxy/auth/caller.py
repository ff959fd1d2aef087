"""A verified credential and what it may do: the identity plus its model and route allowances."""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

from proxy.chain.identity import Identity
from proxy.errors import Forbidden, Unauthenticated


def compile_globs(patterns: Iterable[str] | None) -> re.Pattern[str] | None:
    """One regex for a list of globs (``None``: everything allowed)."""
    if patterns is None:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns) or "(?!)")


@dataclass(frozen=True, slots=True)
class Caller:
    """Built once per key entry (or per verified token) and reused: the hot path only compares."""

    identity: Identity
    models: re.Pattern[str] | None = None
    routes: frozenset[str] | None = None
    expires: float | None = None  # epoch seconds; None: never

    def check_live(self, now: float | None = None) -> None:
        if self.expires is not None and (now if now is not None else time.time()) >= self.expires:
            raise Unauthenticated("The credential has expired.", detail="expired")

    def check_route(self, route: str) -> None:
        if self.routes is not None and route not in self.routes:
            raise Forbidden(f"This credential may not use the {route} route.", detail="route_not_allowed")

    def check_model(self, model: str) -> None:
        if self.models is not None and not self.models.match(model):
            raise Forbidden(
                f"This credential may not use the model {model!r}.",
                param="model",
                code="model_not_allowed",
                detail="model_not_allowed",
            )
