"""Fault injection against the fake upstream: retries, deadlines, circuits, bulkheads, fallback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from proxy.demo.fake_scenario import FakeState, redact_credential
from proxy.demo.fake_upstream import fake_upstream_in_thread
from tests.harness import SidecarHarness, sidecar_harness

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def _policy(plugins: str, extra_upstreams: str = "", routes: str = "", upstream_opts: str = "") -> str:
    return (
        "version: 1\nupstreams:\n  primary:\n    base_url: {upstream}\n    read_timeout: 5\n"
        + upstream_opts
        + extra_upstreams
        + "default_upstream: primary\n"
        + routes
        + "plugins:\n"
        + plugins
    )


RETRY = "  - {type: retry, max_attempts: 3, base_delay: 0.01, max_delay: 0.05}\n"


def _post(h: SidecarHarness, body: dict[str, Any] = BODY, **headers: str) -> httpx.Response:
    return httpx.post(f"{h.v1}/chat/completions", json=body, headers=headers, timeout=20)


def _decisions(h: SidecarHarness) -> list[dict[str, Any]]:
    recent: list[dict[str, Any]] = httpx.get(f"{h.base_url}/admin/decisions").json()["recent"]
    return recent


@pytest.fixture
def retrying(tmp_path: Path) -> Iterator[SidecarHarness]:
    with sidecar_harness(tmp_path, policy=_policy(RETRY)) as h:
        yield h


def test_503_burst_is_retried_until_success(retrying: SidecarHarness) -> None:
    retrying.fake.push({"status": 503}, {"status": 503})
    r = _post(retrying)
    assert r.status_code == 200
    assert len(retrying.fake.requests) == 3
    retries = [d for d in _decisions(retrying) if d["action"] == "retry"]
    assert [d["detail"]["attempt"] for d in retries] == [1, 2]
    assert {d["plugin"] for d in retries} == {"retry"}


def test_retries_stop_at_max_attempts_and_the_provider_answer_is_returned(retrying: SidecarHarness) -> None:
    retrying.fake.push(*[{"status": 503}] * 5)
    r = _post(retrying)
    assert r.status_code == 503
    assert len(retrying.fake.requests) == 3


def test_429_retry_after_is_honoured_or_given_up_when_too_long(retrying: SidecarHarness) -> None:
    retrying.fake.push({"status": 429, "retry_after_ms": 50})
    assert _post(retrying).status_code == 200
    assert len(retrying.fake.requests) == 2

    retrying.fake.push({"status": 429, "retry_after": 120})  # beyond max_retry_after: give up at once
    c = openai.OpenAI(base_url=retrying.v1, api_key="x", max_retries=0)
    with pytest.raises(openai.RateLimitError) as info:
        c.chat.completions.create(**BODY)  # type: ignore[call-overload]
    assert info.value.response.headers["retry-after"] == "120"
    assert len(retrying.fake.requests) == 3


def test_validation_errors_are_never_retried(retrying: SidecarHarness) -> None:
    retrying.fake.push({"status": 400})
    assert _post(retrying).status_code == 400
    assert len(retrying.fake.requests) == 1


def test_malformed_json_and_reset_before_stream_are_retried(retrying: SidecarHarness) -> None:
    retrying.fake.push({"malformed": "json"})
    r = _post(retrying)
    assert r.status_code == 200 and r.json()["object"] == "chat.completion"
    assert len(retrying.fake.requests) == 2

    retrying.fake.push({"drop_after_chunks": 0})  # connection reset before any byte of the stream
    c = openai.OpenAI(base_url=retrying.v1, api_key="x", max_retries=0)
    chunks = list(c.chat.completions.create(**BODY, stream=True))  # type: ignore[call-overload]
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices).endswith("You said: hi")
    assert len(retrying.fake.requests) == 4


def test_reset_during_a_stream_is_never_retried(retrying: SidecarHarness) -> None:
    retrying.fake.push({"content": "x" * 40, "chunk_size": 4, "chunk_delay": 0.02, "drop_after_chunks": 4})
    c = openai.OpenAI(base_url=retrying.v1, api_key="x", max_retries=0)
    with pytest.raises(openai.APIError):
        for _ in c.chat.completions.create(**BODY, stream=True):  # type: ignore[call-overload]
            pass
    assert len(retrying.fake.requests) == 1


def test_deadline_bounds_all_attempts(tmp_path: Path) -> None:
    plugins = "  - {type: timeout, total: 0.6, client_header: x-request-timeout}\n" + RETRY
    with sidecar_harness(tmp_path, policy=_policy(plugins)) as h:
        h.fake.push(*[{"delay": 30}] * 3)
        started = time.monotonic()
        r = httpx.post(f"{h.v1}/chat/completions", json=BODY, timeout=10)
        assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"
        assert time.monotonic() - started < 10  # answered long before the upstream would have
        assert len(h.fake.requests) == 1  # no retry can fit in what is left of the deadline

        h.fake.reset()
        h.fake.push({"delay": 30})
        r = httpx.post(
            f"{h.v1}/chat/completions", json=BODY, headers={"x-request-timeout": "0.2"}, timeout=10
        )
        assert r.status_code == 504


def test_slow_first_token_times_out_and_is_retried(tmp_path: Path) -> None:
    opts = "    first_token_timeout: 0.3\n"
    with sidecar_harness(tmp_path, policy=_policy(RETRY, upstream_opts=opts)) as h:
        h.fake.push({"first_token_delay": 5})
        body = {**BODY, "stream": True}
        r = httpx.post(f"{h.v1}/chat/completions", json=body, timeout=10)
        assert r.status_code == 200 and "You said: hi" in "".join(
            json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            for line in r.text.split("\n\n")
            if line.startswith("data: {") and '"choices":[{' in line
        )
        assert len(h.fake.requests) == 2


def test_circuit_opens_fails_fast_then_probes_back(tmp_path: Path) -> None:
    plugins = "  - {type: circuit_breaker, consecutive_failures: 2, open_for: 0.5}\n"
    with sidecar_harness(tmp_path, policy=_policy(plugins)) as h:
        h.fake.push({"status": 503}, {"status": 503})
        assert [_post(h).status_code for _ in range(2)] == [503, 503]
        fast = _post(h)
        assert fast.status_code == 503 and fast.json()["error"]["code"] == "circuit_open"
        assert "retry-after" in fast.headers
        assert len(h.fake.requests) == 2  # the open circuit did not call the provider
        time.sleep(0.6)
        assert _post(h).status_code == 200  # half-open probe succeeds and closes the circuit
        assert _post(h).status_code == 200
        rules = [d["rule"] for d in _decisions(h) if d["plugin"] == "circuit_breaker"]
        assert rules == ["circuit_open", "circuit_half_open", "circuit_closed"]


def test_bulkhead_limits_concurrency_per_upstream(tmp_path: Path) -> None:
    plugins = "  - {type: bulkhead, max_concurrent: 1, max_wait: 0.1}\n"
    with sidecar_harness(tmp_path, policy=_policy(plugins)) as h:
        slow = {"content": "z" * 100, "chunk_size": 2, "chunk_delay": 0.03}
        with httpx.stream(
            "POST",
            f"{h.v1}/chat/completions",
            json={**BODY, "stream": True},
            headers={"x-fake-scenario": json.dumps(slow)},
        ) as r:
            chunks = r.iter_bytes()
            next(chunks)
            busy = _post(h)
            assert busy.status_code == 503 and busy.json()["error"]["code"] == "bulkhead_full"
            assert busy.headers["retry-after"] == "1"
            b"".join(chunks)
        assert _post(h).status_code == 200  # the slot came back when the stream ended


@pytest.fixture
def backup() -> Iterator[tuple[str, FakeState]]:
    with fake_upstream_in_thread() as pair:
        yield pair


def _two_targets(backup_url: str, plugins: str, on: str = "") -> str:
    return _policy(
        plugins.replace("{on}", on),
        extra_upstreams=f"  backup:\n    base_url: {backup_url}\n",
        routes="routes:\n  - match: gpt-4o\n    targets: [primary, 'backup:gpt-4o-mini']\n",
    )


def test_fallback_routes_around_a_dead_target(tmp_path: Path, backup: tuple[str, FakeState]) -> None:
    backup_url, backup_state = backup
    plugins = (
        "  - {type: fallback}\n"
        + RETRY
        + "  - {type: circuit_breaker, consecutive_failures: 3, open_for: 60}\n"
    )
    with sidecar_harness(tmp_path, policy=_two_targets(backup_url, plugins)) as h:
        h.fake.push(*[{"status": 503}] * 20)
        c = openai.OpenAI(base_url=h.v1, api_key="x", max_retries=0)
        raw = c.chat.completions.with_raw_response.create(**BODY)  # type: ignore[call-overload]
        assert raw.headers["x-sidecar-upstream"] == "backup"
        assert raw.parse().model == "gpt-4o-mini"  # the route's model for that target
        assert len(h.fake.requests) == 3 and len(backup_state.requests) == 1
        reroutes = [d for d in _decisions(h) if d["action"] == "reroute"]
        assert reroutes[-1]["detail"]["from"] == "primary" and reroutes[-1]["detail"]["to"] == "backup"

        # The primary's circuit is now open: the next request goes straight to the backup.
        stream = c.chat.completions.create(**BODY, stream=True)  # type: ignore[call-overload]
        assert "You said: hi" in "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
        assert len(h.fake.requests) == 3 and len(backup_state.requests) == 2


def test_fallback_only_on_listed_classes(tmp_path: Path, backup: tuple[str, FakeState]) -> None:
    backup_url, backup_state = backup
    plugins = "  - {type: fallback, triggers: [{on}]}\n"
    with sidecar_harness(tmp_path, policy=_two_targets(backup_url, plugins, on="context_length")) as h:
        h.fake.push({"status": 503})
        assert _post(h).status_code == 503  # 5xx is not a trigger here
        assert len(backup_state.requests) == 0
        h.fake.push(
            {
                "raw_body": json.dumps(
                    {
                        "error": {
                            "message": "This model's maximum context length is 8192",
                            "code": "context_length_exceeded",
                        }
                    }
                ),
                "status": 400,
            }
        )
        r = _post(h)
        assert r.status_code == 200 and r.headers["x-sidecar-upstream"] == "backup"


def test_weighted_split_sends_traffic_to_both_targets(tmp_path: Path, backup: tuple[str, FakeState]) -> None:
    backup_url, backup_state = backup
    policy = _policy(
        "  - {type: fallback}\n",
        extra_upstreams=f"  backup:\n    base_url: {backup_url}\n",
        routes="routes:\n  - match: gpt-4o\n    strategy: weighted\n"
        "    targets: [{target: primary, weight: 50}, {target: backup, weight: 50}]\n",
    )
    with sidecar_harness(tmp_path, policy=policy) as h:
        served = [_post(h).headers["x-sidecar-upstream"] for _ in range(40)]
        assert set(served) == {"primary", "backup"}
        assert served.count("backup") == len(backup_state.requests)


def test_azure_deployment_url_form(tmp_path: Path) -> None:
    opts = "    provider: azure\n    api_version: 2024-10-21\n    api_key: az-key\n"
    with sidecar_harness(
        tmp_path, policy=_policy("  []\n".replace("  []\n", "  - {type: timeout}\n"), upstream_opts=opts)
    ) as h:
        r = _post(h)
        seen = h.fake.requests[-1]
        assert seen.path == "/v1/openai/deployments/gpt-4o/chat/completions"
        assert seen.query == "api-version=2024-10-21"
        assert seen.headers["api-key"] == redact_credential("az-key") and "authorization" not in seen.headers
        assert r.status_code == 200
