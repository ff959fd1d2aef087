"""The response cache end to end: openai SDK -> real sidecar -> recording fake upstream (memory backend).

Redis-backed behaviour (shared store, Redis down) is in ``test_cache_redis.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.harness import SidecarHarness, sidecar_harness

BODY: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "temperature": 0,
    "messages": [{"role": "user", "content": "what is the launch code?"}],
}
ANSWER = "The code is secret-code-123, keep it safe."


def policy(cache: str = "{type: cache, ttl: 60}", extra: str = "", fallback: str = "") -> str:
    return (
        "version: 1\nupstreams:\n  default:\n    base_url: {upstream}\n    read_timeout: 5\n"
        "plugins:\n  - {type: headers, tenant_header: x-tenant-id}\n"
        f"  - {cache}\n{extra}{fallback}"
    )


def client(h: SidecarHarness, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=h.v1, api_key="sk-test", max_retries=0, default_headers=headers)


def ask(h: SidecarHarness, body: dict[str, Any] = BODY, **headers: str) -> tuple[str, httpx.Headers]:
    raw = client(h, **headers).chat.completions.with_raw_response.create(**body)
    return raw.parse().choices[0].message.content or "", raw.headers


def decisions(h: SidecarHarness) -> list[dict[str, Any]]:
    recent: list[dict[str, Any]] = httpx.get(f"{h.base_url}/admin/decisions").json()["recent"]
    return recent


@pytest.fixture
def cached(tmp_path: Path) -> Iterator[SidecarHarness]:
    with sidecar_harness(tmp_path, policy=policy()) as h:
        yield h


def test_second_identical_request_is_a_hit_and_never_reaches_the_provider(cached: SidecarHarness) -> None:
    cached.fake.push({"content": ANSWER})
    text, headers = ask(cached)
    assert (text, headers["x-sidecar-cache"]) == (ANSWER, "miss")
    text, headers = ask(cached)
    assert (text, headers["x-sidecar-cache"]) == (ANSWER, "hit")
    assert int(headers["age"]) >= 0
    assert len(cached.fake.requests) == 1
    report = httpx.get(f"{cached.base_url}/admin/plugins/cache").json()
    assert report["backend"] == "memory" and report["entries"] == 1 and report["bytes"] > 0
    hits = [d for d in decisions(cached) if d["plugin"] == "cache" and d["rule"] == "hit"]
    assert hits and hits[-1]["mode"] == "enforce"
    assert hits[-1]["detail"]["saved_completion_tokens"] > 0


def test_key_ignores_user_and_metadata_but_not_the_prompt(cached: SidecarHarness) -> None:
    cached.fake.push({"content": ANSWER})
    ask(cached)
    _, headers = ask(cached, {**BODY, "user": "someone-else"})
    assert headers["x-sidecar-cache"] == "hit"
    other = {**BODY, "messages": [{"role": "user", "content": "another question"}]}
    _, headers = ask(cached, other)
    assert headers["x-sidecar-cache"] == "miss"
    assert len(cached.fake.requests) == 2


def test_nondeterministic_requests_bypass(cached: SidecarHarness) -> None:
    body = {k: v for k, v in BODY.items() if k != "temperature"}
    for _ in range(2):
        _, headers = ask(cached, body)
        assert headers["x-sidecar-cache"] == "bypass"
    assert len(cached.fake.requests) == 2
    _, headers = ask(cached, {**body, "seed": 7})  # a seed makes it cacheable
    assert headers["x-sidecar-cache"] == "miss"
    _, headers = ask(cached, {**body, "seed": 7})
    assert headers["x-sidecar-cache"] == "hit"


def test_cache_control_no_store_no_cache_and_max_age(cached: SidecarHarness) -> None:
    cached.fake.push({"content": "first"}, {"content": "second"}, {"content": "third"})
    text, headers = ask(cached, **{"cache-control": "no-store"})
    assert (text, headers["x-sidecar-cache"]) == ("first", "bypass")
    text, headers = ask(cached)  # no-store stored nothing
    assert (text, headers["x-sidecar-cache"]) == ("second", "miss")
    text, headers = ask(cached, **{"cache-control": "no-cache"})  # not read, but refreshed
    assert (text, headers["x-sidecar-cache"]) == ("third", "bypass")
    text, headers = ask(cached)
    assert (text, headers["x-sidecar-cache"]) == ("third", "hit")
    text, headers = ask(cached, **{"cache-control": "max-age=3600"})
    assert headers["x-sidecar-cache"] == "hit"
    time.sleep(0.05)
    _, headers = ask(cached, **{"cache-control": "max-age=0"})  # older than 0 s: fetched again
    assert headers["x-sidecar-cache"] == "miss"
    assert len(cached.fake.requests) == 4


def test_ttl_expiry_and_per_route_ttl(tmp_path: Path) -> None:
    cache = "{type: cache, ttl: 60, route_ttls: {chat.completions: 2}}"
    with sidecar_harness(tmp_path, policy=policy(cache)) as h:
        ask(h)
        assert ask(h)[1]["x-sidecar-cache"] == "hit"
        time.sleep(2.1)
        assert ask(h)[1]["x-sidecar-cache"] == "miss"
        assert len(h.fake.requests) == 2


def test_tenants_never_share_answers(cached: SidecarHarness) -> None:
    cached.fake.push({"content": "for tenant a"}, {"content": "for tenant b"})
    assert ask(cached, **{"x-tenant-id": "a"})[0] == "for tenant a"
    text, headers = ask(cached, **{"x-tenant-id": "b"})
    assert (text, headers["x-sidecar-cache"]) == ("for tenant b", "miss")
    text, headers = ask(cached, **{"x-tenant-id": "a"})
    assert (text, headers["x-sidecar-cache"]) == ("for tenant a", "hit")
    # Another API key is another caller, even in the same tenant.
    other = openai.OpenAI(
        base_url=cached.v1, api_key="sk-other", max_retries=0, default_headers={"x-tenant-id": "a"}
    )
    assert other.chat.completions.with_raw_response.create(**BODY).headers["x-sidecar-cache"] == "miss"


def test_non_stream_answer_replays_as_a_stream_with_usage(cached: SidecarHarness) -> None:
    cached.fake.push({"content": ANSWER})
    ask(cached)
    stream = client(cached).chat.completions.create(
        **BODY, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert len(cached.fake.requests) == 1


def test_streamed_answer_replays_as_json(cached: SidecarHarness) -> None:
    cached.fake.push({"content": ANSWER, "chunk_size": 3})
    usage = {"include_usage": True}
    stream = client(cached).chat.completions.create(**BODY, stream=True, stream_options=usage)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == ANSWER
    text, headers = ask(cached)
    assert (text, headers["x-sidecar-cache"]) == (ANSWER, "hit")
    # And a streamed answer replays as a stream too, without usage when it is not asked for.
    chunks = list(client(cached).chat.completions.create(**BODY, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert all(c.usage is None for c in chunks)
    assert len(cached.fake.requests) == 1


def test_tool_calls_survive_the_replay(cached: SidecarHarness) -> None:
    cached.fake.push({"tool_calls": [{"name": "lookup", "arguments": '{"q": "x"}'}]})
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    body = {**BODY, "tools": tools}
    first = client(cached).chat.completions.create(**body).choices[0].message.tool_calls
    assert first is not None
    chunks = list(client(cached).chat.completions.create(**body, stream=True))
    args = "".join(
        (c.choices[0].delta.tool_calls or [])[0].function.arguments or ""  # type: ignore[union-attr]
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    )
    assert args == first[0].function.arguments
    assert len(cached.fake.requests) == 1


REDACT = (
    "  - {type: blocklist, id: codes, patterns: ['secret-code-\\d+'], action: redact, scan_request: false}\n"
)


def test_policy_change_never_replays_an_unredacted_answer(cached: SidecarHarness) -> None:
    cached.fake.push({"content": ANSWER}, {"content": ANSWER}, {"content": ANSWER})
    assert ask(cached)[0] == ANSWER
    assert ask(cached)[1]["x-sidecar-cache"] == "hit"
    cached.write_policy(policy(extra=REDACT).replace("{upstream}", cached.upstream_url))
    cached.wait_for_revision(lambda info: any(p["id"] == "codes" for p in info["plugins"]))
    text, headers = ask(cached)
    assert "secret-code-123" not in text and "[REDACTED]" in text
    assert headers["x-sidecar-cache"] == "miss"
    # The redacted answer was changed by a guard: not stored (store_guarded is off).
    text, headers = ask(cached)
    assert headers["x-sidecar-cache"] == "miss" and "secret-code-123" not in text
    assert len(cached.fake.requests) == 3


def test_shadow_cache_counts_would_be_hits_without_serving(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, policy=policy("{type: cache, mode: shadow}")) as h:
        ask(h)
        _, headers = ask(h)
        assert "x-sidecar-cache" not in headers  # a shadow step changes nothing on the answer
        assert len(h.fake.requests) == 2
        hits = [d for d in decisions(h) if d["plugin"] == "cache" and d["rule"] == "hit"]
        assert [d["mode"] for d in hits] == ["shadow"]
        assert hits[0]["detail"]["saved_prompt_tokens"] > 0
        assert hits[0]["detail"]["saved_usd"] > 0
        metrics = httpx.get(f"{h.base_url}/metrics").text
        assert 'sidecar_cache_saved_tokens_total{mode="shadow",plugin="cache"}' in metrics
        live = httpx.get(f"{h.base_url}/admin/live.json").json()
        assert live["cache"]["shadow"]["hits"] == 1


STALE = "  - type: fallback\n    cached: {max_stale: 60}\n  - {type: retry, max_attempts: 1}\n"


def test_upstream_outage_serves_a_stale_answer(tmp_path: Path) -> None:
    cache = "{type: cache, ttl: 0.2}"
    with sidecar_harness(tmp_path, policy=policy(cache, fallback=STALE)) as h:
        h.fake.push({"content": ANSWER})
        ask(h)
        time.sleep(0.3)
        h.fake.push({"status": 503})
        text, headers = ask(h)
        assert (text, headers["x-sidecar-cache"]) == (ANSWER, "stale")
        assert int(headers["age"]) >= 0
        h.fake.push({"status": 503})
        chunks = list(client(h).chat.completions.create(**BODY, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
        # Nothing cached for another prompt: the outage is the client's error, as before.
        h.fake.push({"status": 503})
        with pytest.raises(openai.InternalServerError) as info:
            client(h).chat.completions.create(**{**BODY, "messages": [{"role": "user", "content": "new"}]})
        assert info.value.status_code == 503


def test_stale_answer_older_than_max_stale_is_not_served(tmp_path: Path) -> None:
    cache = "{type: cache, ttl: 0.1}"
    fallback = "  - type: fallback\n    cached: {max_stale: 0.1}\n"
    with sidecar_harness(tmp_path, policy=policy(cache, fallback=fallback)) as h:
        ask(h)
        time.sleep(0.4)
        h.fake.push({"status": 503})
        with pytest.raises(openai.InternalServerError):
            client(h).chat.completions.create(**BODY)


def test_budget_charges_nothing_for_a_hit(tmp_path: Path) -> None:
    budget = "{type: budget, limits: [{name: tpm, tokens: 100000, window: minute}]}"
    text = (
        "version: 1\nupstreams:\n  default:\n    base_url: {upstream}\n"
        f"plugins:\n  - {{type: headers, tenant_header: x-tenant-id}}\n  - {budget}\n  - {{type: cache}}\n"
    )
    with sidecar_harness(tmp_path, policy=text) as h:
        ask(h)
        assert ask(h)[1]["x-sidecar-cache"] == "hit"
        charged = [d for d in decisions(h) if d["plugin"] == "budget" and d["rule"] == "cache_hit"]
        assert len(charged) == 1 and charged[0]["detail"]["charged_tokens"] == 0


def test_anthropic_sdk_hits_as_json_and_as_a_stream(cached: SidecarHarness) -> None:
    c = anthropic.Anthropic(base_url=cached.base_url, api_key="sk-ant-client", max_retries=0)
    ask_ = {
        "model": "gpt-4o",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
        "extra_body": {"temperature": 0},
    }
    cached.fake.push({"content": ANSWER})
    first = c.messages.with_raw_response.create(**ask_)  # type: ignore[arg-type]
    assert first.headers["x-sidecar-cache"] == "miss"
    second = c.messages.with_raw_response.create(**ask_)  # type: ignore[arg-type]
    assert second.headers["x-sidecar-cache"] == "hit"
    assert second.parse().content[0].text == ANSWER  # type: ignore[union-attr]
    with c.messages.stream(**ask_) as stream:  # type: ignore[arg-type]
        assert "".join(stream.text_stream) == ANSWER
    assert len(cached.fake.requests) == 1


def test_replay_through_guards_serves_hits_via_the_response_path(tmp_path: Path) -> None:
    cache = "{type: cache, replay_through_guards: true}"
    with sidecar_harness(tmp_path, policy=policy(cache)) as h:
        h.fake.push({"content": ANSWER})
        assert ask(h)[0] == ANSWER
        text, headers = ask(h)
        assert (text, headers["x-sidecar-cache"]) == (ANSWER, "hit")
        usage = {"include_usage": True}
        chunks = list(client(h).chat.completions.create(**BODY, stream=True, stream_options=usage))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
        assert chunks[-1].usage is not None
        assert len(h.fake.requests) == 1
        # A hit is not a local reply here: it went through the upstream wrapper, not the reply path.
        recent = [d for d in decisions(h) if d["plugin"] == "cache"]
        assert {d["rule"] for d in recent} == {"hit"}


def test_live_page_shows_what_a_shadow_cache_would_save(tmp_path: Path) -> None:
    from tests.e2e.test_live_page import _browser

    browser = _browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def cell(css: str) -> str:
        found = browser.find_elements(By.CSS_SELECTOR, f'#cache tr[data-mode="shadow"] {css}')
        return str(found[0].text) if found else ""

    with sidecar_harness(tmp_path, policy=policy("{type: cache, mode: shadow}")) as h:
        try:
            for _ in range(3):
                ask(h)
            browser.get(f"{h.base_url}/admin/live?every=1")
            WebDriverWait(browser, 20).until(lambda _: cell("td.hits") == "2")
            assert int(cell("td.tokens")) > 0
            assert float(cell("td.usd")) > 0
        finally:
            browser.quit()
