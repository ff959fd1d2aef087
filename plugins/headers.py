"""``headers``: tenant from a request header, and header edits in both directions.

The tenant it sets is what ``when: {tenants: [...]}`` and later budget plugins key on, so it
usually comes first in a policy. With client authentication (``clients:``) the tenant is the
verified caller's and ``tenant_header`` is ignored (a differing header is recorded as a flag).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from proxy.chain import Plugin, PluginConfig, Reply, RequestContext
from proxy.errors import InvalidRequest
from proxy.models import ChatRequest


class HeadersConfig(PluginConfig):
    """Set the tenant from a request header; add or strip headers upstream and in the answer."""

    type: Literal["headers"] = "headers"
    tenant_header: str | None = Field(default=None, description="request header that names the tenant")
    require_tenant: bool = Field(default=False, description="400 when the tenant header is missing")
    set_upstream: dict[str, str] = Field(
        default_factory=dict, description="headers added to the upstream call"
    )
    strip_upstream: tuple[str, ...] = Field(default=(), description="client headers not sent upstream")
    set_response: dict[str, str] = Field(default_factory=dict, description="headers added to the answer")


class HeadersPlugin(Plugin[HeadersConfig]):
    Config = HeadersConfig

    async def on_request(self, req: ChatRequest, ctx: RequestContext) -> Reply | None:
        cfg = self.config
        if cfg.tenant_header and ctx.identity is not None:
            # Client authentication is on: the tenant is the verified one; a header cannot change it.
            claimed = ctx.headers.get(cfg.tenant_header)
            if claimed and claimed != ctx.identity.tenant:
                ctx.record("tenant_header_ignored", "flag", detail={"header": cfg.tenant_header})
        elif cfg.tenant_header:
            tenant = ctx.headers.get(cfg.tenant_header)
            if tenant:
                ctx.tenant = tenant
            elif cfg.require_tenant:
                raise InvalidRequest(f"Missing required header {cfg.tenant_header}.", code="missing_tenant")
        if cfg.set_upstream:
            ctx.upstream_headers.update(cfg.set_upstream)
        for name in cfg.strip_upstream:
            # An empty value removes the header (see Credentials.apply); recorded per request.
            ctx.upstream_headers[name] = ""
        if cfg.set_response:
            ctx.response_headers.update(cfg.set_response)
        return None
