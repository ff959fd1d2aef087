"""The chain applies mode, on_error and when; plugins never do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pytest

from proxy.chain.chain import Chain, Matcher, Step
from proxy.chain.context import ActiveStep, RequestContext
from proxy.chain.plugin import Deps, Match, Outcome, Plugin, PluginConfig, Reply, Resources, StreamFilter
from proxy.errors import PluginError, Rejected
from proxy.models import ChatRequest, ChatResponse, Finish, Route, StreamEvent, TextDelta
from proxy.models.upstream import BufferedResponse, UpstreamRequest, UpstreamResponse


class _NoUpstream:
    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        return BufferedResponse(200)


class ProbeConfig(PluginConfig):
    type: Literal["probe"] = "probe"
    behaviour: str = "edit"  # edit | reject | crash | reply


TRACE: list[str] = []


class Probe(Plugin[ProbeConfig]):
    """Records every call; edits, rejects, crashes or replies as configured."""

    Config = ProbeConfig

    async def on_request(self, req: ChatRequest, ctx: RequestContext) -> Reply | None:
        TRACE.append(f"req:{self.config.step_id}")
        b = self.config.behaviour
        if b == "edit":
            for slot in req.text_slots():
                slot.set(slot.text + f" [{self.config.step_id}]")
            ctx.record("edit", "redact")
        elif b == "reject":
            raise Rejected("no", code="probe_rejected")
        elif b == "crash":
            raise RuntimeError("boom")
        elif b == "reply":
            return Reply(content="local")
        elif b == "header":
            ctx.response_headers[f"x-{self.config.step_id}"] = "set"
            ctx.response_headers["x-shared"] = self.config.step_id
        return None

    async def on_response(self, resp: ChatResponse, ctx: RequestContext) -> None:
        TRACE.append(f"resp:{self.config.step_id}")
        if self.config.behaviour == "reject":
            raise Rejected("no", code="probe_rejected")

    def open_stream(self, ctx: RequestContext) -> StreamFilter | None:
        step = self.config.step_id
        behaviour = self.config.behaviour

        class Upper:
            async def on_event(self, ev: StreamEvent) -> Sequence[StreamEvent]:
                if isinstance(ev, TextDelta):
                    if behaviour == "reject" and "bad" in ev.text:
                        raise Rejected("no", code="probe_rejected")
                    if behaviour == "crash":
                        raise RuntimeError("boom")
                    return [TextDelta(ev.index, f"{ev.text}<{step}>")]
                return [ev]

            async def on_end(self) -> Sequence[StreamEvent]:
                return []

        return Upper()

    async def on_complete(self, outcome: Outcome, ctx: RequestContext) -> None:
        TRACE.append(f"done:{self.config.step_id}")


class RequestOnly(Plugin[ProbeConfig]):
    Config = ProbeConfig

    async def on_request(self, req: ChatRequest, ctx: RequestContext) -> Reply | None:
        return None


def _step(
    pid: str,
    behaviour: str = "edit",
    mode: str = "enforce",
    on_error: str = "fail_closed",
    when: Match | None = None,
) -> Step:
    cfg = ProbeConfig(id=pid, behaviour=behaviour, mode=mode, on_error=on_error, when=when)  # type: ignore[arg-type]
    plugin = Probe(cfg, Deps(Resources()))
    return Step(pid, plugin, mode, on_error, Matcher(when) if when else None, ActiveStep(pid, mode))


def _req(text: str = "hi") -> ChatRequest:
    return ChatRequest(
        {"model": "m", "messages": [{"role": "user", "content": text}], "x-unknown": 1}, Route.CHAT
    )


def _ctx(**kw: Any) -> RequestContext:
    return RequestContext("rid", Route.CHAT, {}, "rev1", kw.pop("model", "m"), **kw)


@pytest.fixture(autouse=True)
def _clear() -> None:
    TRACE.clear()


async def test_request_hooks_run_in_order_and_response_hooks_in_reverse() -> None:
    chain = Chain([_step("a"), _step("b")], _NoUpstream())
    req, ctx = _req(), _ctx()
    await chain.run_request(req, ctx)
    await chain.run_response(ChatResponse({"choices": []}, Route.CHAT), ctx)
    assert TRACE == ["req:a", "req:b", "resp:b", "resp:a"]
    assert req.body["messages"][0]["content"] == "hi [a] [b]"
    assert req.dirty and b"x-unknown" in req.encode()


async def test_stream_filters_run_in_reverse_order() -> None:
    chain = Chain([_step("a"), _step("b")], _NoUpstream())
    pipeline = chain.open_stream(_ctx())
    assert pipeline is not None
    out = await pipeline.push(TextDelta(0, "x"))
    assert out == [TextDelta(0, "x<b><a>")]


async def test_shadow_never_changes_the_request_but_records_would_have() -> None:
    chain = Chain([_step("s", "edit", mode="shadow")], _NoUpstream())
    req, ctx = _req(), _ctx()
    assert await chain.run_request(req, ctx) is None
    assert req.body["messages"][0]["content"] == "hi"
    assert not req.dirty
    assert [(d.plugin, d.action, d.mode) for d in ctx.decisions] == [("s", "redact", "shadow")]


async def test_response_headers_set_by_a_shadow_step_are_dropped() -> None:
    chain = Chain([_step("e", "header"), _step("s", "header", mode="shadow")], _NoUpstream())
    ctx = _ctx()
    await chain.run_request(_req(), ctx)
    assert TRACE == ["req:e", "req:s"]  # the shadow step ran (and saw the live headers' copy)
    assert ctx.response_headers == {"x-e": "set", "x-shared": "e"}  # its own edits never reach the answer


async def test_shadow_rejection_is_recorded_not_raised() -> None:
    chain = Chain([_step("s", "reject", mode="shadow"), _step("after", "none")], _NoUpstream())
    ctx = _ctx()
    await chain.run_request(_req(), ctx)
    assert TRACE == ["req:s", "req:after"]
    assert [(d.plugin, d.rule, d.action, d.mode) for d in ctx.decisions] == [
        ("s", "probe_rejected", "block", "shadow")
    ]


async def test_enforce_rejection_raises_and_is_recorded_once() -> None:
    chain = Chain([_step("e", "reject"), _step("after")], _NoUpstream())
    ctx = _ctx()
    with pytest.raises(Rejected):
        await chain.run_request(_req(), ctx)
    assert TRACE == ["req:e"]
    assert [(d.plugin, d.action, d.mode) for d in ctx.decisions] == [("e", "block", "enforce")]


async def test_fail_open_skips_a_crash_and_fail_closed_raises_plugin_error() -> None:
    ctx = _ctx()
    chain = Chain([_step("c", "crash", on_error="fail_open"), _step("after")], _NoUpstream())
    await chain.run_request(_req(), ctx)
    assert TRACE == ["req:c", "req:after"]
    assert ("c", "error") in [(d.plugin, d.action) for d in ctx.decisions]

    closed = Chain([_step("c", "crash", on_error="fail_closed")], _NoUpstream())
    with pytest.raises(PluginError) as info:
        await closed.run_request(_req(), _ctx())
    assert info.value.status == 500
    assert "boom" not in info.value.message  # public message is generic


async def test_fail_open_never_swallows_a_rejection() -> None:
    chain = Chain([_step("r", "reject", on_error="fail_open")], _NoUpstream())
    with pytest.raises(Rejected):
        await chain.run_request(_req(), _ctx())


async def test_shadow_crash_never_breaks_traffic_even_when_fail_closed() -> None:
    chain = Chain([_step("c", "crash", mode="shadow", on_error="fail_closed")], _NoUpstream())
    ctx = _ctx()
    await chain.run_request(_req(), ctx)
    assert [(d.plugin, d.action, d.mode) for d in ctx.decisions] == [("c", "error", "shadow")]


async def test_local_reply_stops_the_chain() -> None:
    chain = Chain([_step("r", "reply"), _step("after")], _NoUpstream())
    reply = await chain.run_request(_req(), _ctx())
    assert reply is not None and reply.content == "local"
    assert TRACE == ["req:r"]


async def test_off_steps_are_not_compiled_and_absent_hooks_cost_nothing() -> None:
    only = RequestOnly(ProbeConfig(id="ro"), Deps(Resources()))
    steps = [
        _step("off", mode="off"),
        Step("ro", only, "enforce", "fail_closed", None, ActiveStep("ro", "enforce")),
    ]
    chain = Chain(steps, _NoUpstream())
    assert [s.id for s in chain.steps] == ["ro"]
    assert [s.id for s in chain.request_steps] == ["ro"]
    assert chain.response_steps == () and chain.stream_steps == () and chain.complete_steps == ()
    assert chain.open_stream(_ctx()) is None


@pytest.mark.parametrize(
    ("when", "ctx_kw", "applies"),
    [
        (Match(models=("gpt-4o*",)), {"model": "gpt-4o-mini"}, True),
        (Match(models=("gpt-4o*",)), {"model": "claude-3"}, False),
        (Match(routes=("responses",)), {}, False),
        (Match(routes=("chat.completions",)), {}, True),
        (Match(tenants=("team-*",)), {"tenant": "team-a"}, True),
        (Match(tenants=("team-*",)), {"tenant": None}, False),
        (Match(streaming=True), {"stream": False}, False),
    ],
)
async def test_when_matching(when: Match, ctx_kw: dict[str, Any], applies: bool) -> None:
    chain = Chain([_step("w", when=when)], _NoUpstream())
    req = _req()
    await chain.run_request(req, _ctx(**ctx_kw))
    assert (TRACE == ["req:w"]) is applies
    assert (req.body["messages"][0]["content"] == "hi [w]") is applies


async def test_stream_shadow_filter_sees_events_but_output_is_untouched() -> None:
    chain = Chain([_step("s", "reject", mode="shadow")], _NoUpstream())
    ctx = _ctx()
    pipeline = chain.open_stream(ctx)
    assert pipeline is not None
    assert await pipeline.push(TextDelta(0, "ok")) == [TextDelta(0, "ok")]
    assert await pipeline.push(TextDelta(0, "bad")) == [TextDelta(0, "bad")]
    assert await pipeline.push(Finish(0, "stop")) == [Finish(0, "stop")]
    assert [(d.action, d.mode) for d in ctx.decisions] == [("block", "shadow")]


async def test_stream_enforce_rejection_raises_and_fail_open_crash_passes_through() -> None:
    pipeline = Chain([_step("e", "reject")], _NoUpstream()).open_stream(_ctx())
    assert pipeline is not None
    with pytest.raises(Rejected):
        await pipeline.push(TextDelta(0, "bad"))

    ctx = _ctx()
    pipeline = Chain([_step("c", "crash", on_error="fail_open")], _NoUpstream()).open_stream(ctx)
    assert pipeline is not None
    assert await pipeline.push(TextDelta(0, "a")) == [TextDelta(0, "a")]
    assert await pipeline.push(TextDelta(0, "b")) == [TextDelta(0, "b")]  # filter disabled after crash
    assert [d.action for d in ctx.decisions] == ["error"]


async def test_complete_hooks_always_run_and_never_raise() -> None:
    chain = Chain([_step("a"), _step("b")], _NoUpstream())
    await chain.run_complete(Outcome(500, RuntimeError("x")), _ctx())
    assert TRACE == ["done:a", "done:b"]


async def test_run_cpu_runs_off_the_event_loop_with_shared_bounded_pool() -> None:
    import asyncio
    import threading

    deps = Deps(Resources(), cpu_workers=2)
    loop_thread = threading.current_thread().name
    names = await asyncio.gather(*(deps.run_cpu(lambda: threading.current_thread().name) for _ in range(8)))
    assert loop_thread not in names
    assert all(n.startswith("cpu") for n in names)
    assert len(set(names)) <= 2  # bounded by cpu_workers
    assert {"cpu-pool", "cpu-sem"} <= deps.used_resources
