"""The policy's ``upstreams:`` and ``routes:`` sections: provider endpoints and model routes.

They live with the upstream code that acts on them (``routing``, ``targets``) so that layer
never imports the policy package above it; ``proxy.policy.schema`` assembles them into the
policy model (and re-exports them).
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from proxy.chain.secrets import Secret


def _date_as_text(value: Any) -> Any:
    """YAML reads an unquoted 2024-10-21 as a date; an api-version is text."""
    return value.isoformat() if isinstance(value, datetime.date) else value


class UpstreamConfig(BaseModel):
    """One provider endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(description="API root, e.g. https://api.openai.com/v1, or builtin:demo")
    provider: Literal["openai", "azure", "anthropic", "gemini", "vertex", "bedrock"] = Field(
        default="openai",
        description="openai: any OpenAI-compatible server; azure: deployment URLs; "
        "anthropic: Messages API; gemini: Generative Language API (API key); vertex: Gemini on "
        "Vertex AI (Google ADC); bedrock: Bedrock Converse (AWS SigV4); all but openai/azure "
        "are translated both ways",
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
    project: str | None = Field(default=None, description="vertex: the Google Cloud project id")
    location: str | None = Field(default=None, description="vertex: the region, e.g. us-central1, or global")
    region: str | None = Field(default=None, description="bedrock: the AWS region, e.g. us-east-1")
    credentials_file: str | None = Field(
        default=None,
        description="vertex: a service-account JSON file (default: Google ADC, i.e. "
        "GOOGLE_APPLICATION_CREDENTIALS, gcloud, or the GKE metadata server); bedrock: ignored, "
        "the AWS credential chain (env, shared files, web identity, container/instance metadata) is used",
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
        _check_base_url(self.base_url)
        if self.provider == "azure" and not self.api_version:
            raise ValueError("provider: azure needs api_version")
        if self.provider == "vertex" and not (self.project and self.location):
            raise ValueError("provider: vertex needs project and location")
        if self.provider == "bedrock" and not self.region:
            raise ValueError("provider: bedrock needs region")
        if self.provider in ("vertex", "bedrock") and (self.auth is not None or self.api_key is not None):
            raise ValueError(
                f"provider: {self.provider} authenticates with cloud credentials; "
                "leave auth and api_key unset"
            )
        if self.auth == "policy" and self.api_key is None:
            raise ValueError("auth: policy needs api_key")
        return self

    @property
    def auth_mode(self) -> str:
        if self.provider in ("vertex", "bedrock"):
            return "cloud"  # Google ADC / the AWS credential chain, never a client's key
        return self.auth or ("policy" if self.api_key is not None else "passthrough")


def _check_base_url(url: str) -> None:
    """No credentials, query or fragment in ``base_url``: they would be shown and mis-joined.

    A key in the URL (``https://user:key@host``) would appear in ``/admin/policy`` and logs, and
    a query string would end up before the request path. The message never repeats the URL.
    """
    if url.startswith("builtin:"):
        return
    try:
        parts = urlsplit(url)
        has_userinfo = parts.username is not None or parts.password is not None or "@" in parts.netloc
    except ValueError:
        raise ValueError("base_url is not a valid URL") from None
    if has_userinfo:
        raise ValueError(
            "base_url must not contain credentials (user:password@): put the key in api_key "
            "(${ENV} allowed) and leave auth at policy"
        )
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError("base_url must not have a query string or fragment (azure: use api_version)")
    if not parts.hostname:
        raise ValueError("base_url needs a host, e.g. https://api.openai.com/v1")


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
