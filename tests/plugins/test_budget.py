"""The budget plugin end to end (memory backend): limits, headers, reconciliation, refunds."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.harness import SidecarHarness, sidecar_harness

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}


def _budget(limits: str, extra: str = "") -> str:
    return (
        "- type: headers\n  tenant_header: x-tenant-id\n"
        "- type: budget\n  id: budget\n" + extra + "  limits:\n" + limits
    )


def _usage(h: SidecarHarness, tenant: str = "t1", **query: str) -> dict[str, Any]:
    report: dict[str, Any] = httpx.get(
        f"{h.base_url}/admin/plugins/budget", params={"tenant": tenant, **query}
    ).json()
    return {lim["name"]: lim for lim in report["limits"]}


def _sdk(h: SidecarHarness, tenant: str = "t1") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=h.v1, api_key="sk-client", max_retries=0, default_headers={"x-tenant-id": tenant}
    )


def test_request_limit_gives_429_with_openai_headers(tmp_path: Path) -> None:
    limits = "    - {name: rpm, requests: 2, window: hour}\n"
    with sidecar_harness(tmp_path, _budget(limits)) as h:
        c = _sdk(h)
        first = c.chat.completions.with_raw_response.create(**BODY)  # type: ignore[call-overload]
        assert first.headers["x-ratelimit-limit-requests"] == "2"
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        assert first.headers["x-ratelimit-reset-requests"].endswith("s")
        c.chat.completions.create(**BODY)  # type: ignore[call-overload]
        with pytest.raises(openai.RateLimitError) as info:
            c.chat.completions.create(**BODY)  # type: ignore[call-overload]
        headers = info.value.response.headers
        assert int(headers["retry-after"]) >= 1
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert info.value.code == "rate_limit_exceeded"
        assert len(h.fake.requests) == 2  # the third never reached the provider
        # Another tenant has its own budget.
        _sdk(h, "t2").chat.completions.create(**BODY)  # type: ignore[call-overload]


def test_tokens_are_reserved_then_reconciled_with_reported_usage(tmp_path: Path) -> None:
    limits = "    - {name: tpm, tokens: 100000, window: hour}\n"
    with sidecar_harness(tmp_path, _budget(limits)) as h:
        answer = _sdk(h).chat.completions.create(**BODY, max_tokens=500)  # type: ignore[call-overload]
        assert answer.usage is not None
        time.sleep(0.1)  # on_complete runs after the answer is sent
        used = _usage(h)["tpm"]["used"]
        assert used == pytest.approx(answer.usage.total_tokens)  # not the 500 reserved


def test_stream_usage_is_requested_upstream_hidden_from_client_and_reconciled(tmp_path: Path) -> None:
    limits = "    - {name: tpm, tokens: 100000, window: hour}\n"
    with sidecar_harness(tmp_path, _budget(limits)) as h:
        stream = _sdk(h).chat.completions.create(**BODY, stream=True)  # type: ignore[call-overload]
        chunks = list(stream)
        assert all(ch.usage is None for ch in chunks)  # the client did not ask for usage
        sent = h.fake.requests[-1].json
        assert sent is not None and sent["stream_options"] == {"include_usage": True}
        time.sleep(0.1)
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert text and _usage(h)["tpm"]["used"] < 4096  # reconciled, not the default reserve


def test_stream_without_reported_usage_counts_the_streamed_text(tmp_path: Path) -> None:
    limits = "    - {name: out, output_tokens: 100000, window: hour}\n"
    with sidecar_harness(tmp_path, _budget(limits)) as h:
        body = {**BODY, "stream": True}
        scenario = {"content": "one two three four five", "usage": {}}
        with httpx.stream(
            "POST",
            f"{h.v1}/chat/completions",
            json=body,
            headers={"x-tenant-id": "t1", "x-fake-scenario": json.dumps(scenario)},
        ) as r:
            r.read()
        time.sleep(0.1)
        from proxy.tokens import count_text

        assert _usage(h)["out"]["used"] == count_text("one two three four five", "gpt-4o-mini")


def test_upstream_failure_refunds_the_reservation(tmp_path: Path) -> None:
    limits = "    - {name: rpm, requests: 5, window: hour}\n    - {name: tpm, tokens: 100000, window: hour}\n"
    with sidecar_harness(tmp_path, _budget(limits)) as h:
        with pytest.raises(openai.InternalServerError):
            _sdk(h).chat.completions.create(**BODY, extra_headers={"x-fake-scenario": '{"status": 503}'})  # type: ignore[call-overload]
        time.sleep(0.1)
        usage = _usage(h)
        assert usage["rpm"]["used"] == 0 and usage["tpm"]["used"] == 0


def test_concurrency_slot_is_held_while_streaming_and_released_on_disconnect(tmp_path: Path) -> None:
    limits = "    - {name: one-at-a-time, concurrent: 1}\n"
    with sidecar_harness(tmp_path, _budget(limits)) as h:
        slow = {"content": "z" * 200, "chunk_size": 2, "chunk_delay": 0.05}
        headers = {"x-tenant-id": "t1", "x-fake-scenario": json.dumps(slow)}
        with httpx.stream(
            "POST", f"{h.v1}/chat/completions", json={**BODY, "stream": True}, headers=headers
        ) as r:
            chunks = r.iter_bytes()  # keep a reference: a collected iterator closes the connection
            next(chunks)
            assert _usage(h)["one-at-a-time"]["used"] == 1
            busy = httpx.post(f"{h.v1}/chat/completions", json=BODY, headers={"x-tenant-id": "t1"})
            assert busy.status_code == 429
            assert busy.headers["x-ratelimit-remaining-concurrent"] == "0"
        # The client went away mid-stream: the slot must come back without waiting for the lease.
        deadline = time.monotonic() + 5
        while _usage(h)["one-at-a-time"]["used"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (
            httpx.post(f"{h.v1}/chat/completions", json=BODY, headers={"x-tenant-id": "t1"}).status_code
            == 200
        )


def test_concurrent_requests_never_exceed_the_limit(tmp_path: Path) -> None:
    limits = "    - {name: rpm, requests: 10, window: hour}\n"
    with sidecar_harness(tmp_path, _budget(limits)) as h:
        statuses: list[int] = []

        def send() -> None:
            statuses.append(
                httpx.post(
                    f"{h.v1}/chat/completions", json=BODY, headers={"x-tenant-id": "t1"}, timeout=30
                ).status_code
            )

        threads = [threading.Thread(target=send) for _ in range(25)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses.count(200) == 10 and statuses.count(429) == 15


def test_cost_limit_lowers_max_tokens_when_asked(tmp_path: Path) -> None:
    # gpt-4o-mini default price: $0.60 per 1M output tokens -> $0.0006 buys 1000 output tokens.
    limits = "    - {name: usd, cost_usd: 0.0006, window: day, on_exceed: lower_max_tokens}\n"
    extra = "  prices: {gpt-4o-mini: {input: 0.0, output: 0.6}}\n"
    with sidecar_harness(tmp_path, _budget(limits, extra)) as h:
        _sdk(h).chat.completions.create(**BODY, max_tokens=5000)  # type: ignore[call-overload]
        sent = h.fake.requests[-1].json
        assert sent is not None and 16 <= sent["max_tokens"] <= 1000


def test_request_larger_than_the_limit_is_refused_without_retry_after(tmp_path: Path) -> None:
    limits = "    - {name: tpm, tokens: 100, window: hour}\n"
    with sidecar_harness(tmp_path, _budget(limits)) as h:
        r = httpx.post(
            f"{h.v1}/chat/completions", json={**BODY, "max_tokens": 1000}, headers={"x-tenant-id": "t1"}
        )
        assert r.status_code == 429 and r.json()["error"]["code"] == "request_exceeds_limit"
        assert "retry-after" not in r.headers


def test_shadow_mode_records_but_never_limits(tmp_path: Path) -> None:
    limits = "    - {name: rpm, requests: 1, window: hour}\n"
    with sidecar_harness(tmp_path, _budget(limits, "  mode: shadow\n")) as h:
        for _ in range(3):
            assert (
                httpx.post(f"{h.v1}/chat/completions", json=BODY, headers={"x-tenant-id": "t1"}).status_code
                == 200
            )
        counts = httpx.get(f"{h.base_url}/admin/decisions").json()["counts"]
        limited = [c for c in counts if c["plugin"] == "budget" and c["action"] == "limit"]
        assert limited == [
            {"plugin": "budget", "rule": "rpm", "action": "limit", "mode": "shadow", "count": 2}
        ]


def test_self_report_shows_only_the_callers_own_budget(tmp_path: Path) -> None:
    limits = (
        "    - {name: rpm, requests: 10, window: hour}\n"
        "    - {name: key-rpm, requests: 10, window: hour, key: [api_key]}\n"
    )
    extra = "  tenant_from: header:x-tenant-id\n"
    with sidecar_harness(tmp_path, _budget(limits, extra)) as h:
        for tenant, n in (("alice", 3), ("bob", 1)):
            for _ in range(n):
                httpx.post(
                    f"{h.v1}/chat/completions",
                    json=BODY,
                    headers={"x-tenant-id": tenant, "authorization": f"Bearer key-{tenant}"},
                )
        time.sleep(0.1)
        mine = httpx.get(
            f"{h.base_url}/sidecar/budget", headers={"x-tenant-id": "bob", "authorization": "Bearer key-bob"}
        ).json()
        assert mine["identity"]["tenant"] == "bob"
        assert {lim["name"]: lim["used"] for lim in mine["limits"]} == {"rpm": 1, "key-rpm": 1}
        assert "alice" not in json.dumps(mine)
        assert _usage(h, "alice")["rpm"]["used"] == 3  # the admin sees any tenant


def test_invalid_budget_configs_are_rejected_at_load(tmp_path: Path) -> None:
    from proxy.chain.registry import default_registry
    from proxy.errors import ConfigError
    from proxy.policy.loader import load_policy_text
    from proxy.policy.schema import build_policy_model

    model = build_policy_model(default_registry())
    head = "version: 1\nplugins:\n  - type: budget\n    limits:\n"
    for bad, message in [
        ("      - {name: a, requests: 1}\n", "needs a window"),
        ("      - {name: a, requests: 1, tokens: 2, window: minute}\n", "exactly one"),
        ("      - {name: a, concurrent: 1, window: minute}\n", "take no window"),
        ("      - {name: a, requests: 1, window: minute, on_exceed: lower_max_tokens}\n", "lower_max_tokens"),
        ("      - {name: a, requests: 1, window: fortnight}\n", "window"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_policy_text(head + bad, "p.yaml", model)
    with pytest.raises(ConfigError, match="redis_url"):
        load_policy_text(
            head.replace("    limits:", "    backend: redis\n    limits:")
            + "      - {name: a, requests: 1, window: minute}\n",
            "p.yaml",
            model,
        )


def test_usage_and_cost_are_recorded_in_the_access_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    limits = "    - {name: usd, cost_usd: 100, window: day}\n"
    extra = "  prices: {gpt-4o-mini: {input: 1000.0, output: 2000.0}}\n"  # $0.001 / $0.002 per token
    caplog.set_level(logging.INFO, logger="policy_sidecar.access")
    with sidecar_harness(tmp_path, _budget(limits, extra), log_requests=True) as h:
        answer = _sdk(h).chat.completions.create(**BODY)  # type: ignore[call-overload]
        time.sleep(0.2)
    assert answer.usage is not None
    lines = [r for r in caplog.records if r.getMessage() == "request"]
    assert lines, "no access log line"
    record = lines[-1].__dict__
    assert record["usage"] == {
        "prompt_tokens": answer.usage.prompt_tokens,
        "completion_tokens": answer.usage.completion_tokens,
    }
    expected = answer.usage.prompt_tokens * 0.001 + answer.usage.completion_tokens * 0.002
    assert record["cost_usd"] == pytest.approx(expected)
