"""``canary: P`` enforces a step on P percent of requests and runs it as shadow on the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import httpx
import pytest
from pydantic import ValidationError

from proxy.chain.chain import Chain, Step, canary_bucket
from proxy.chain.context import ActiveStep, RequestContext
from proxy.chain.plugin import Deps, Plugin, PluginConfig, Resources
from proxy.errors import Rejected
from proxy.models import ChatRequest, ChatResponse, Route
from proxy.models.upstream import BufferedResponse, UpstreamRequest, UpstreamResponse
from tests.harness import sidecar_harness


class _NoUpstream:
    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        return BufferedResponse(200)


class StrictConfig(PluginConfig):
    type: Literal["strict"] = "strict"


class Strict(Plugin[StrictConfig]):
    """Flags every response and rejects every request: what it did shows the mode it ran in."""

    Config = StrictConfig

    async def on_request(self, req: ChatRequest, ctx: RequestContext) -> None:
        raise Rejected("no", code="strict")

    async def on_response(self, resp: ChatResponse, ctx: RequestContext) -> None:
        ctx.record("seen", "flag")


def _chain(canary: float | None) -> Chain:
    cfg = StrictConfig(canary=canary)
    step = Step("strict", Strict(cfg, Deps(Resources())), "enforce", "fail_closed", None,
                ActiveStep("strict", "enforce"), canary)  # fmt: skip
    return Chain([step], _NoUpstream())


def _req() -> ChatRequest:
    return ChatRequest({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, Route.CHAT)


async def _run(chain: Chain, rid: str) -> tuple[bool, list[str]]:
    """(enforced, the modes of every decision) for one request id, through both hooks."""
    ctx = RequestContext(rid, Route.CHAT, {}, "rev", "m")
    try:
        await chain.run_request(_req(), ctx)
        enforced = False
    except Rejected:
        enforced = True
    else:
        await chain.run_response(ChatResponse({"choices": []}, Route.CHAT), ctx)
    return enforced, [d.mode for d in ctx.decisions]


async def test_the_canary_share_is_enforced_and_the_rest_is_shadow() -> None:
    chain = _chain(25)
    results = [await _run(chain, f"req-{i}") for i in range(2000)]
    enforced = sum(1 for e, _ in results if e)
    assert 400 < enforced < 600  # 25% of 2000, from a hash: the same every run
    for e, modes in results:
        # Every hook of one request ran in the same mode, and the records say which.
        assert modes == (["enforce"] if e else ["shadow", "shadow"])


async def test_a_request_id_always_gets_the_same_side() -> None:
    chain = _chain(50)
    for i in range(50):
        first = await _run(chain, f"id-{i}")
        assert await _run(chain, f"id-{i}") == first
        ctx = RequestContext(f"id-{i}", Route.CHAT, {}, "rev", "m")
        assert first[0] == (canary_bucket(ctx) < 50)


async def test_zero_and_hundred_percent() -> None:
    assert not any([(await _run(_chain(0), f"r{i}"))[0] for i in range(100)])
    assert all([(await _run(_chain(100), f"r{i}"))[0] for i in range(100)])


def test_canary_needs_enforce_and_a_percentage() -> None:
    with pytest.raises(ValidationError, match="canary applies to mode: enforce"):
        StrictConfig(mode="shadow", canary=10)
    with pytest.raises(ValidationError):
        StrictConfig(canary=150)


def _ids(inside: bool, percent: float, n: int) -> list[str]:
    """Request ids on one side of a ``percent`` canary."""
    out: list[str] = []
    i = 0
    while len(out) < n:
        rid = f"client-{i}"
        if (canary_bucket(RequestContext(rid, Route.CHAT, {})) < percent) == inside:
            out.append(rid)
        i += 1
    return out


def test_canary_end_to_end_blocks_only_the_canary_share(tmp_path: Path) -> None:
    plugins = """
- type: blocklist
  id: words
  keywords: [forbidden]
  scan_response: false
  canary: 30
"""
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "a forbidden word"}]}
    with sidecar_harness(tmp_path, plugins) as h:
        for rid in _ids(True, 30, 3):
            r = httpx.post(f"{h.v1}/chat/completions", json=body, headers={"x-request-id": rid}, timeout=20)
            assert r.status_code == 400, r.text
        for rid in _ids(False, 30, 3):
            r = httpx.post(f"{h.v1}/chat/completions", json=body, headers={"x-request-id": rid}, timeout=20)
            assert r.status_code == 200
        recent = httpx.get(f"{h.base_url}/admin/decisions").json()["recent"]
        described = httpx.get(f"{h.base_url}/admin/policy").json()["plugins"]
    modes = [d["mode"] for d in recent if d["plugin"] == "words" and d["action"] == "block"]
    assert sorted(modes) == ["enforce"] * 3 + ["shadow"] * 3
    assert described[0]["canary"] == 30


def test_an_upstream_wrapper_with_a_canary_applies_only_to_its_share(tmp_path: Path) -> None:
    plugins = "- {type: retry, max_attempts: 2, base_delay: 0.001, max_delay: 0.002, canary: 50}\n"
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    with sidecar_harness(tmp_path, plugins) as h:
        [inside] = _ids(True, 50, 1)
        [outside] = _ids(False, 50, 1)
        h.fake.push({"status": 503})
        r = httpx.post(f"{h.v1}/chat/completions", json=body, headers={"x-request-id": inside}, timeout=20)
        assert r.status_code == 200  # retried
        h.fake.push({"status": 503})
        r = httpx.post(f"{h.v1}/chat/completions", json=body, headers={"x-request-id": outside}, timeout=20)
        assert r.status_code == 503  # no retry outside the canary
        assert len(h.fake.requests) == 3
