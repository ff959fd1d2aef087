"""Plugins are found through the entry-point group, built-ins and third parties alike."""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import httpx
import pytest

import plugins
import proxy.chain.registry as registry_module
from proxy.chain.plugin import Plugin
from proxy.chain.registry import (
    ENTRY_POINT_GROUP,
    NotInstalled,
    builtin_entry_points,
    default_registry,
    entry_points,
)
from tests.harness import sidecar_harness

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_plugin"


@pytest.fixture
def third_party(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend ``pip install ./examples/custom_plugin`` happened: its entry point is visible."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    points = [
        *entry_points(group=ENTRY_POINT_GROUP),  # the built-ins, from the installed metadata
        EntryPoint("audit_log", "sidecar_audit:AuditLogPlugin", ENTRY_POINT_GROUP),
        EntryPoint("broken", "no_such_module:Nothing", ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(
        registry_module, "entry_points", lambda group: points if group == ENTRY_POINT_GROUP else []
    )


def test_builtins_come_from_the_pyproject_entry_points_and_nothing_else() -> None:
    """pyproject.toml is the one list: the installed metadata must match it, and each entry
    point's name must be the YAML ``type`` of the class it loads."""
    import tomllib

    pyproject = tomllib.loads((EXAMPLE.parents[1] / "pyproject.toml").read_text())
    declared = pyproject["project"]["entry-points"][ENTRY_POINT_GROUP]
    installed = {ep.name: ep.value for ep in builtin_entry_points()}
    assert installed == declared, (
        "the installed metadata differs from pyproject.toml: run `pip install -e .` again"
    )
    registry = default_registry()
    for name, target in declared.items():
        module, _, attr = target.partition(":")
        assert registry.get(name) is getattr(importlib.import_module(module), attr)
    assert not hasattr(registry_module, "BUILTINS")  # no second copy in the code


def _concrete_plugins() -> set[type[Plugin[Any]]]:
    """Every class in the ``plugins`` package that a policy could name (a ``type`` default)."""
    found: set[type[Plugin[Any]]] = set()
    for info in pkgutil.walk_packages(plugins.__path__, "plugins."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Plugin)
                and value.__module__.startswith("plugins.")
                and isinstance(value.Config.model_fields["type"].default, str)
            ):
                found.add(value)
    return found


def test_every_plugin_class_in_the_package_is_declared_as_an_entry_point() -> None:
    """A new built-in that was not added to pyproject.toml would never load: caught here."""
    registered = set(default_registry().classes())
    concrete = _concrete_plugins()
    assert registered <= concrete  # the scan sees every built-in, so it would see a new one too
    missing = {f"{c.__module__}:{c.__name__}" for c in concrete - registered}
    assert not missing, f"add to [project.entry-points.{ENTRY_POINT_GROUP!r}] in pyproject.toml: {missing}"


def test_an_uninstalled_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "entry_points", lambda group: [])
    with pytest.raises(NotInstalled, match=r"pip install -e \."):
        default_registry()


def test_a_broken_builtin_raises_instead_of_being_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    real = builtin_entry_points()
    dist = real[0].dist
    assert dist is not None
    broken = EntryPoint("timeout", "plugins.no_such_plugin:Nothing", ENTRY_POINT_GROUP)._for(dist)
    points = [ep for ep in real if ep.name != "timeout"] + [broken]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: points)
    with pytest.raises(ModuleNotFoundError, match="no_such_plugin"):
        default_registry()


def test_third_party_plugin_is_loaded_and_a_broken_one_is_only_logged(
    third_party: None, caplog: pytest.LogCaptureFixture
) -> None:
    names = default_registry().names()
    assert "audit_log" in names and "broken" not in names
    assert "no_such_module" in caplog.text


def test_third_party_plugin_runs_in_a_real_sidecar(third_party: None, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    plugins = f"- type: audit_log\n  path: {audit}\n  require_header: x-team\n"
    with sidecar_harness(tmp_path, plugins, registry=default_registry()) as h:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        refused = httpx.post(f"{h.v1}/chat/completions", json=body)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "missing_audit_header"
        ok = httpx.post(f"{h.v1}/chat/completions", json=body, headers={"x-team": "a"})
        assert ok.status_code == 200
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [line["status"] for line in lines] == [400, 200]
    assert lines[0]["decisions"] == ["audit_log:block:enforce"]
    assert sys.modules["sidecar_audit"].AuditLogPlugin.Config.model_fields["type"].default == "audit_log"
