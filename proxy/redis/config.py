"""The ``redis:`` block every Redis-backed step accepts (budget, idempotency, pii vault).

A URL says most of it (``redis://``, ``rediss://``, ``redis+sentinel://``, ``redis+cluster://``,
see :mod:`proxy.redis.connect`); the block is for what a URL says badly: a list of sentinels with
their own password, client certificates, or a cluster flag on a plain ``redis://`` URL handed out
by a managed service. Block fields win over the URL's.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from proxy.chain import Secret


class RedisTls(BaseModel):
    """TLS to Redis (also turned on by a ``rediss://`` URL)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: str | None = Field(default=None, description="PEM CA bundle that signed the server cert")
    cert_file: str | None = Field(default=None, description="client certificate (PEM), for mutual TLS")
    key_file: str | None = Field(default=None, description="client private key (PEM), for mutual TLS")
    check_hostname: bool = Field(default=True, description="verify the server name against its cert")


class RedisSentinel(BaseModel):
    """Find the primary through Redis Sentinel (the URL's user, password and db are the primary's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    master: str = Field(min_length=1, description="the monitored master's name (sentinel.conf)")
    sentinels: tuple[str, ...] = Field(min_length=1, description="host:port of each sentinel")
    username: Secret | None = Field(default=None, description="the sentinels' own ACL user")
    password: Secret | None = Field(default=None, description="the sentinels' own password (requirepass)")


class RedisOptions(BaseModel):
    """Topology and TLS of the Redis behind ``redis_url``; every field is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cluster: bool = Field(default=False, description="Redis Cluster (same as a redis+cluster:// URL)")
    sentinel: RedisSentinel | None = Field(default=None, description="primary found through Sentinel")
    tls: RedisTls | None = Field(default=None, description="TLS settings (implies TLS)")
