"""Render docs/policy-reference.md from the policy JSON Schema (the single source of truth).

python scripts/gen_policy_docs.py > docs/policy-reference.md

Every definition of the schema (``$defs``) gets a section, so a type added to the policy (a new
top-level block, a nested spec of a plugin) is documented by regenerating, with no edit here:

1. the top level, then the types reachable from it (depth first, in field order);
2. the fields every plugin step has, and the types they use (``Match``);
3. each plugin (from the ``plugins`` discriminator): its fields, an example from
   ``scripts/policy_examples.yaml``, then the nested types it introduces;
4. any definition not reached that way, so nothing is ever left out.

Each type says where it is used. tests/unit/test_policy_reference.py checks that every
definition and every field appears, and that every example validates against the schema.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from proxy.chain.registry import default_registry
from proxy.policy.schema import build_policy_model

COMMON = {"type", "id", "mode", "when", "on_error"}
EXAMPLES = Path(__file__).with_name("policy_examples.yaml")
TOP_EXAMPLE = "_top"


def load_examples() -> dict[str, str]:
    """Plugin type (or ``_top``) -> YAML snippet."""
    data = yaml.safe_load(EXAMPLES.read_text())
    return {str(k): str(v) for k, v in (data or {}).items()}


def policy_schema() -> dict[str, Any]:
    return build_policy_model(default_registry()).model_json_schema()


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return _ref_name(prop["$ref"])
    if "discriminator" in prop:
        return "plugin step (see the plugins below)"
    for key in ("anyOf", "oneOf"):
        if key in prop:
            return " | ".join(_type(p) for p in prop[key])
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"])
    kind = prop.get("type", "any")
    if kind == "array":
        if "prefixItems" in prop:
            return "[" + ", ".join(_type(p) for p in prop["prefixItems"]) + "]"
        return f"list[{_type(prop.get('items', {}))}]"
    if kind == "object":
        extra = prop.get("additionalProperties")
        if isinstance(extra, dict):
            return f"map[str, {_type(extra)}]"
        return "object"
    if prop.get("format") == "password":
        return "secret string"
    return str(kind)


def _prose(text: str) -> str:
    """A docstring as Markdown: rST double backticks become single ones."""
    return text.strip().replace("``", "`")


def _cell(text: str) -> str:
    return _prose(text).replace("|", "\\|").replace("\n", " ")


def _table(model: dict[str, Any], skip: frozenset[str] = frozenset()) -> list[str]:
    props = {k: v for k, v in model.get("properties", {}).items() if k not in skip}
    if not props:
        return []
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    required = set(model.get("required", []))
    for name, prop in props.items():
        default = (
            "required" if name in required else json.dumps(prop.get("default")) if "default" in prop else ""
        )
        # GitHub tables need \| even inside code.
        rows.append(
            f"| `{name}` | `{_cell(_type(prop))}` | {_cell(default)} | {_cell(prop.get('description', ''))} |"
        )
    return rows


def _refs(node: Any) -> Iterator[str]:
    """Names of the definitions ``node`` refers to, in order of appearance."""
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield _ref_name(node["$ref"])
        for key, value in node.items():
            if key != "discriminator":
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _plugins(schema: dict[str, Any]) -> dict[str, str]:
    """Plugin type -> definition name, from the ``plugins`` discriminator."""
    items = schema.get("properties", {}).get("plugins", {}).get("items", {})
    mapping = items.get("discriminator", {}).get("mapping", {})
    return {plugin: _ref_name(ref) for plugin, ref in sorted(mapping.items())}


class _Renderer:
    def __init__(self, schema: dict[str, Any], examples: dict[str, str]) -> None:
        self.schema = schema
        self.defs: dict[str, Any] = schema.get("$defs", {})
        self.examples = examples
        self.plugins = _plugins(schema)
        self.plugin_of = {d: p for p, d in self.plugins.items()}
        self.done: set[str] = set(self.plugin_of)
        self.used_by = self._used_by()
        self.out: list[str] = []

    def _label(self, owner: str | None) -> str:
        if owner is None:
            return "the top level"
        if owner in self.plugin_of:
            return f"plugin `{self.plugin_of[owner]}`"
        return f"`{owner}`"

    def _used_by(self) -> dict[str, dict[str, list[str]]]:
        """Definition -> owner label -> the owner's fields that refer to it."""
        used: dict[str, dict[str, list[str]]] = {}
        owners: list[tuple[str | None, dict[str, Any]]] = [(None, self.schema)]
        owners += list(self.defs.items())
        for owner, model in owners:
            for field, prop in model.get("properties", {}).items():
                label = (
                    "every plugin step" if owner in self.plugin_of and field in COMMON else self._label(owner)
                )
                for name in dict.fromkeys(_refs(prop)):
                    fields = used.setdefault(name, {}).setdefault(label, [])
                    if name not in self.plugin_of and f"`{field}`" not in fields:
                        fields.append(f"`{field}`")
        return used

    def _example(self, key: str) -> list[str]:
        text = self.examples.get(key)
        return ["Example:", "", "```yaml", text.rstrip(), "```", ""] if text else []

    def _types_from(self, roots: list[str]) -> None:
        """Render the not-yet-rendered types reachable from ``roots``, each followed by its own."""
        queue = list(roots)
        while queue:
            name = queue.pop(0)
            if name in self.done or name not in self.defs:
                continue
            self.done.add(name)
            model = self.defs[name]
            self.out += [f"## `{name}`", ""]
            if model.get("description"):
                self.out += [_prose(model["description"]), ""]
            if self.used_by.get(name):
                where = [f"{owner} ({', '.join(fields)})" for owner, fields in self.used_by[name].items()]
                self.out += ["Used in " + ", ".join(where) + ".", ""]
            table = _table(model)
            if table:
                self.out += [*table, ""]
            else:
                self.out += [f"Type: `{_cell(_type(model))}`", ""]
            # Depth first: a type's own nested types follow it.
            queue = [r for r in _refs(model.get("properties", model)) if r not in self.done] + queue

    def render(self) -> str:
        top_refs = [r for r in _refs(self.schema.get("properties", {})) if r not in self.plugin_of]
        self.out = [
            "# Policy reference",
            "",
            "Generated from the policy JSON Schema by `scripts/gen_policy_docs.py`; do not edit by hand.",
            "Editors can validate policies with `policies/policy.schema.json` (`policy-sidecar schema`).",
            "Every type of the schema has a section below; every plugin has an example.",
            "",
            "Names are checked, not only shapes: unknown fields, `when.routes` names, PII entity types,",
            "moderation categories, message roles, decision-log actions, upstream names and every",
            "enumerated value fail `policy-sidecar check` with `file:line:col` and a did-you-mean.",
            "Model globs that match no configured route or upstream model are warnings.",
            "`policy-sidecar check --coverage POLICY` shows which steps cover each surface.",
            "",
            "## Top level",
            "",
            *_table(self.schema),
            "",
            *self._example(TOP_EXAMPLE),
        ]
        self._types_from(top_refs)
        self.out += [
            "## Fields every plugin step has",
            "",
            "| field | meaning |",
            "|---|---|",
            "| `type` | the plugin (discriminator) |",
            "| `id` | unique step id; defaults to `type`; appears in decision records |",
            "| `mode` | `enforce` acts, `shadow` records what it would have done and changes nothing, "
            "`off` skips |",
            "| `when` | apply only to some routes / models / tenants / streaming (see `Match`) |",
            "| `on_error` | `fail_closed`: a crash is a 500; `fail_open`: the step is skipped and recorded |",
            "",
        ]
        common: list[str] = []
        for name in self.plugins.values():
            props = self.defs.get(name, {}).get("properties", {})
            common += [r for f in COMMON if f in props for r in _refs(props[f])]
        self._types_from(common)
        for plugin, name in self.plugins.items():
            model = self.defs.get(name, {})
            self.out += [
                f"## Plugin `{plugin}`",
                "",
                _prose(model.get("description", "")),
                "",
                *_table(model, skip=frozenset(COMMON)),
                "",
                *self._example(plugin),
            ]
            props = {k: v for k, v in model.get("properties", {}).items() if k not in COMMON}
            self._types_from(list(_refs(props)))
        rest = sorted(set(self.defs) - self.done)
        if rest:
            self.out += ["## Other types", "", "Definitions not reached from the sections above.", ""]
            self._types_from(rest)
        return "\n".join(self.out).rstrip() + "\n"


def render() -> str:
    return _Renderer(policy_schema(), load_examples()).render()


if __name__ == "__main__":
    sys.stdout.write(render())
