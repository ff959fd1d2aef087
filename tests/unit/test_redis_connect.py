"""``redis_url`` and the ``redis:`` block: every topology parses to what redis-py needs, and a URL
that cannot work is a policy error that names the problem (never the password)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from proxy.redis import RedisOptions, RedisUrlError, connect, parse
from proxy.redis.connect import _SentinelPrimary


def test_single_server_with_auth_and_db() -> None:
    t = parse("redis://app:p%40ss@cache.internal:6380/3")
    assert (t.kind, t.hosts, t.db, t.username, t.password, t.tls) == (
        "single",
        (("cache.internal", 6380),),
        3,
        "app",
        "p@ss",
        None,
    )


def test_rediss_turns_on_tls_with_ca_and_client_certificate_from_the_query() -> None:
    t = parse("rediss://r:6379/0?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem")
    assert t.tls is not None
    assert (t.tls.ca_file, t.tls.cert_file, t.tls.key_file, t.tls.check_hostname) == (
        "/ca.pem",
        "/c.pem",
        "/k.pem",
        True,
    )


def test_sentinel_url_lists_sentinels_then_master_then_db() -> None:
    t = parse("redis+sentinel://:pw@s1:26379,s2,[::1]:26380/mymaster/2?sentinel_password=spw")
    assert t.kind == "sentinel" and t.master == "mymaster" and t.db == 2
    assert t.hosts == (("s1", 26379), ("s2", 26379), ("::1", 26380))
    assert (t.password, t.sentinel_password) == ("pw", "spw")


def test_cluster_url_and_cluster_flag_on_a_plain_url_agree() -> None:
    by_scheme = parse("redis+cluster://n1:7000,n2:7001")
    by_flag = parse("redis://n1:7000", RedisOptions(cluster=True))
    assert by_scheme.kind == by_flag.kind == "cluster"
    assert by_scheme.hosts == (("n1", 7000), ("n2", 7001))


def test_block_sentinel_and_tls_override_the_url() -> None:
    options = RedisOptions.model_validate(
        {
            "sentinel": {"master": "main", "sentinels": ["a:1", "b:2"], "password": "spw"},
            "tls": {"ca_file": "/ca.pem", "check_hostname": False},
        }
    )
    t = parse("redis://:pw@ignored/1", options)
    assert (t.kind, t.master, t.hosts, t.db, t.sentinel_password) == (
        "sentinel",
        "main",
        (("a", 1), ("b", 2)),
        1,
        "spw",
    )
    assert t.tls is not None and t.tls.ca_file == "/ca.pem" and not t.tls.check_hostname


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("http://x:1", None, "scheme 'http' is not supported"),
        ("redis+sentinel://s1:26379", None, "needs the master name"),
        ("redis+cluster://n1:7000/2", None, "only database 0"),
        ("redis://x:port/0", None, "bad port"),
        ("redis://x/db", None, "expected a database number"),
        ("rediss://x?ssl_certfile=/c.pem", None, "both cert_file and key_file"),
        ("redis+sentinel://s:1/m", RedisOptions(cluster=True), "exclude each other"),
    ],
)
def test_urls_that_cannot_work_are_refused(url: str, options: RedisOptions | None, message: str) -> None:
    with pytest.raises(RedisUrlError, match=message):
        parse(url, options)


def test_a_bad_url_is_a_policy_error_with_position_and_without_the_password() -> None:
    from proxy.chain.registry import default_registry
    from proxy.errors import ConfigError
    from proxy.policy.loader import load_policy_text
    from proxy.policy.schema import build_policy_model

    text = (
        "plugins:\n  - type: budget\n    backend: redis\n"
        "    redis_url: redis+cluster://:hunter2@n1:7000/3\n"
        "    limits: [{name: rpm, requests: 1, window: minute}]\n"
    )
    with pytest.raises(ConfigError, match="only database 0") as info:
        load_policy_text(text, "policy.yaml", build_policy_model(default_registry()))
    assert "hunter2" not in str(info.value)
    assert "policy.yaml:" in str(info.value)


def test_passwords_stay_out_of_repr_but_change_the_digest() -> None:
    from proxy.redis import target_digest

    a = parse("redis+sentinel://:pw1@s:1/m?sentinel_password=spw")
    b = parse("redis+sentinel://:pw2@s:1/m?sentinel_password=spw")
    assert "pw1" not in repr(a) and "spw" not in repr(a)
    assert target_digest(a) != target_digest(b)  # a rotated password gets a fresh client


async def test_connect_builds_redis_py_clients_without_connecting() -> None:
    single = connect(parse("rediss://r:1/0?ssl_cert_reqs=none"), connect_timeout=0.1, socket_timeout=None)
    cluster = connect(parse("redis+cluster://n1:1"), connect_timeout=0.1, socket_timeout=None)
    primary = connect(parse("redis+sentinel://s:1/m"), connect_timeout=0.1, socket_timeout=None)
    assert isinstance(single, Redis) and isinstance(cluster, RedisCluster)
    assert isinstance(primary, _SentinelPrimary) and primary.sentinel_manager is not None
    for client in (single, cluster, primary):
        await client.aclose()
