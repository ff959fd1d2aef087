"""The ``clients:`` policy section: who may call the sidecar, and how that is verified.

Two credential kinds, either or both:

* ``keys_file``: API keys listed (as SHA-256 hashes only) in a YAML/JSON file beside the
  policy, re-read when it changes; each key names its tenant, user, allowed models and routes,
  expiry and budget overrides (see ``proxy.auth.keyfile``).
* ``jwt``: bearer tokens signed by an identity provider, verified against a JWKS file or URL
  (RS/ES/PS algorithms only: a shared-secret HS* token could be minted by anyone holding the
  secret, which the sidecar would then have to hold too).

With ``clients:`` present every ``/v1`` route requires a credential, and the verified identity
is the only source of tenant, user and key id for budgets, ``when``, PII scoping and records.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from proxy.models.chat import Route

ROUTE_NAMES = tuple(r.value for r in Route)

Algorithm = Literal["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"]


def check_routes(routes: Iterable[str] | None, where: str) -> None:
    """Unknown route names are errors with a suggestion: a typo must not lock callers out (or in)."""
    for name in routes or ():
        if name not in ROUTE_NAMES:
            close = difflib.get_close_matches(name, ROUTE_NAMES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(ROUTE_NAMES)}"
            raise ValueError(f"{where}: unknown route {name!r}{hint}")


class JwtConfig(BaseModel):
    """Bearer JWTs from an identity provider, verified with its public keys (JWKS)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    jwks_file: str | None = Field(
        default=None, description="JWKS JSON file, relative to the policy's directory; re-read on change"
    )
    jwks_url: str | None = Field(default=None, description="https URL of the JWKS (cached; refresh_seconds)")
    issuer: str = Field(description="required `iss` claim")
    audience: str | tuple[str, ...] = Field(description="accepted `aud` value(s)")
    algorithms: tuple[Algorithm, ...] = Field(
        default=("RS256", "ES256"), min_length=1, description="accepted signature algorithms (no HS*)"
    )
    leeway: float = Field(default=30.0, ge=0, le=600, description="seconds of clock skew on exp / nbf")
    tenant_claim: str = Field(default="tenant", description="claim naming the tenant; a.b for nested")
    user_claim: str | None = Field(default="sub", description="claim naming the user (null: no user)")
    models: tuple[str, ...] | None = Field(default=None, description="model globs any token may use")
    routes: tuple[str, ...] | None = Field(default=None, description="routes any token may use")
    refresh_seconds: float = Field(default=300.0, gt=0, description="jwks_url: seconds between re-fetches")
    min_refresh_seconds: float = Field(
        default=30.0, ge=0, description="jwks_url: unknown kid re-fetches at most once per this many seconds"
    )
    timeout_seconds: float = Field(default=5.0, gt=0, description="jwks_url: fetch timeout")

    @model_validator(mode="after")
    def _check(self) -> JwtConfig:
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise ValueError("jwt needs exactly one of jwks_file or jwks_url")
        if self.jwks_url is not None and not self.jwks_url.startswith(("https://", "http://")):
            raise ValueError("jwt.jwks_url must be an http(s) URL")
        check_routes(self.routes, "jwt.routes")
        return self


class ClientsConfig(BaseModel):
    """Client authentication: every ``/v1`` request must carry a valid key or token."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keys_file: str | None = Field(
        default=None,
        description="API keys (SHA-256 hashes) file, relative to the policy's directory; "
        "`policy-sidecar keys new` prints entries",
    )
    jwt: JwtConfig | None = Field(default=None, description="bearer JWTs verified against a JWKS")
    check_interval: float = Field(
        default=1.0, ge=0, description="seconds between checks of the keys/JWKS files for changes (0: always)"
    )

    @model_validator(mode="after")
    def _check(self) -> ClientsConfig:
        if self.keys_file is None and self.jwt is None:
            raise ValueError("clients needs keys_file, jwt or both")
        return self


def check_upstream_auth(policy: Any) -> None:
    """With ``clients:``, the caller's credential is for the sidecar, never for a provider.

    An upstream that would forward it (``auth: passthrough``, also the default without
    ``api_key``) is a load error; the built-in demo upstream runs in-process and is exempt
    (the routes strip the credential before anything is forwarded anyway).
    """
    if getattr(policy, "clients", None) is None:
        return
    for name, up in policy.upstreams.items():
        if up.auth_mode == "passthrough" and not up.base_url.startswith("builtin:"):
            raise ValueError(
                f"upstream {name!r}: with clients: enabled the caller's key is a sidecar credential and is "
                "never forwarded; give the upstream an api_key (auth: policy) or set auth: none"
            )
