"""Policy: YAML -> models with file:line:col errors -> compile -> atomic reload."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from proxy.chain.registry import default_registry
from proxy.errors import ConfigError
from proxy.policy.loader import load_policy_text
from proxy.policy.schema import build_policy_model
from proxy.policy.store import PolicyStore

MODEL = build_policy_model(default_registry())

GOOD = """\
version: 1
upstreams:
  default:
    base_url: builtin:demo
plugins:
  - type: blocklist
    keywords: [forbidden]
"""


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_policy_text(text, "p.yaml", MODEL)
    return str(info.value)


def test_valid_policy_loads_with_defaults() -> None:
    policy = load_policy_text(GOOD, "p.yaml", MODEL)
    assert policy.default_upstream == "default"
    assert policy.plugins[0].type == "blocklist"  # type: ignore[attr-defined]
    assert policy.plugins[0].mode == "enforce"  # type: ignore[attr-defined]


def test_yaml_syntax_error_points_at_line_and_column() -> None:
    msg = _error("version: 1\nplugins:\n  - type: blocklist\n    keywords: [a, b\n")
    assert msg.startswith("p.yaml:5:1:") or msg.startswith("p.yaml:4:"), msg
    assert "invalid YAML" in msg


def test_unknown_field_points_at_the_field() -> None:
    msg = _error(GOOD + "    colour: red\n")
    assert msg.startswith("p.yaml:8:5: plugins[0].colour: Extra inputs are not permitted"), msg


def test_wrong_type_points_at_the_value() -> None:
    msg = _error(GOOD.replace("keywords: [forbidden]", "keywords: [forbidden]\n    max_match_chars: lots"))
    assert msg.startswith("p.yaml:8:22: plugins[0].max_match_chars:"), msg
    assert "integer" in msg


def test_invalid_regex_is_reported_at_the_list() -> None:
    msg = _error(GOOD.replace("keywords: [forbidden]", "patterns: ['(unclosed']"))
    assert msg.startswith("p.yaml:7:15: plugins[0].patterns:"), msg
    assert "invalid regular expression" in msg


def test_unknown_plugin_type_names_the_known_ones() -> None:
    msg = _error(GOOD.replace("type: blocklist", "type: nope"))
    assert msg.startswith("p.yaml:6:5: plugins[0]:"), msg
    assert "'blocklist'" in msg and "'headers'" in msg


def test_duplicate_ids_and_missing_default_upstream_are_errors() -> None:
    dup = GOOD + "  - type: blocklist\n    keywords: [x]\n"
    assert "used twice" in _error(dup)
    assert "default_upstream: unknown upstream 'other'" in _error(GOOD + "default_upstream: other\n")


def test_empty_or_non_mapping_file_never_loads() -> None:
    assert "empty" in _error("")
    assert "empty" in _error("# only a comment\n")
    assert "mapping" in _error("- a\n- b\n")
    assert "version" in _error("upstreams: {}\n")


def test_env_secrets_expand_only_in_secret_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KEY", "sk-secret")
    text = "version: 1\nupstreams:\n  default:\n    base_url: https://x.test/v1\n    api_key: ${TEST_KEY}\n"
    policy = load_policy_text(text, "p.yaml", MODEL)
    upstream = policy.upstreams["default"]
    assert upstream.api_key is not None and upstream.api_key.get_secret_value() == "sk-secret"
    assert upstream.auth_mode == "policy"
    assert "sk-secret" not in repr(policy)  # secrets never printed
    # Not expanded outside secret fields.
    literal = GOOD.replace("keywords: [forbidden]", "keywords: ['${TEST_KEY}']")
    assert load_policy_text(literal, "p.yaml", MODEL).plugins[0].keywords == ("${TEST_KEY}",)  # type: ignore[attr-defined]
    monkeypatch.delenv("TEST_KEY")
    assert "environment variable TEST_KEY is not set" in _error(text)


def test_schema_exports_every_plugin() -> None:
    schema = MODEL.model_json_schema()
    text = str(schema)
    assert "blocklist" in text and "headers" in text
    assert schema["additionalProperties"] is False


# -- store -----------------------------------------------------------------------------


def _store(tmp_path: Path, text: str = GOOD) -> PolicyStore:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    store = PolicyStore(path, default_registry())
    store.load_initial()
    return store


async def test_reload_swaps_and_a_broken_edit_keeps_the_old_policy(tmp_path: Path) -> None:
    store = _store(tmp_path)
    first = store.current.revision
    assert (await store.reload("admin"))["result"] == "unchanged"

    store.path.write_text(GOOD.replace("forbidden", "other"))
    result = await store.reload("admin")
    assert result["result"] == "reloaded" and result["previous"] == first
    second = store.current.revision
    assert second != first

    store.path.write_text(GOOD + "    bogus: 1\n")
    result = await store.reload("admin")
    assert result["result"] == "failed"
    assert "policy.yaml:8:5" in result["error"]
    assert store.current.revision == second
    assert store.last_error is not None and store.reloads_failed == 1

    store.path.write_text("")
    assert (await store.reload("admin"))["result"] == "failed"
    assert store.current.revision == second

    store.path.write_text(GOOD)
    assert (await store.reload("admin"))["result"] == "reloaded"
    assert store.last_error is None


async def test_restoring_the_running_content_clears_a_failed_status(tmp_path: Path) -> None:
    store = _store(tmp_path)
    revision = store.current.revision
    store.path.write_text(GOOD + "    bogus: 1\n")
    assert (await store.reload("file"))["result"] == "failed"
    assert store.last_error is not None and store.last_reload is not None
    assert store.last_reload["result"] == "failed"

    store.path.write_text(GOOD)
    result = await store.reload("sighup")
    assert result["result"] == "unchanged" and result["error_cleared"] is True
    assert result["revision"] == revision and "error" not in result
    assert store.last_error is None and store.last_reload == result
    assert store.current.revision == revision
    # A further unchanged reload has nothing left to clear and leaves the status alone.
    again = await store.reload("admin")
    assert again == {"result": "unchanged", "revision": revision, "trigger": "admin"}
    assert store.last_reload == result


async def test_in_flight_requests_keep_their_revision_until_released(tmp_path: Path) -> None:
    store = _store(tmp_path)
    closed: list[str] = []
    pinned = store.acquire()
    original_close = pinned.aclose

    async def tracking_close() -> None:
        closed.append(pinned.revision)
        await original_close()

    pinned.aclose = tracking_close  # type: ignore[method-assign]
    store.path.write_text(GOOD.replace("forbidden", "changed"))
    await store.reload("admin")
    assert store.current is not pinned and pinned.retired
    assert closed == []  # still in use
    store.release(pinned)
    await asyncio.sleep(0.01)
    assert closed == [pinned.revision]


async def test_watcher_sees_a_kubernetes_configmap_symlink_swap(tmp_path: Path) -> None:
    """Reproduce kubelet's update: new timestamped dir, ``..data`` symlink swapped atomically."""
    mount = tmp_path / "config"
    mount.mkdir()
    v1 = mount / "..2026_11_23_10_00_00.000000001"
    v1.mkdir()
    (v1 / "policy.yaml").write_text(GOOD)
    os.symlink(v1.name, mount / "..data")
    os.symlink("..data/policy.yaml", mount / "policy.yaml")

    store = PolicyStore(mount / "policy.yaml", default_registry())
    first = store.load_initial().revision
    stop = asyncio.Event()
    watcher = asyncio.create_task(store.watch(stop))
    await asyncio.sleep(0.3)

    v2 = mount / "..2026_11_23_10_05_00.000000002"
    v2.mkdir()
    (v2 / "policy.yaml").write_text(GOOD.replace("forbidden", "swapped"))
    os.symlink(v2.name, mount / "..data_tmp")
    os.rename(mount / "..data_tmp", mount / "..data")  # the atomic swap

    for _ in range(100):
        if store.current.revision != first:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(watcher, 5)
    assert store.current.revision != first
    assert store.current.policy.plugins[0].keywords == ("swapped",)  # type: ignore[attr-defined]
    assert store.last_reload is not None and store.last_reload["trigger"] == "file"


async def test_shared_resources_survive_a_reload_that_does_not_change_them(tmp_path: Path) -> None:
    text = GOOD.replace("builtin:demo", "http://127.0.0.1:9/v1")
    store = _store(tmp_path, text)
    client_before = next(v for k, v in store.resources._items.items() if k.startswith("http:"))
    store.path.write_text(text.replace("forbidden", "changed"))
    await store.reload("admin")
    client_after = next(v for k, v in store.resources._items.items() if k.startswith("http:"))
    assert client_after is client_before

    store.path.write_text(text.replace("127.0.0.1:9", "127.0.0.1:10"))
    await store.reload("admin")
    keys = [k for k in store.resources._items if k.startswith("http:")]
    assert keys == ["http:http://127.0.0.1:10/v1|10.0|600.0|100"]  # the old pool was closed


async def test_a_slow_plugin_build_does_not_block_the_event_loop(tmp_path: Path) -> None:
    """Reload compiles in a worker thread: requests keep being served on the old revision."""
    import time
    from typing import Literal

    from proxy.chain.plugin import Deps, Plugin, PluginConfig
    from proxy.chain.registry import Registry

    class SlowConfig(PluginConfig):
        type: Literal["slow"] = "slow"

    class Slow(Plugin[SlowConfig]):
        Config = SlowConfig

        def __init__(self, config: SlowConfig, deps: Deps) -> None:
            super().__init__(config, deps)
            time.sleep(0.5)  # e.g. loading an NER model

    registry = default_registry()
    registry.register(Slow)
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nplugins: []\n")
    store = PolicyStore(path, registry)
    store.load_initial()
    path.write_text("version: 1\nplugins: [{type: slow}]\n")

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    result = await store.reload("admin")
    task.cancel()
    assert result["result"] == "reloaded"
    assert ticks >= 10  # blocked, the loop would not have ticked at all during the 0.5 s build
    assert isinstance(registry, Registry)
