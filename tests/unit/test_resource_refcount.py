"""Shared resources are reference-counted per policy revision (issue 16 item 9).

The race: the last request of an old revision ends while a newer revision is compiling. The
old cleanup closed "whatever the current and retiring revisions do not use", which included
the still-compiling revision's fresh resources. The test forces that interleaving with a
plugin whose build blocks on an event.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, Literal

import pytest

from proxy.chain.plugin import Deps, Plugin, PluginConfig, Resources
from proxy.chain.registry import Registry, default_registry
from proxy.policy.store import PolicyStore

BUILD_STARTED = threading.Event()  # the blocking build took its resource
BUILD_MAY_FINISH = threading.Event()


class Closeable:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


class GateConfig(PluginConfig):
    type: Literal["gate"] = "gate"
    resource: str
    block: bool = False
    fail: bool = False


class GatePlugin(Plugin[GateConfig]):
    Config = GateConfig
    made: dict[str, Closeable] = {}

    def __init__(self, config: GateConfig, deps: Deps) -> None:
        super().__init__(config, deps)
        self.res: Closeable = deps.resource(f"gate:{config.resource}", lambda: self._make(config.resource))
        if config.block:
            BUILD_STARTED.set()
            assert BUILD_MAY_FINISH.wait(10)
        if config.fail:
            raise RuntimeError("build failed after taking a resource")

    @classmethod
    def _make(cls, name: str) -> Closeable:
        cls.made[name] = Closeable(name)
        return cls.made[name]


def _registry() -> Registry:
    registry = default_registry()
    registry.register(GatePlugin)
    return registry


def _policy(resource: str, **extra: Any) -> str:
    flags = "".join(f"\n    {k}: {str(v).lower()}" for k, v in extra.items())
    return f"version: 1\nplugins:\n  - type: gate\n    resource: {resource}{flags}\n"


@pytest.fixture(autouse=True)
def _reset() -> None:
    BUILD_STARTED.clear()
    BUILD_MAY_FINISH.clear()
    GatePlugin.made.clear()


async def test_old_revision_retiring_during_a_compile_keeps_the_new_resources(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(_policy("a"))
    store = PolicyStore(path, _registry())
    store.load_initial()
    a = store.acquire()  # a request in flight on revision A

    path.write_text(_policy("b"))
    assert (await store.reload("admin"))["result"] == "reloaded"  # A retires, still in flight

    path.write_text(_policy("c", block=True))
    reload_c = asyncio.create_task(store.reload("admin"))
    assert await asyncio.to_thread(BUILD_STARTED.wait, 10)  # C's build holds resource c now
    store.release(a)  # the last request on A ends: A closes while C compiles
    for _ in range(5):
        await asyncio.sleep(0)  # let the retirement task run
    assert GatePlugin.made["a"].closed
    assert not GatePlugin.made["c"].closed, "the compiling revision's resource was closed"
    assert not GatePlugin.made["b"].closed

    BUILD_MAY_FINISH.set()
    assert (await reload_c)["result"] == "reloaded"
    assert GatePlugin.made["b"].closed  # B retired idle when C went live
    assert not GatePlugin.made["c"].closed
    assert store.resources.refs("gate:c") == 1
    await store.aclose()
    assert GatePlugin.made["c"].closed


async def test_a_shared_resource_lives_while_any_revision_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(_policy("shared"))
    store = PolicyStore(path, _registry())
    store.load_initial()
    first = store.acquire()
    path.write_text(_policy("shared") + "# edited\n")
    await store.reload("admin")
    assert store.resources.refs("gate:shared") == 2
    store.release(first)
    for _ in range(5):
        await asyncio.sleep(0)
    assert store.resources.refs("gate:shared") == 1 and not GatePlugin.made["shared"].closed
    await store.aclose()


async def test_a_failed_compile_gives_its_references_back(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(_policy("a"))
    store = PolicyStore(path, _registry())
    store.load_initial()
    path.write_text(_policy("broken", fail=True))
    assert (await store.reload("admin"))["result"] == "failed"
    assert GatePlugin.made["broken"].closed and store.resources.refs("gate:broken") == 0
    assert not GatePlugin.made["a"].closed and store.resources.refs("gate:a") == 1
    await store.aclose()


def test_resources_count_references() -> None:
    resources = Resources()
    item = resources.acquire("k", lambda: Closeable("k"))
    assert resources.acquire("k", lambda: Closeable("other")) is item
    assert resources.release({"k"}) == [] and resources.refs("k") == 1
    assert resources.release({"k"}) == [item]
    live = resources.keys()
    assert "k" not in live
