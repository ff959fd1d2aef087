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
from proxy.policy.promotion import PromotionStateConfig
from proxy.upstream.config import RouteSpec as RouteSpec  # re-exported: the routes: section
from proxy.upstream.config import TargetSpec as TargetSpec
from proxy.upstream.config import UpstreamConfig as UpstreamConfig  # the upstreams: section


class Limits(BaseModel):
    """Bounds on what one request may carry, checked when the body is read, before any plugin runs.

    Why item counts and not only bytes: the request-side guards (injection, PII, moderation,
    budget) cost per item as well as per byte, so 100,000 one-character embeddings inputs in
    half a megabyte cost seconds of CPU that no byte limit prevents. Beyond a limit the request
    is a 400 (``too_many_messages``, ``too_many_inputs``, ``too_many_tools``,
    ``too_many_content_parts``, ``json_too_deep``) in the client's error format.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, description="larger bodies get 413")
    max_messages: int = Field(
        default=2048,
        ge=1,
        description="chat messages, Responses input items or Anthropic messages per request; more get 400",
    )
    max_inputs: int = Field(
        default=2048, ge=1, description="embeddings inputs per request (OpenAI's own limit); more get 400"
    )
    max_tools: int = Field(
        default=128, ge=0, description="tool definitions per request (OpenAI's limit); more get 400"
    )
    max_content_parts: int = Field(
        default=2048, ge=1, description="content parts (text, images, files) over all messages; more get 400"
    )
    max_json_depth: int = Field(
        default=64,
        ge=8,
        le=200,
        description="nesting depth of the JSON body (objects and arrays); deeper gets 400. At most 200: "
        "the JSON encoder the sidecar re-encodes bodies with stops at 255",
    )


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
    promotion: PromotionStateConfig = Field(
        default_factory=PromotionStateConfig,
        description="where the state of promote: steps is kept (memory, file or redis); "
        "see docs/promotion.md",
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
