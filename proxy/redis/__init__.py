"""Shared Redis connections: URL / block parsing and redis-py clients for one server, Sentinel,
Cluster and TLS. Every Redis-backed step builds its client here (see ``connect``)."""

from proxy.redis.config import RedisOptions, RedisSentinel, RedisTls
from proxy.redis.connect import RedisUrlError, Target, connect, parse, target_digest

__all__ = [
    "RedisOptions",
    "RedisSentinel",
    "RedisTls",
    "RedisUrlError",
    "Target",
    "connect",
    "parse",
    "target_digest",
]
