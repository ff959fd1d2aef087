"""The policy document's models, with the plugin list as a discriminated union from the registry.

Unknown fields are errors everywhere (``extra="forbid"``): a typo in a policy must fail the
load, not silently disable a rule. ``${ENV}`` expansion happens only in ``Secret`` fields, so
an environment variable can never change what a rule matches.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from proxy.auth.config import ClientsConfig, check_upstream_auth
from proxy.chain.names import check_reference
from proxy.chain.registry import Registry
from proxy.policy.observability import ObservabilityConfig
from proxy.policy.passthrough import PassthroughConfig, check_passthrough
from proxy.upstream.config import RouteSpec as RouteSpec  # re-exported: the routes: section
from proxy.upstream.config import TargetSpec as TargetSpec
from proxy.upstream.config import UpstreamConfig as UpstreamConfig  # the upstreams: section


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
    clients: ClientsConfig | None = Field(
        default=None, description="client authentication (API keys file, JWT); see docs/auth.md"
    )
    passthrough: PassthroughConfig = Field(
        default_factory=PassthroughConfig,
        description="/v1/* paths outside the governed routes: refused when the upstream holds the "
        "key unless a rule allows them; budget and guards per rule",
    )


def _check_policy(policy: Any) -> Any:
    upstreams = tuple(policy.upstreams)
    check_reference(policy.default_upstream, upstreams, "upstream", ("default_upstream",))
    for i, route in enumerate(policy.routes):
        for spec in route.specs():
            name = spec.target.split(":", 1)[0]
            check_reference(name, upstreams, f"upstream in route {route.match!r} target", ("routes", i))
    check_upstream_auth(policy)
    seen: set[str] = set()
    for step in policy.plugins:
        if step.step_id in seen:
            raise ValueError(f"plugin id {step.step_id!r} is used twice; give each step a unique id")
        seen.add(step.step_id)
    check_passthrough(
        policy.passthrough, list(policy.upstreams), {step.step_id: step for step in policy.plugins}
    )
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
