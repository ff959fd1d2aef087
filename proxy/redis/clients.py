"""The redis-py clients behind :func:`proxy.redis.connect`, apart so redis-py loads only when used.

Importing redis-py's asyncio, cluster and sentinel modules costs ~8 MB of RSS in a process that
already has aiohttp (issue 17); ``connect`` imports this module on its first call, so a policy
with no Redis-backed step (the memory budget, an in-process cache) never pays for it.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

from proxy.redis.connect import Target


class _SentinelPrimary(aioredis.Redis):
    """The primary's client; closing it also closes the connections to the sentinels."""

    sentinel_manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinel_manager is not None:
            for client in self.sentinel_manager.sentinels:
                await client.aclose()


def build_client(
    target: Target,
    connect_timeout: float,
    socket_timeout: float | None,
    decode_responses: bool,
    tls: dict[str, Any],
) -> Any:
    """``connect``'s client for ``target`` (see there); ``tls``: its ``_tls_kwargs``."""
    common: dict[str, Any] = {
        "username": target.username,
        "password": target.password,
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": socket_timeout,
        "decode_responses": decode_responses,
        **tls,
    }
    if target.kind == "cluster":
        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in target.hosts],
            # During a shard failover some slots have no primary for a moment: keep serving the
            # others instead of refusing every command.
            require_full_coverage=False,
            **common,
        )
    if target.kind == "sentinel":
        sentinel_kwargs = {
            "username": target.sentinel_username,
            "password": target.sentinel_password,
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": connect_timeout,
            **tls,
        }
        sentinel = Sentinel(list(target.hosts), sentinel_kwargs=sentinel_kwargs, db=target.db, **common)
        assert target.master is not None  # _validated
        client: _SentinelPrimary = sentinel.master_for(target.master, redis_class=_SentinelPrimary)
        client.sentinel_manager = sentinel
        return client
    host, port = target.hosts[0]
    return aioredis.Redis(
        host=host,
        port=port,
        db=target.db,
        health_check_interval=0,
        **common,
    )
