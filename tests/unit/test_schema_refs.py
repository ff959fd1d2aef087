"""Client JSON Schemas with references: endless cycles and remote refs refused at compile time,
recursion that descends into the value supported, values too deep for validation reported as a
problem (issue 16, item 3)."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.contracts.compiled import SchemaInvalid, compile_schema
from proxy.contracts.refs import RefProblem, check_refs

TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
            "required": ["name"],
        }
    },
    "$ref": "#/$defs/node",
}

ENDLESS: list[tuple[str, Any]] = [
    ("root self-reference", {"$ref": "#"}),
    (
        "two defs referring to each other",
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    ),
    (
        "a cycle through allOf / anyOf",
        {
            "$defs": {"a": {"allOf": [{"$ref": "#/$defs/b"}]}, "b": {"anyOf": [{"$ref": "#/$defs/a"}]}},
            "$ref": "#/$defs/a",
        },
    ),
    ("a cycle through not / if", {"not": {"if": {"$ref": "#"}}}),
    ("an anchor pointing at itself", {"$anchor": "me", "oneOf": [{"$ref": "#me"}]}),
]
UNUSABLE: list[tuple[str, Any]] = [
    ("remote", {"$ref": "https://example.com/schema.json"}),
    ("relative file", {"properties": {"a": {"$ref": "other.json#/x"}}}),
    ("unresolvable pointer", {"$ref": "#/$defs/missing"}),
    ("unknown anchor", {"$ref": "#nowhere"}),
    ("pointer at a non-schema", {"$defs": {"n": 3}, "$ref": "#/$defs/n"}),
]


@pytest.mark.parametrize(("what", "schema"), ENDLESS + UNUSABLE, ids=[w for w, _ in ENDLESS + UNUSABLE])
def test_unusable_references_are_refused_when_the_schema_is_compiled(what: str, schema: Any) -> None:
    with pytest.raises(RefProblem):
        check_refs(schema)
    with pytest.raises(SchemaInvalid, match="JSON Schema"):
        compile_schema(schema)


def test_recursion_that_descends_into_the_value_is_supported() -> None:
    compiled = compile_schema(TREE)
    assert compiled.problems({"name": "root", "kids": [{"name": "a", "kids": [{"name": "b"}]}]}) == []
    problems = compiled.problems({"name": "root", "kids": [{"kids": []}]})
    assert [p.code for p in problems] == ["$.kids[0]: required"]
    assert check_refs({"type": "object", "properties": {"next": {"$ref": "#"}}}) is True
    assert check_refs({"type": "string"}) is False  # no references: nothing to check


def test_a_long_chain_of_references_does_not_hit_the_recursion_limit() -> None:
    defs = {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(3000)}
    defs["d3000"] = {"type": "string"}
    assert check_refs({"$defs": defs, "$ref": "#/$defs/d0"}) is True
    defs["d3000"] = {"$ref": "#/$defs/d0"}
    with pytest.raises(RefProblem):
        check_refs({"$defs": defs, "$ref": "#/$defs/d0"})


def test_a_value_too_deep_to_validate_is_a_problem_not_a_crash() -> None:
    compiled = compile_schema({"type": "object", "properties": {"a": {"$ref": "#"}}})
    value: dict[str, Any] = {}
    node = value
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]
    problems = compiled.problems(value)
    assert [p.keyword for p in problems] == ["depth"]
