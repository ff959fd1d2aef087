"""One way to reach Redis for every step that shares state (budget, idempotency, pii vault).

Supported topologies, each with redis-py's own asyncio client (no hand-rolled routing):

* ``redis://[user:pass@]host:port/db`` — one server (``redis.asyncio.Redis``);
* ``rediss://...`` — the same over TLS; ``?ssl_ca_certs=``, ``ssl_certfile=``, ``ssl_keyfile=``,
  ``ssl_check_hostname=false`` or the ``tls:`` block give the CA and a client certificate;
* ``redis+sentinel://[user:pass@]s1:26379,s2:26379,s3:26379/<master>[/db]`` (or a plain URL plus
  a ``sentinel:`` block) — the primary found through Sentinel
  (``redis.asyncio.sentinel.Sentinel.master_for``): after a failover the next connection asks
  the sentinels again and lands on the new primary, and a demoted primary's ``READONLY`` answer
  drops the connection; ``?sentinel_password=`` / ``sentinel_username=`` authenticate to the
  sentinels themselves;
* ``redis+cluster://[user:pass@]n1:7000,n2:7001/`` (or ``cluster: true``) — Redis Cluster
  (``redis.asyncio.cluster.RedisCluster``): MOVED / ASK redirections are followed inside the
  client and refresh its slot map, so they never reach a step as errors.

``rediss+sentinel://`` and ``rediss+cluster://`` combine TLS with either. A ``Target`` is the
parsed, validated form; :func:`target_digest` names it for sharing a client across policy
revisions without putting the password in the resource key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from proxy.redis.config import RedisOptions

Kind = Literal["single", "sentinel", "cluster"]
_SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis": ("single", False),
    "rediss": ("single", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
_TRUE = {"1", "true", "yes", "on"}


class RedisUrlError(ValueError):
    """A ``redis_url`` / ``redis:`` block that cannot work; the message says what to change."""


@dataclass(frozen=True)
class Tls:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    check_hostname: bool = True
    verify: bool = True  # ssl_cert_reqs=none turns verification off (tests, never production)


@dataclass(frozen=True)
class Target:
    """Where Redis is and how to talk to it (parsed from the URL and the optional block).

    Passwords stay out of ``repr`` (a Target may end up in a log line or a traceback)."""

    kind: Kind
    hosts: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: Tls | None = None
    master: str | None = None  # sentinel only
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

    @property
    def cluster(self) -> bool:
        return self.kind == "cluster"


def _hostport(text: str, default_port: int) -> tuple[str, int]:
    text = text.strip()
    if not text:
        raise RedisUrlError("empty host in redis_url")
    if text.startswith("["):  # [ipv6]:port
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    try:
        return host, int(port) if port else default_port
    except ValueError:
        raise RedisUrlError(f"bad port in {text!r}") from None


def _flag(query: dict[str, list[str]], *names: str) -> str | None:
    for name in names:
        if name in query:
            return query[name][-1]
    return None


def parse(url: str, options: RedisOptions | None = None) -> Target:
    """Parse ``url`` (see the module docstring), then apply the ``redis:`` block over it."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise RedisUrlError(
            f"redis_url scheme {scheme!r} is not supported; use one of "
            + ", ".join(f"{s}://" for s in _SCHEMES)
        )
    kind, tls_on = _SCHEMES[scheme]
    netloc = parts.netloc
    userinfo, _, hostlist = netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, _, pw = userinfo.partition(":")
        username, password = (unquote(user) or None), (unquote(pw) or None)
    default_port = 26379 if kind == "sentinel" else 6379
    hosts = tuple(_hostport(h, default_port) for h in hostlist.split(",")) if hostlist else ()
    path = [p for p in parts.path.split("/") if p]
    master = None
    db = 0
    if kind == "sentinel" and path:
        master = unquote(path.pop(0))
    if path:
        try:
            db = int(path[0])
        except ValueError:
            raise RedisUrlError(f"redis_url path {parts.path!r}: expected a database number") from None
    query = parse_qs(parts.query)
    ca = _flag(query, "ssl_ca_certs", "ca_file")
    cert = _flag(query, "ssl_certfile", "cert_file")
    key = _flag(query, "ssl_keyfile", "key_file")
    check = _flag(query, "ssl_check_hostname")
    reqs = _flag(query, "ssl_cert_reqs")
    tls = None
    if tls_on or ca or cert:
        hostname = (check or "true").lower() in _TRUE
        tls = Tls(ca, cert, key, check_hostname=hostname, verify=(reqs or "required") != "none")
    target = Target(
        kind,
        hosts,
        db,
        username,
        password,
        tls,
        master,
        _flag(query, "sentinel_username"),
        _flag(query, "sentinel_password"),
    )
    if options is not None:
        target = _apply(target, options)
    return _validated(target)


def _apply(target: Target, options: RedisOptions) -> Target:
    if options.tls is not None:
        t = options.tls
        base = target.tls or Tls()
        target = replace(
            target,
            tls=Tls(
                t.ca_file or base.ca_file,
                t.cert_file or base.cert_file,
                t.key_file or base.key_file,
                t.check_hostname and base.check_hostname,
                base.verify,
            ),
        )
    if options.sentinel is not None:
        s = options.sentinel
        target = replace(
            target,
            kind="sentinel",
            hosts=tuple(_hostport(h, 26379) for h in s.sentinels),
            master=s.master,
            sentinel_username=s.username.get_secret_value() if s.username else target.sentinel_username,
            sentinel_password=s.password.get_secret_value() if s.password else target.sentinel_password,
        )
    if options.cluster:
        if target.kind == "sentinel":
            raise RedisUrlError("redis: cluster and sentinel exclude each other")
        target = replace(target, kind="cluster")
    return target


def _validated(target: Target) -> Target:
    if not target.hosts:
        raise RedisUrlError("redis_url names no host")
    if target.kind == "sentinel" and not target.master:
        raise RedisUrlError("a sentinel URL needs the master name: redis+sentinel://host:26379/<master>")
    if target.kind == "cluster" and target.db != 0:
        raise RedisUrlError("Redis Cluster has only database 0")
    if target.tls is not None and bool(target.tls.cert_file) != bool(target.tls.key_file):
        raise RedisUrlError("a TLS client certificate needs both cert_file and key_file")
    return target


def target_digest(target: Target) -> str:
    """A short stable name of ``target`` (passwords included, so a rotated password reconnects)."""
    secrets = (target.password, target.sentinel_password)
    return hashlib.sha256(repr((target, secrets)).encode()).hexdigest()[:16]


def _tls_kwargs(tls: Tls | None) -> dict[str, Any]:
    if tls is None:
        return {}
    return {
        "ssl": True,
        "ssl_ca_certs": tls.ca_file,
        "ssl_certfile": tls.cert_file,
        "ssl_keyfile": tls.key_file,
        "ssl_check_hostname": tls.check_hostname and tls.verify,
        "ssl_cert_reqs": "required" if tls.verify else "none",
    }


def connect(
    target: Target,
    *,
    connect_timeout: float,
    socket_timeout: float | None,
    decode_responses: bool = False,
) -> Any:
    """A redis-py asyncio client for ``target``: ``Redis``, a Sentinel-managed ``Redis``, or
    ``RedisCluster``. Nothing connects until the first command (policy load never blocks)."""
    # redis-py (~8 MB of RSS with its asyncio, cluster and sentinel modules) is imported on the
    # first connect: a policy without a Redis-backed step never loads it (issue 17).
    from proxy.redis.clients import build_client

    return build_client(target, connect_timeout, socket_timeout, decode_responses, _tls_kwargs(target.tls))


def __getattr__(name: str) -> Any:
    """``_SentinelPrimary`` lives with the other redis-py code (``proxy.redis.clients``)."""
    if name == "_SentinelPrimary":
        from proxy.redis.clients import _SentinelPrimary

        return _SentinelPrimary
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
