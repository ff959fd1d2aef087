"""Plugins are found through the entry-point group, built-ins and third parties alike."""

from __future__ import annotations

import json
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import httpx
import pytest

import proxy.chain.registry as registry_module
from proxy.chain.registry import ENTRY_POINT_GROUP, default_registry
from tests.harness import sidecar_harness

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_plugin"


@pytest.fixture
def third_party(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend ``pip install ./examples/custom_plugin`` happened: its entry point is visible."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    points = [
        EntryPoint("audit_log", "sidecar_audit:AuditLogPlugin", ENTRY_POINT_GROUP),
        EntryPoint("broken", "no_such_module:Nothing", ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(
        registry_module, "entry_points", lambda group: points if group == ENTRY_POINT_GROUP else []
    )


def test_builtins_are_registered_through_the_entry_point_group() -> None:
    import tomllib

    pyproject = tomllib.loads((EXAMPLE.parents[1] / "pyproject.toml").read_text())
    declared = pyproject["project"]["entry-points"][ENTRY_POINT_GROUP]
    assert declared == registry_module.BUILTINS
    assert set(declared) <= set(default_registry().names())


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
