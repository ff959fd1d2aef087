"""docs/policy-reference.md documents every schema definition and field, with valid examples.

The reference is generated (scripts/gen_policy_docs.py); these tests make sure the generator
leaves nothing out when the schema grows (a new ``$defs`` entry, a new field, a new plugin) and
that every example it prints is a policy the sidecar accepts.
"""

from __future__ import annotations

import importlib.util
import re
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from proxy.chain.registry import default_registry
from proxy.policy.loader import load_policy_text
from proxy.policy.schema import build_policy_model

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_policy_docs", ROOT / "scripts" / "gen_policy_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()
SCHEMA: dict[str, Any] = GEN.policy_schema()
EXAMPLES: dict[str, str] = GEN.load_examples()
PLUGINS: dict[str, str] = GEN._plugins(SCHEMA)


def _sections(text: str) -> dict[str, str]:
    """Heading (without ``## ``) -> the text under it."""
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    return {p.split("\n", 1)[0]: p for p in parts}


def _section_for(name: str) -> str:
    plugin = {d: p for p, d in PLUGINS.items()}.get(name)
    return f"Plugin `{plugin}`" if plugin else f"`{name}`"


def test_every_definition_and_field_is_in_the_committed_reference() -> None:
    sections = _sections((ROOT / "docs" / "policy-reference.md").read_text())
    missing = [name for name in SCHEMA["$defs"] if _section_for(name) not in sections]
    assert not missing, f"not in docs/policy-reference.md: {missing}"
    for name, model in SCHEMA["$defs"].items():
        body = sections[_section_for(name)]
        skip = GEN.COMMON if name in PLUGINS.values() else set()
        absent = [f for f in model.get("properties", {}) if f not in skip and f"| `{f}` |" not in body]
        assert not absent, f"{name}: fields missing from its section: {absent}"
    assert "| `input_tokens` |" in sections["`LimitSpec`"]
    assert "| `output_tokens` |" in sections["`LimitSpec`"]


def test_a_new_definition_is_documented_without_editing_the_generator() -> None:
    schema = {
        **SCHEMA,
        "properties": {**SCHEMA["properties"], "clients": {"$ref": "#/$defs/ClientSpec"}},
        "$defs": {
            **SCHEMA["$defs"],
            "ClientSpec": {
                "type": "object",
                "description": "A client.",
                "properties": {"name": {"type": "string"}, "quota": {"$ref": "#/$defs/QuotaSpec"}},
            },
            "QuotaSpec": {"type": "object", "properties": {"per_day": {"type": "integer"}}},
            "Orphan": {"enum": ["a", "b"], "type": "string"},
        },
    }
    sections = _sections(GEN._Renderer(schema, EXAMPLES).render())
    assert "| `quota` | `QuotaSpec` |" in sections["`ClientSpec`"]
    assert "Used in `ClientSpec` (`quota`)" in sections["`QuotaSpec`"]
    assert '`"a" \\| "b"`' in sections["`Orphan`"]


def test_every_plugin_has_an_example() -> None:
    assert set(PLUGINS) <= set(EXAMPLES), (
        f"add to scripts/policy_examples.yaml: {set(PLUGINS) - set(EXAMPLES)}"
    )
    assert not set(EXAMPLES) - set(PLUGINS) - {GEN.TOP_EXAMPLE}, "examples for unknown plugins"


def _example_policy(key: str) -> str:
    if key == GEN.TOP_EXAMPLE:
        return EXAMPLES[key]
    return "version: 1\nupstreams:\n  default:\n    base_url: builtin:demo\nplugins:\n" + textwrap.indent(
        EXAMPLES[key], "  "
    )


@pytest.mark.parametrize("key", sorted(EXAMPLES))
def test_example_validates_against_the_schema(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _example_policy(key)
    jsonschema.validate(yaml.safe_load(text), SCHEMA)  # what an editor checks
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "PII_SECRET", "REDIS_URL"):
        monkeypatch.setenv(var, "test-value")
    policy = load_policy_text(text, "example.yaml", build_policy_model(default_registry()))  # the sidecar
    if key != GEN.TOP_EXAMPLE:
        assert key in [p.type for p in policy.plugins]


def test_examples_are_in_the_reference() -> None:
    sections = _sections((ROOT / "docs" / "policy-reference.md").read_text())
    for plugin in PLUGINS:
        assert EXAMPLES[plugin].rstrip() in sections[f"Plugin `{plugin}`"]


@pytest.mark.parametrize("path", sorted((ROOT / "policies").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_policies_validate_in_an_editor(path: Path) -> None:
    """What an editor with policies/policy.schema.json says must agree with what the sidecar loads."""
    jsonschema.validate(yaml.safe_load(path.read_text()), SCHEMA)
