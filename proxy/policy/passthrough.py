"""The ``passthrough:`` section: which ``/v1/*`` paths outside the governed routes may be forwarded.

The four governed routes (chat completions, responses, messages, embeddings) run the whole
chain. Every other ``/v1/*`` path (files, batches, images, audio, fine-tuning, vector stores...)
is *pass-through*: forwarded as bytes. Because the sidecar may hold the provider key, a path
that is not governed must still be a decision the policy made:

* the upstream that would serve it holds the key (``auth: policy``): refused (403) unless a
  rule lists the path and method (``GET /models`` and ``GET /models/*`` are allowed by default:
  SDKs and tools list models at start-up, which reveals nothing and costs nothing);
* the client brings its own key (``auth: passthrough`` / ``none``): forwarded, and recorded
  (``unlisted: refuse`` closes this default too);
* a listed rule may apply request-side steps: a ``budget`` step charging a fixed price (or a
  price per unit of a JSON field such as ``n``), content guards (blocklist, moderation,
  injection, pii) on named JSON fields of the body, and ``headers`` steps (so the tenant a
  budget keys on is set as on the governed routes).

``mode: shadow`` on the section records would-be refusals and forwards the request (try an
allow-list on live traffic first); on a rule, it runs the rule's steps as shadow.

The models live here, the per-request work in ``proxy.routes.passthrough``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from proxy.chain.chain import Step
from proxy.chain.context import ActiveStep
from proxy.chain.plugin import overrides

#: The routes the chain governs (below /v1); never pass-through.
GOVERNED_PATHS = ("/chat/completions", "/responses", "/messages", "/embeddings")
#: Step types a rule may name as content guards on JSON fields.
GUARD_TYPES = frozenset({"blocklist", "moderation", "injection", "pii"})
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class PassthroughBudget(BaseModel):
    """Charge a pass-through request to an existing ``budget`` step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    step: str = Field(description="id of a budget step of this policy")
    price_usd: float = Field(
        default=0.0, ge=0, description="USD charged to cost_usd limits per request (per unit with per_field)"
    )
    per_field: str | None = Field(
        default=None,
        description="top-level JSON body field whose integer value multiplies price_usd, e.g. n "
        "(images); absent or not a positive integer counts 1. Needs a JSON body",
    )


class PassthroughRule(BaseModel):
    """One allowed pass-through path: glob below /v1, methods, and what applies to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="glob below /v1, e.g. /files* or /images/generations ('*' crosses '/')")
    methods: tuple[str, ...] = Field(min_length=1, description="HTTP methods, e.g. [GET, POST]; ['*'] = any")
    upstream: str | None = Field(
        default=None, description="upstream that serves it; default_upstream if unset"
    )
    mode: Literal["enforce", "shadow"] = Field(
        default="enforce", description="shadow: the rule's budget and guards record but never refuse"
    )
    budget: PassthroughBudget | None = Field(default=None, description="charge each request to a budget step")
    guards: tuple[str, ...] = Field(
        default=(),
        description="ids of blocklist / moderation / injection / pii steps run on `fields`, and of "
        "headers steps (tenant from a header, header edits)",
    )
    fields: tuple[str, ...] = Field(
        default=(),
        description="top-level JSON body fields (string or list of strings) the guards read; pii "
        "redaction is written back. A rule with fields refuses non-JSON bodies (415)",
    )

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        upper = tuple(m.upper() for m in value)
        unknown = [m for m in upper if m != "*" and m not in METHODS]
        if unknown:
            raise ValueError(f"unknown HTTP method {unknown[0]!r}; use {', '.join(sorted(METHODS))} or '*'")
        return upper

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("path is below /v1 and starts with '/', e.g. /files*")
        if "%" in value or "\\" in value or any(seg in (".", "..") for seg in value.split("/")):
            raise ValueError("path must not contain '%', '\\', '.' or '..' segments")
        return value

    @model_validator(mode="after")
    def _not_governed(self) -> PassthroughRule:
        # Other methods on these paths (GET /chat/completions: stored completions) are pass-through.
        if self.path in GOVERNED_PATHS and ("POST" in self.methods or "*" in self.methods):
            raise ValueError(
                f"POST {self.path} is a governed route (the chain applies to it), not pass-through"
            )
        return self

    @model_validator(mode="after")
    def _fields_need_guards(self) -> PassthroughRule:
        if self.fields and not self.guards:
            raise ValueError("fields are read by guards: name the guard steps that read them")
        return self

    @property
    def needs_json(self) -> bool:
        """The rule reads the body: guards on fields, or a price per field."""
        return bool(self.fields) or (self.budget is not None and self.budget.per_field is not None)

    @property
    def step_ids(self) -> tuple[str, ...]:
        return ((self.budget.step,) if self.budget else ()) + self.guards


class PassthroughConfig(BaseModel):
    """``passthrough:``; by default key-holding upstreams refuse every path no rule lists."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["enforce", "shadow"] = Field(
        default="enforce", description="shadow: unlisted paths are recorded as refused but forwarded"
    )
    unlisted: Literal["auto", "refuse"] = Field(
        default="auto",
        description="auto: unlisted paths are refused when the upstream holds the key (auth: policy) "
        "and forwarded (recorded) when the client brings its own; refuse: refused always",
    )
    models: bool = Field(default=True, description="GET /models and /models/* are allowed without a rule")
    rules: tuple[PassthroughRule, ...] = Field(default=(), description="first match (path and method) wins")


def check_passthrough(config: PassthroughConfig, upstreams: Sequence[str], steps: Mapping[str, Any]) -> None:
    """Cross-checks against the rest of the policy (``steps``: step id -> plugin config)."""
    for i, rule in enumerate(config.rules):
        where = f"passthrough.rules[{i}] ({rule.path})"
        if rule.upstream is not None and rule.upstream not in upstreams:
            raise ValueError(f"{where}: upstream {rule.upstream!r} is not one of the upstreams")
        if rule.budget is not None:
            cfg = steps.get(rule.budget.step)
            if cfg is None or cfg.type != "budget":
                raise ValueError(f"{where}: budget.step {rule.budget.step!r} names no budget step")
        for guard in rule.guards:
            cfg = steps.get(guard)
            if cfg is None or cfg.type not in GUARD_TYPES | {"headers"}:
                raise ValueError(
                    f"{where}: guard {guard!r} names no {' / '.join(sorted(GUARD_TYPES))} (or headers) step"
                )
            if cfg.type in GUARD_TYPES and not rule.fields:
                raise ValueError(
                    f"{where}: guard {guard!r} reads text: name the JSON fields it reads (fields)"
                )
        for step_id in rule.step_ids:
            when = steps[step_id].when
            if when is None:
                continue
            if when.routes is not None and "passthrough" not in when.routes:
                raise ValueError(
                    f"{where}: step {step_id!r} has when.routes without 'passthrough', so it would "
                    "never apply here; add passthrough to its routes"
                )
            if when.streaming:
                raise ValueError(f"{where}: step {step_id!r} only applies to streams (when.streaming)")


def passthrough_rules(config: PassthroughConfig) -> list[dict[str, Any]]:
    """The configured pass-through rules, as plain data (``/admin/policy``, ``check --coverage``).

    One entry per rule, in match order: ``path`` (glob below /v1), ``methods``, ``upstream``
    (None: the default upstream), ``mode``, ``steps`` (the step ids that apply, budget first)
    with ``budget`` (step, price_usd, per_field) and ``fields`` (what the guards read).
    """
    return [
        {
            "path": rule.path,
            "methods": list(rule.methods),
            "upstream": rule.upstream,
            "mode": rule.mode,
            "steps": list(rule.step_ids),
            "budget": rule.budget.model_dump() if rule.budget else None,
            "guards": list(rule.guards),
            "fields": list(rule.fields),
        }
        for rule in config.rules
    ]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    index: int
    config: PassthroughRule
    rx: re.Pattern[str]
    methods: frozenset[str] | None  # None: any
    steps: tuple[Step, ...]  # compiled steps in chain order (shadow copies for a shadow rule)
    request_steps: tuple[Step, ...]  # those with an on_request hook
    complete_steps: tuple[Step, ...]  # those with an on_complete hook

    def matches(self, method: str, path: str) -> bool:
        return (self.methods is None or method in self.methods) and self.rx.fullmatch(path) is not None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the policy decided for one pass-through request.

    ``kind``: ``rule`` (a rule lists it), ``models`` (default model listing), ``open`` (the
    client brings its own key), ``refused``. ``mode`` is the section's mode for ``refused``.
    """

    kind: str
    upstream: str
    auth: str
    mode: str = "enforce"
    rule: CompiledRule | None = None


def _shadowed(step: Step) -> Step:
    return replace(step, mode="shadow", active=ActiveStep(step.id, "shadow"), canary=None)


class PassthroughTable:
    """The compiled section: rule globs, steps resolved, the auth mode of each upstream."""

    def __init__(
        self,
        config: PassthroughConfig,
        auth_modes: Mapping[str, str],
        default_upstream: str,
        chain_steps: Sequence[Step],
    ) -> None:
        self.config = config
        self._auth = dict(auth_modes)
        self._default = default_upstream
        order = {s.id: i for i, s in enumerate(chain_steps)}
        by_id = {s.id: s for s in chain_steps}
        rules = []
        for i, rule in enumerate(config.rules):
            # Steps with mode: off are not compiled: the rule runs without them, as the chain does.
            named = sorted((by_id[s] for s in rule.step_ids if s in by_id), key=lambda s: order[s.id])
            steps = tuple(_shadowed(s) for s in named) if rule.mode == "shadow" else tuple(named)
            methods = None if "*" in rule.methods else frozenset(rule.methods)
            rx = re.compile(fnmatch.translate(rule.path))
            rules.append(
                CompiledRule(
                    i,
                    rule,
                    rx,
                    methods,
                    steps,
                    tuple(s for s in steps if overrides(s.plugin, "on_request")),
                    tuple(s for s in steps if overrides(s.plugin, "on_complete")),
                )
            )
        self.rules = tuple(rules)

    def decide(self, method: str, path: str) -> Verdict:
        """``path``: normalised, below /v1, starting with '/'."""
        for rule in self.rules:
            if rule.matches(method, path):
                upstream = rule.config.upstream or self._default
                return Verdict("rule", upstream, self._auth[upstream], rule=rule)
        upstream = self._default
        auth = self._auth[upstream]
        if self.config.models and method == "GET" and (path == "/models" or path.startswith("/models/")):
            return Verdict("models", upstream, auth)
        if self.config.unlisted == "auto" and auth != "policy":
            return Verdict("open", upstream, auth)
        return Verdict("refused", upstream, auth, mode=self.config.mode)
