"""A minimal valid instance of a JSON Schema, so the demo upstream can answer structured-output
requests (``response_format: json_schema``, Responses ``text.format``) like a real model would.

Deliberately small: it covers what SDK-generated schemas use (``$ref``/``$defs``, ``anyOf``,
``enum``/``const``, required properties, ``minItems``/``minLength``, numeric minimums, common
string formats). A ``pattern`` is not synthesised: the demo is not a fuzzer.
"""

from __future__ import annotations

from typing import Any

import orjson

_FORMATS = {
    "date": "2024-01-01",
    "date-time": "2024-01-01T00:00:00Z",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
_MAX_DEPTH = 12


def _resolve(ref: str, root: dict[str, Any]) -> Any:
    node: Any = root
    for part in ref.lstrip("#/").split("/"):
        if not isinstance(node, dict) or part not in node:
            return {}
        node = node[part]
    return node


def minimal_instance(
    schema: Any, root: dict[str, Any] | None = None, depth: int = 0, strict: bool = False
) -> Any:
    """The smallest sensible value that satisfies ``schema`` (see module doc).

    ``strict`` (OpenAI structured outputs): every listed property is required, so all are given.
    """
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None
    root = root if root is not None else schema
    if isinstance(schema.get("$ref"), str):
        return minimal_instance(_resolve(schema["$ref"], root), root, depth + 1, strict)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return minimal_instance((non_null or options)[0], root, depth + 1, strict)
    if isinstance(schema.get("allOf"), list) and schema["allOf"]:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = minimal_instance(part, root, depth + 1, strict)
            if isinstance(value, dict):
                merged.update(value)
        return merged
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string" if "minLength" in schema else None
    if kind == "object":
        props: dict[str, Any] = schema["properties"] if isinstance(schema.get("properties"), dict) else {}
        required: list[Any] = schema["required"] if isinstance(schema.get("required"), list) else []
        names = list(props) if strict else required
        return {name: minimal_instance(props.get(name, {}), root, depth + 1, strict) for name in names}
    if kind == "array":
        count = int(schema.get("minItems", 0) or 0)
        return [minimal_instance(schema.get("items", {}), root, depth + 1, strict) for _ in range(count)]
    if kind == "string":
        if schema.get("format") in _FORMATS:
            return _FORMATS[schema["format"]]
        return "x" * int(schema.get("minLength", 0) or 0)
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        value = low if isinstance(low, (int, float)) else 0
        if "exclusiveMinimum" in schema and "minimum" not in schema:
            value += 1
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return False
    return None


def structured_reply(body: dict[str, Any], responses: bool) -> str | None:
    """The reply text for a request that asks for structured output, or None when it does not."""
    if responses:
        text = body.get("text")
        fmt = text.get("format") if isinstance(text, dict) else None
        schema = fmt.get("schema") if isinstance(fmt, dict) else None
    else:
        outer = body.get("response_format")
        inner = outer.get("json_schema") if isinstance(outer, dict) else None
        schema = inner.get("schema") if isinstance(inner, dict) else None
        fmt = {**outer, **inner} if isinstance(outer, dict) and isinstance(inner, dict) else outer
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return "{}"
    if fmt.get("type") == "json_schema" and isinstance(schema, dict):
        return orjson.dumps(minimal_instance(schema, strict=bool(fmt.get("strict")))).decode()
    return None
