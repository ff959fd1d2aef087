"""Every shipped policy compiles, and the committed JSON Schema matches the code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy.chain.registry import default_registry
from proxy.policy.schema import build_policy_model
from proxy.policy.store import PolicyStore

POLICIES = Path(__file__).resolve().parents[2] / "policies"


@pytest.mark.parametrize("path", sorted(POLICIES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_policy_compiles(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    compiled = PolicyStore(path, default_registry()).load_initial()
    assert compiled.chain.steps, f"{path.name} has no active plugin"


def test_committed_schema_is_current() -> None:
    committed = json.loads((POLICIES / "policy.schema.json").read_text())
    assert committed == build_policy_model(default_registry()).model_json_schema(), (
        "regenerate with: policy-sidecar schema > policies/policy.schema.json"
    )
