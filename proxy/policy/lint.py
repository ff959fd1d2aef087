"""Policy warnings: things that load fine but are probably not what was meant.

A model glob cannot be checked against a fixed list (any model name is valid), so a typo in
``when.models: ["gpt4o*"]`` loads and the rule never applies. What *can* be checked is whether
the glob could ever match a model the policy itself names (route ``match`` globs, upstream
``models`` globs, route targets' models), and whether a route or an upstream's ``models`` glob
is hidden behind an earlier one (first match wins, so it never routes anything). Those are
warnings, not errors: a rule may rightly target a model that only the default upstream serves.

``lint_policy`` returns ``file:line:col: message`` strings; the store keeps them on the compiled
revision (``CompiledPolicy.warnings``: logged on load and reload, shown at ``/admin/policy``)
and ``policy-sidecar check`` prints them.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Iterator
from functools import lru_cache

from pydantic import BaseModel

from proxy.chain.plugin import Match
from proxy.policy.schema import PolicyBase

Loc = tuple[int | str, ...]
_PRINTABLE = [chr(c) for c in range(32, 127)]
_END: frozenset[str] = frozenset()  # past the end of a glob: accepts no character


def _class_end(glob: str, start: int) -> int:
    """Index of the ``]`` closing the class opened at ``start`` (fnmatch's rules), or -1."""
    j = start + 1
    if j < len(glob) and glob[j] == "!":
        j += 1
    if j < len(glob) and glob[j] == "]":
        j += 1
    return glob.find("]", j)


@lru_cache(maxsize=512)
def _tokens(glob: str) -> tuple[frozenset[str] | None, ...]:
    """A glob as tokens: ``None`` for ``*``, else the set of characters one position accepts."""
    out: list[frozenset[str] | None] = []
    i = 0
    while i < len(glob):
        ch = glob[i]
        if ch == "*":
            if not out or out[-1] is not None:
                out.append(None)
            i += 1
        elif ch == "?":
            out.append(frozenset(_PRINTABLE))
            i += 1
        elif ch == "[" and (end := _class_end(glob, i)) > 0:
            rx = re.compile(fnmatch.translate(glob[i : end + 1]))
            out.append(frozenset(c for c in _PRINTABLE if rx.match(c)))
            i = end + 1
        else:
            out.append(frozenset(ch))
            i += 1
    return tuple(out)


def globs_overlap(a: str, b: str) -> bool:
    """True when some model name matches both globs (exact, over printable ASCII)."""
    ta, tb = _tokens(a), _tokens(b)
    seen: set[tuple[int, int]] = set()
    todo = [(0, 0)]
    while todo:
        i, j = todo.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(ta) and j == len(tb):
            return True
        x = ta[i] if i < len(ta) else _END
        y = tb[j] if j < len(tb) else _END
        if x is None:  # a star: matches nothing more, or the character the other side takes
            todo.append((i + 1, j))
            if y:
                todo.append((i, j + 1))
        if y is None:
            todo.append((i, j + 1))
            if x:
                todo.append((i + 1, j))
        if x and y and x & y:
            todo.append((i + 1, j + 1))
    return False


def _samples(glob: str) -> list[str]:
    """A few names the glob matches, with its wildcards filled in different ways."""
    names = []
    for fill in ("", "a", "Zz-9.x"):
        first = fill[:1]
        parts = [fill if tok is None else (first if first in tok else min(tok)) for tok in _tokens(glob)]
        names.append("".join(parts))
    return names


def glob_covered(glob: str, by: str) -> bool:
    """True when (as far as a few samples tell) every name ``glob`` matches also matches ``by``."""
    rx = re.compile(fnmatch.translate(by))
    return all(rx.match(s) for s in _samples(glob))


def _model_globs(policy: PolicyBase) -> list[str]:
    names = [r.match for r in policy.routes]
    for route in policy.routes:
        for spec in route.specs():
            _upstream, sep, model = spec.target.partition(":")
            if sep and model:
                names.append(model)
    for cfg in policy.upstreams.values():
        names.extend(cfg.models or ())
    return names


def _step_globs(value: object, loc: Loc) -> Iterator[tuple[str, Loc]]:
    """Every model glob in a step's config, with its path: ``when.models`` (and any ``Match``, like
    a schema contract's), ``allowed_models``, and budget ``prices`` keys (model prefixes)."""
    if isinstance(value, Match):
        for j, glob in enumerate(value.models or ()):
            yield glob, (*loc, "models", j)
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            field = getattr(value, name)
            if name == "allowed_models" and isinstance(field, tuple):
                yield from ((g, (*loc, name, j)) for j, g in enumerate(field))
            elif name == "prices" and isinstance(field, dict):
                yield from ((f"{prefix}*", (*loc, name, prefix)) for prefix in field)
            else:
                yield from _step_globs(field, (*loc, name))
    elif isinstance(value, tuple | list):
        for i, item in enumerate(value):
            yield from _step_globs(item, (*loc, i))


def lint_policy(policy: PolicyBase, locate: Callable[[Loc], str]) -> list[str]:
    """Warnings for a validated policy; ``locate`` maps a path to ``file:line:col``."""
    warnings: list[str] = []
    known = _model_globs(policy)
    if known:  # a policy that names no model at all gives nothing to compare with
        shown = ", ".join(dict.fromkeys(known))
        for i, step in enumerate(getattr(policy, "plugins", [])):
            for glob, loc in _step_globs(step, ("plugins", i)):
                if not any(globs_overlap(glob, k) for k in known):
                    warnings.append(
                        f"{locate(loc)}: model glob {glob!r} matches no route or upstream model "
                        f"({shown}); it applies only to models sent to the default upstream: "
                        "check the spelling"
                    )
    for i, route in enumerate(policy.routes):
        for earlier in policy.routes[:i]:
            if glob_covered(route.match, earlier.match):
                warnings.append(
                    f"{locate(('routes', i, 'match'))}: route {route.match!r} is never used: the earlier "
                    f"route {earlier.match!r} matches its models first"
                )
                break
    seen: list[tuple[str, str]] = []
    for name, cfg in policy.upstreams.items():
        for j, glob in enumerate(cfg.models or ()):
            hidden = next((other for other, g in seen if glob_covered(glob, g)), None)
            if hidden is not None:
                warnings.append(
                    f"{locate(('upstreams', name, 'models', j))}: upstream {name!r} model glob {glob!r} "
                    f"never routes: upstream {hidden!r} (listed earlier) takes those models first"
                )
        seen.extend((name, g) for g in cfg.models or ())
    capture = policy.observability.capture
    if capture.enabled and capture.text == "encrypted" and not os.environ.get(capture.key_env):
        warnings.append(
            f"{locate(('observability', 'capture', 'key_env'))}: capture text: encrypted but "
            f"{capture.key_env} is not set: no record will be written (make a key with "
            "policy-sidecar review key)"
        )
    return warnings
