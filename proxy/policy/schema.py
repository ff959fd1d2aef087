"""The policy document's models, with the plugin list as a discriminated union from the registry.

Unknown fields are errors everywhere (``extra="forbid"``): a typo in a policy must fail the
load, not silently disable a rule. ``${ENV}`` expansion happens only in ``Secret`` fields, so
an environment variable can never change what a rule matches.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model, model_validator

from proxy.chain.registry import Registry
from proxy.chain.secrets import Secret
from proxy.observability.config import ObservabilityConfig


def _date_as_text(value: Any) -> Any:
    """YAML reads an unquoted 2024-10-21 as a date; an api-version is text."""
    return value.isoformat() if isinstance(value, datetime.date) else value


class UpstreamConfig(BaseModel):
    """One provider endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(description="API root, e.g. https://api.openai.com/v1, or builtin:demo")
    provider: Literal["openai", "azure", "anthropic"] = Field(
        default="openai",
        description="openai: any OpenAI-compatible server; azure: deployment URLs; "
        "anthropic: Messages API, translated both ways",
    )
    api_version: Annotated[str, BeforeValidator(_date_as_text)] | None = Field(
        default=None, description="azure: the api-version query parameter, e.g. 2024-10-21"
    )
    api_key: Secret | None = Field(default=None, description="${ENV} allowed; used when auth is policy")
    auth: Literal["policy", "passthrough", "none"] | None = Field(
        default=None,
        description="policy: use api_key; passthrough: forward the client's key. "
        "Default: policy when api_key is set, else passthrough",
    )
    auth_header: str = "authorization"
    auth_scheme: str = "Bearer"
    headers: dict[str, str] = Field(default_factory=dict, description="static headers added upstream")
    models: tuple[str, ...] | None = Field(default=None, description="model globs routed here")
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=600.0, gt=0, description="seconds between two reads")
    first_token_timeout: float | None = Field(
        default=None, gt=0, description="streams: seconds to the first chunk"
    )
    max_connections: int = Field(default=100, ge=1)
    max_response_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="largest non-streamed answer read into memory; larger ones get 502 "
        "upstream_response_too_large (streams are never buffered)",
    )
    max_event_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="streams parsed by the sidecar (stream filters, Anthropic translation): largest "
        "SSE line or event; a larger one ends the stream with an in-band upstream_event_too_large error",
    )

    @model_validator(mode="after")
    def _check(self) -> UpstreamConfig:
        if not (self.base_url.startswith(("http://", "https://")) or self.base_url.startswith("builtin:")):
            raise ValueError("base_url must start with http://, https:// or builtin:")
        if self.base_url.startswith("builtin:") and self.base_url != "builtin:demo":
            raise ValueError("the only builtin upstream is builtin:demo")
        if self.provider == "azure" and not self.api_version:
            raise ValueError("provider: azure needs api_version")
        if self.auth == "policy" and self.api_key is None:
            raise ValueError("auth: policy needs api_key")
        return self

    @property
    def auth_mode(self) -> str:
        return self.auth or ("policy" if self.api_key is not None else "passthrough")


class TargetSpec(BaseModel):
    """``upstream`` or ``upstream:model`` (the model defaults to the one requested)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str
    weight: float = Field(default=1.0, ge=0, description="share of first choices with strategy: weighted")


class RouteSpec(BaseModel):
    """A model alias (glob) and the ordered or weighted targets that may serve it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: str = Field(description="glob on the requested model, e.g. gpt-4o or gpt-4o*")
    strategy: Literal["ordered", "weighted"] = Field(
        default="ordered", description="ordered: first target first; weighted: first choice drawn by weight"
    )
    targets: tuple[str | TargetSpec, ...] = Field(min_length=1, description="best first; fallback walks them")

    def specs(self) -> list[TargetSpec]:
        return [t if isinstance(t, TargetSpec) else TargetSpec(target=t) for t in self.targets]


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, description="larger bodies get 413")


class PolicyBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = Field(description="policy format version")
    upstreams: dict[str, UpstreamConfig] = Field(
        default_factory=lambda: {"default": UpstreamConfig(base_url="builtin:demo")}
    )
    default_upstream: str = "default"
    routes: tuple[RouteSpec, ...] = Field(
        default=(), description="model aliases -> targets, first match wins"
    )
    limits: Limits = Field(default_factory=Limits)
    observability: ObservabilityConfig = Field(
        default_factory=ObservabilityConfig, description="tracing, metrics, logs, decision log"
    )


def _check_policy(policy: Any) -> Any:
    if policy.default_upstream not in policy.upstreams:
        raise ValueError(f"default_upstream {policy.default_upstream!r} is not one of the upstreams")
    for route in policy.routes:
        for spec in route.specs():
            name = spec.target.split(":", 1)[0]
            if name not in policy.upstreams:
                raise ValueError(f"route {route.match!r}: target {spec.target!r} names no upstream")
    seen: set[str] = set()
    for step in policy.plugins:
        if step.step_id in seen:
            raise ValueError(f"plugin id {step.step_id!r} is used twice; give each step a unique id")
        seen.add(step.step_id)
    return policy


def build_policy_model(registry: Registry) -> type[PolicyBase]:
    """The Policy model for exactly the plugins this registry knows."""
    configs = tuple(cls.Config for cls in registry.classes())
    if not configs:
        step_type: Any = Annotated[dict[str, Any], Field()]
    elif len(configs) == 1:
        step_type = configs[0]
    else:
        step_type = Annotated[Union[configs], Field(discriminator="type")]  # noqa: UP007
    model: type[PolicyBase] = create_model(
        "Policy",
        __base__=PolicyBase,
        __validators__={"check": model_validator(mode="after")(_check_policy)},  # type: ignore[dict-item]
        plugins=(list[step_type], Field(default_factory=list, description="the chain, in request order")),
    )
    return model
