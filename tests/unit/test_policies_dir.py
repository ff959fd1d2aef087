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


def test_generated_policy_reference_is_current() -> None:
    import importlib.util

    path = POLICIES.parent / "scripts" / "gen_policy_docs.py"
    spec = importlib.util.spec_from_file_location("gen_policy_docs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (POLICIES.parent / "docs" / "policy-reference.md").read_text()
    assert committed == module.render(), (
        "regenerate with: python scripts/gen_policy_docs.py > docs/policy-reference.md"
    )
