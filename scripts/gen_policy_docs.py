"""Render docs/policy-reference.md from the policy JSON Schema (the single source of truth).

python scripts/gen_policy_docs.py > docs/policy-reference.md
"""

from __future__ import annotations

import json
import sys
from typing import Any

from proxy.chain.registry import default_registry
from proxy.policy.schema import build_policy_model

COMMON = {"type", "id", "mode", "when", "on_error"}


def _type(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in prop:
        return " | ".join(_type(p, defs) for p in prop["anyOf"])
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list[{_type(prop.get('items', {}), defs)}]"
    if kind == "object" and "additionalProperties" in prop:
        return f"map[str, {_type(prop['additionalProperties'], defs)}]"
    return str(kind)


def _table(model: dict[str, Any], defs: dict[str, Any], skip: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    required = set(model.get("required", []))
    for name, prop in model.get("properties", {}).items():
        if name in skip:
            continue
        default = (
            "required" if name in required else json.dumps(prop.get("default")) if "default" in prop else ""
        )
        desc = prop.get("description", "").replace("|", "\\|").replace("\n", " ")
        kind = _type(prop, defs).replace("|", "\\|")  # GitHub tables need \| even inside code
        rows.append(f"| `{name}` | `{kind}` | {default} | {desc} |")
    return rows


def render() -> str:
    schema = build_policy_model(default_registry()).model_json_schema()
    defs = schema.get("$defs", {})
    out = [
        "# Policy reference",
        "",
        "Generated from the policy JSON Schema by `scripts/gen_policy_docs.py`; do not edit by hand.",
        "Editors can validate policies with `policies/policy.schema.json` (`policy-sidecar schema`).",
        "",
        "Names are checked, not only shapes: unknown fields, `when.routes` names, PII entity types,",
        "moderation categories, message roles, decision-log actions, upstream names and every",
        "enumerated value fail `policy-sidecar check` with `file:line:col` and a did-you-mean.",
        "Model globs that match no configured route or upstream model are warnings.",
        "`policy-sidecar check --coverage POLICY` shows which steps cover each API surface.",
        "",
        "## Top level",
        "",
        *_table(schema, defs),
        "",
    ]
    observability = (
        "ObservabilityConfig",
        "TracingConfig",
        "MetricsConfig",
        "LogsConfig",
        "DecisionLogConfig",
    )
    clients = ("ClientsConfig", "JwtConfig")  # keys file format: docs/auth.md
    passthrough = ("PassthroughConfig", "PassthroughRule", "PassthroughBudget")
    for name in ("UpstreamConfig", "Limits", "Match", *passthrough, *observability, *clients):
        if name in defs:
            out += [f"## `{name}`", "", *_table(defs[name], defs), ""]
    out += [
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
    for name in sorted(defs):
        model = defs[name]
        type_field = model.get("properties", {}).get("type", {})
        plugin = type_field.get("const") or type_field.get("default")
        if not plugin or name in ("UpstreamConfig",):
            continue
        out += [
            f"## Plugin `{plugin}`",
            "",
            model.get("description", "").strip(),
            "",
            *_table(model, defs, skip=COMMON),
            "",
        ]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
