"""Per-request state is scoped to the step, not the plugin type (issue 24, bug 1)."""

from __future__ import annotations

from typing import Literal

from proxy.chain.chain import Chain, Step
from proxy.chain.context import ActiveStep, RequestContext, StateKey
from proxy.chain.plugin import Deps, Outcome, Plugin, PluginConfig, Reply, Resources
from proxy.models import ChatRequest, Route
from proxy.models.upstream import BufferedResponse, UpstreamRequest, UpstreamResponse

SEEN: StateKey[str] = StateKey("probe.seen")  # one module-level name, as the built-ins have
CACHE: StateKey[list[str]] = StateKey("probe.cache", shared=True)


class _NoUpstream:
    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        return BufferedResponse(200)


class KeeperConfig(PluginConfig):
    type: Literal["keeper"] = "keeper"


class Keeper(Plugin[KeeperConfig]):
    """Books its step id on the request and reads it back at the end."""

    Config = KeeperConfig
    done: dict[str, str | None] = {}

    async def on_request(self, req: ChatRequest, ctx: RequestContext) -> Reply | None:
        ctx.set(SEEN, self.config.step_id)
        cache = ctx.get(CACHE)
        if cache is None:
            cache = []
            ctx.set(CACHE, cache)
        cache.append(self.config.step_id)
        return None

    async def on_complete(self, outcome: Outcome, ctx: RequestContext) -> None:
        Keeper.done[self.config.step_id] = ctx.get(SEEN)


def _step(pid: str, mode: str = "enforce") -> Step:
    plugin = Keeper(KeeperConfig(id=pid, mode=mode), Deps(Resources()))  # type: ignore[arg-type]
    return Step(pid, plugin, mode, "fail_closed", None, ActiveStep(pid, mode))


async def test_two_steps_of_one_type_keep_their_own_state() -> None:
    Keeper.done.clear()
    chain = Chain([_step("a"), _step("b"), _step("c", "shadow")], _NoUpstream())
    ctx = RequestContext("rid", Route.CHAT, {})
    req = ChatRequest({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, Route.CHAT)
    await chain.run_request(req, ctx)
    await chain.run_complete(Outcome(200), ctx)
    assert Keeper.done == {"a": "a", "b": "b", "c": "c"}
    # A shared key is one value for the request: every step appended to the same list.
    assert ctx.get(CACHE) == ["a", "b", "c"]


def test_outside_any_step_state_is_the_sidecars_own() -> None:
    ctx = RequestContext("rid", Route.CHAT, {})
    ctx.set(SEEN, "sidecar")
    assert ctx.get(SEEN) == "sidecar"
    ctx.active = ActiveStep("other", "enforce")
    assert ctx.get(SEEN) is None and ctx.get(SEEN, "default") == "default"
