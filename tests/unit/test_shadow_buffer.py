"""The chain drops a shadow step's effects, in every hook; decisions and own state stay (24.2)."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.chain.chain import Chain, Step
from proxy.chain.context import ActiveStep, RequestContext
from proxy.chain.plugin import Deps, Outcome, Resources
from proxy.models import ChatRequest, ChatResponse, Finish, Route, TextDelta
from proxy.models.upstream import BufferedResponse, UpstreamRequest, UpstreamResponse
from tests.shadow_support import DEADLINE, OWN, SHARED, Leaky, LeakyConfig

HOOKS = ["request", "response", "open_stream", "stream", "stream_end", "complete"]
CALLS = ["request", "response", "open_stream", "stream", "stream", "stream_end", "complete"]  # 2 events


class _NoUpstream:
    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        return BufferedResponse(200)


def _chain(mode: str, canary: float | None = None) -> Chain:
    cfg = LeakyConfig(id="leaky", mode=mode, canary=canary)  # type: ignore[arg-type]
    step = Step(
        "leaky", Leaky(cfg, Deps(Resources())), mode, "fail_closed", None, ActiveStep("leaky", mode), canary
    )
    return Chain([step], _NoUpstream())


def _ctx() -> RequestContext:
    ctx = RequestContext("rid", Route.CHAT, {}, "rev", "m", tenant="acme")
    ctx.response_headers["x-sidecar-flags"] = "injection"  # what an enforcing step set before
    ctx.upstream_headers["x-keep"] = "1"
    return ctx


async def _run_all_hooks(chain: Chain, ctx: RequestContext) -> tuple[ChatRequest, ChatResponse, list[Any]]:
    req = ChatRequest({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, Route.CHAT)
    await chain.run_request(req, ctx)
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}}]}
    resp = ChatResponse(body, Route.CHAT, None, 200)
    await chain.run_response(resp, ctx)
    pipeline = chain.open_stream(ctx)
    assert pipeline is not None
    events = [*await pipeline.push(TextDelta(0, "hello")), *await pipeline.push(Finish(0, "stop"))]
    events += await pipeline.end()
    await chain.run_complete(Outcome(200), ctx)
    return req, resp, events


def _assert_nothing_escaped(
    ctx: RequestContext, req: ChatRequest, resp: ChatResponse, events: list[Any]
) -> None:
    assert ctx.response_headers == {"x-sidecar-flags": "injection"}
    assert ctx.upstream_headers == {"x-keep": "1"}
    assert ctx.get(SHARED) is None
    assert (ctx.tenant, ctx.target, ctx.deadline) == ("acme", None, None)
    assert req.body["messages"][0]["content"] == "hi"
    assert resp.body["choices"][0]["message"]["content"] == "hello"
    assert events == [TextDelta(0, "hello"), Finish(0, "stop")]


async def test_shadow_step_effects_never_escape_any_hook() -> None:
    ctx = _ctx()
    req, resp, events = await _run_all_hooks(_chain("shadow"), ctx)
    _assert_nothing_escaped(ctx, req, resp, events)
    # Decisions are kept, stamped shadow: one per hook, plus the step's own-state read-out.
    leaks = [d for d in ctx.decisions if d.rule.startswith("leak_")]
    assert [d.rule for d in leaks] == [f"leak_{h}" for h in CALLS]
    assert {d.mode for d in ctx.decisions} == {"shadow"}
    own = next(d for d in ctx.decisions if d.rule == "own_state")
    assert own.detail["hooks"] == CALLS  # its step-scoped state lived across its hooks
    ctx.active = ActiveStep("leaky", "enforce")
    assert ctx.get(OWN) == CALLS  # kept, but only under the step's own id


async def test_enforced_step_effects_do_reach_the_request() -> None:
    """The control: the same plugin enforced changes everything the shadow test checks."""
    ctx = _ctx()
    req, resp, events = await _run_all_hooks(_chain("enforce"), ctx)
    with pytest.raises(AssertionError):
        _assert_nothing_escaped(ctx, req, resp, events)
    assert ctx.response_headers["x-sidecar-flags"].startswith("injection,leaky")
    assert {f"x-leak-{h}" for h in HOOKS} <= set(ctx.response_headers)
    assert ctx.upstream_headers["x-leak-up-request"] == "1"
    assert (ctx.tenant, ctx.target, ctx.deadline) == ("leaked-tenant", "leaked-target", DEADLINE)
    assert ctx.get(SHARED) == "complete"
    assert req.body["messages"][0]["content"] == "LEAKED"
    assert {d.mode for d in ctx.decisions} == {"enforce"}


async def test_canary_shadow_share_drops_effects_too() -> None:
    ctx = _ctx()
    ctx.canary_bucket = 99.0  # outside a 10% canary: this request runs the step as shadow
    req, resp, events = await _run_all_hooks(_chain("enforce", canary=10), ctx)
    _assert_nothing_escaped(ctx, req, resp, events)
    assert {d.mode for d in ctx.decisions} == {"shadow"}


async def test_usage_measured_only_by_a_shadow_step_is_kept_an_enforced_one_wins() -> None:
    ctx = RequestContext("rid", Route.CHAT, {})
    scratch = ctx.enter_step(ActiveStep("candidate", "shadow"))
    ctx.usage, ctx.cost_usd = {"prompt_tokens": 1}, 0.5
    ctx.leave_step(scratch)
    assert (ctx.usage, ctx.cost_usd) == ({"prompt_tokens": 1}, 0.5)
    ctx.usage, ctx.cost_usd = {"prompt_tokens": 2}, 1.0  # an enforcing budget priced it
    scratch = ctx.enter_step(ActiveStep("candidate", "shadow"))
    ctx.usage, ctx.cost_usd = {"prompt_tokens": 3}, 9.0
    ctx.leave_step(scratch)
    assert (ctx.usage, ctx.cost_usd) == ({"prompt_tokens": 2}, 1.0)


def test_no_builtin_plugin_reads_ctx_shadow() -> None:
    """Shadow lives in the chain only: a built-in plugin branching on ``.shadow`` is a regression."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "plugins"
    readers = [
        f"{path.name}:{node.lineno}"
        for path in sorted(root.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute) and node.attr == "shadow"
    ]
    assert len(list(root.rglob("*.py"))) > 5  # the scan really looked at the plugins
    assert readers == []
