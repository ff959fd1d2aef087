"""The response cache on a real redis-server: shared by replicas, TTLs in Redis, fail-open when down."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from tests.e2e.test_cache import ANSWER, BODY, REDACT, ask, client, decisions, policy
from tests.harness import sidecar_harness
from tests.redis_support import REDIS, RedisServer

pytestmark = pytest.mark.skipif(
    REDIS is None, reason="redis-server is not installed (apt-get install redis-server; .ci/run installs it)"
)


def _cache(url: str, ttl: float = 60, keep_stale: float = 600) -> str:
    return f"{{type: cache, backend: redis, redis_url: '{url}', ttl: {ttl}, keep_stale: {keep_stale}}}"


def _keys(server: RedisServer) -> list[bytes]:
    return sorted(redis.Redis.from_url(server.url).keys("sidecar:cache:*"))


def test_replicas_share_answers_through_redis(tmp_path: Path, redis_server: RedisServer) -> None:
    text = policy(_cache(redis_server.url, ttl=60, keep_stale=600))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with sidecar_harness(tmp_path / "a", policy=text) as a:
        # Replicas run the same policy (the same upstream): b points at a's provider.
        with sidecar_harness(tmp_path / "b", policy=text.replace("{upstream}", a.upstream_url)) as b:
            a.fake.push({"content": ANSWER})
            assert ask(a)[1]["x-sidecar-cache"] == "miss"
            text_b, headers = ask(b)
            assert (text_b, headers["x-sidecar-cache"]) == (ANSWER, "hit")
            assert len(a.fake.requests) == 1  # replica b never called the provider
        keys = _keys(redis_server)
        assert len(keys) == 1
        pttl = redis.Redis.from_url(redis_server.url).pttl(keys[0])
        assert 600_000 < pttl <= 660_000  # ttl + keep_stale, forgotten by Redis itself


def test_tenants_and_policies_get_separate_redis_keys(tmp_path: Path, redis_server: RedisServer) -> None:
    with sidecar_harness(tmp_path, policy=policy(_cache(redis_server.url))) as h:
        h.fake.push({"content": ANSWER}, {"content": ANSWER}, {"content": ANSWER})
        ask(h, **{"x-tenant-id": "a"})
        ask(h, **{"x-tenant-id": "b"})
        assert ask(h, **{"x-tenant-id": "b"})[1]["x-sidecar-cache"] == "hit"
        assert len(_keys(redis_server)) == 2
        h.write_policy(policy(_cache(redis_server.url), extra=REDACT).replace("{upstream}", h.upstream_url))
        h.wait_for_revision(lambda info: any(p["id"] == "codes" for p in info["plugins"]))
        text, headers = ask(h, **{"x-tenant-id": "a"})
        assert headers["x-sidecar-cache"] == "miss" and "secret-code-123" not in text


def test_redis_down_fails_open_with_a_record(tmp_path: Path, redis_server: RedisServer) -> None:
    with sidecar_harness(tmp_path, policy=policy(_cache(redis_server.url))) as h:
        ask(h)
        assert ask(h)[1]["x-sidecar-cache"] == "hit"
        redis_server.kill()
        for _ in range(2):  # answered by the provider; the Redis client's short timeouts bound the wait
            _, headers = ask(h)
            assert headers["x-sidecar-cache"] == "miss"
        down = [d for d in decisions(h) if d["plugin"] == "cache" and d["rule"] == "backend_unavailable"]
        assert {d["detail"]["op"] for d in down} == {"get", "put"}
        assert len(h.fake.requests) == 3


def test_stale_answer_from_redis_on_outage(tmp_path: Path, redis_server: RedisServer) -> None:
    fallback = "  - type: fallback\n    cached: {max_stale: 60}\n"
    with sidecar_harness(tmp_path, policy=policy(_cache(redis_server.url, ttl=0.2), fallback=fallback)) as h:
        h.fake.push({"content": ANSWER})
        ask(h)
        time.sleep(0.3)
        h.fake.push({"status": 500})
        text, headers = ask(h)
        assert (text, headers["x-sidecar-cache"]) == (ANSWER, "stale")
        h.fake.push({"status": 502})
        stream = client(h).chat.completions.create(**BODY, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == ANSWER
