"""Builds the targets of the cloud providers (``gemini``, ``vertex``, ``bedrock``) from config.

Kept apart from the policy compiler so that the optional SDKs (google-auth, botocore) are only
imported when a policy names one of these providers, and a missing one fails the policy load
with the extra to install.
"""

from __future__ import annotations

from proxy.chain.upstream import Upstream
from proxy.errors import ConfigError
from proxy.upstream.client import HttpClient
from proxy.upstream.config import UpstreamConfig
from proxy.upstream.targets import Credentials

CLOUD_PROVIDERS = frozenset({"gemini", "vertex", "bedrock"})


def build_cloud_target(name: str, cfg: UpstreamConfig, client: HttpClient) -> Upstream:
    """The target for ``cfg`` (whose provider is in ``CLOUD_PROVIDERS``)."""
    try:
        return _build(name, cfg, client)
    except ConfigError as exc:
        raise ConfigError(f"upstreams.{name}: {exc.message}", code=exc.code) from None


def _build(name: str, cfg: UpstreamConfig, client: HttpClient) -> Upstream:
    if cfg.provider == "bedrock":
        from proxy.upstream.providers.bedrock_target import BedrockTarget

        assert cfg.region is not None  # checked by UpstreamConfig
        return BedrockTarget(
            name,
            cfg.base_url,
            client,
            cfg.region,
            cfg.headers,
            first_token_timeout=cfg.first_token_timeout,
            max_response_bytes=cfg.max_response_bytes,
        )
    from proxy.upstream.providers.gemini_target import GeminiTarget, GoogleToken

    key = cfg.api_key.get_secret_value() if cfg.api_key is not None else None
    explicit = "auth_header" in cfg.model_fields_set
    header, scheme = (cfg.auth_header, cfg.auth_scheme) if explicit else ("x-goog-api-key", "")
    vertex = cfg.provider == "vertex"
    mode = "none" if vertex else cfg.auth_mode  # vertex: the ADC token replaces any client key
    creds = Credentials(mode, key, header, scheme, cfg.headers)
    return GeminiTarget(
        name,
        cfg.base_url,
        client,
        creds,
        vertex=(str(cfg.project), str(cfg.location)) if vertex else None,
        token=GoogleToken(cfg.credentials_file) if vertex else None,
        first_token_timeout=cfg.first_token_timeout,
        max_response_bytes=cfg.max_response_bytes,
        max_event_bytes=cfg.max_event_bytes,
    )
