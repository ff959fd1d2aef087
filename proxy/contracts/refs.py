"""Reference checks for client JSON Schemas: local and resolvable, and no cycle that never ends.

Why: ``jsonschema`` (and the compiled fast path) follow ``$ref`` by recursion. A reference that
leads back to itself *without descending into the instance* (``{"$ref": "#"}``, or two ``$defs``
that refer to each other through ``allOf`` / ``$ref``) recurses until Python's limit, and it
does so when the *answer* is validated, i.e. after the upstream was called and billed. A remote
reference (``https://...``) is never fetched (that would let any client make the sidecar
issue requests), so it can only fail, again at answer time. Both are refused here, when the
schema is compiled on the request side, so the client gets a 4xx before any upstream call.

Recursion that does descend (a tree: ``node.children.items -> node``) is fine: it ends with the
instance, whose depth the route bounds (``limits.max_json_depth``).

Only in-place applicators (``$ref``, ``$dynamicRef``, ``allOf``, ``anyOf``, ``oneOf``, ``not``,
``if`` / ``then`` / ``else``, ``dependentSchemas``) apply a schema to the *same* instance, so a
cycle made only of them is the one that never ends. Everything is iterative: the checks must not
themselves hit the recursion limit on a long chain of references.
"""

from __future__ import annotations

from typing import Any

_ONE = ("not", "if", "then", "else", "items", "contains", "additionalProperties", "propertyNames",
        "unevaluatedItems", "unevaluatedProperties", "additionalItems")  # fmt: skip
_LIST = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_IN_PLACE_ONE = ("not", "if", "then", "else")
_IN_PLACE_LIST = ("allOf", "anyOf", "oneOf")
_REF_KEYS = ("$ref", "$dynamicRef")


class RefProblem(ValueError):
    """The schema's references cannot be used (remote, unresolvable, or a cycle with no end)."""


def _subschemas(node: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key in _ONE:
        value = node.get(key)
        if isinstance(value, dict):
            out.append(value)
    for key in _LIST:
        value = node.get(key)
        if isinstance(value, list):
            out.extend(v for v in value if isinstance(v, dict))
    for key in _MAP:
        value = node.get(key)
        if isinstance(value, dict):
            out.extend(v for v in value.values() if isinstance(v, dict))
    return out


def _all_nodes(root: dict[str, Any]) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        nodes.append(node)
        stack.extend(_subschemas(node))
    return nodes


def follow_pointer(root: Any, ref: str) -> Any:
    """The value a local ``#/a/b/0`` reference (RFC 6901 JSON pointer) points at in ``root``.

    Raises ``LookupError`` when a step is missing; the caller turns it into its own error
    (a 422 for a client schema, a fallback to the full validator in the fast path).
    """
    node: Any = root
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise LookupError(ref)
    return node


def _resolve(root: dict[str, Any], ref: str, anchors: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The node ``ref`` points at; raises for a remote or unresolvable reference; None for a
    boolean schema (true / false end any chain)."""
    if not ref.startswith("#"):
        raise RefProblem(f"only local references (#...) are supported, not {ref[:80]!r}")
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        if ref[1:] in anchors:
            return anchors[ref[1:]]
        raise RefProblem(f"unresolvable reference {ref[:80]!r}")
    try:
        node = follow_pointer(root, ref)
    except LookupError:
        raise RefProblem(f"unresolvable reference {ref[:80]!r}") from None
    if isinstance(node, bool):
        return None
    if not isinstance(node, dict):
        raise RefProblem(f"reference {ref[:80]!r} does not point at a schema")
    return node


def _in_place(node: dict[str, Any], root: dict[str, Any], anchors: dict[str, dict[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for key in _REF_KEYS:
        ref = node.get(key)
        if isinstance(ref, str):
            target = _resolve(root, ref, anchors)
            if target is not None:
                out.append(target)
    for key in _IN_PLACE_ONE:
        if isinstance(node.get(key), dict):
            out.append(node[key])
    for key in _IN_PLACE_LIST:
        value = node.get(key)
        if isinstance(value, list):
            out.extend(v for v in value if isinstance(v, dict))
    deps = node.get("dependentSchemas")
    if isinstance(deps, dict):
        out.extend(v for v in deps.values() if isinstance(v, dict))
    return out


def check_refs(root: Any) -> bool:
    """Raise ``RefProblem`` for a remote / unresolvable reference or an endless in-place cycle.

    Returns True when the schema uses references at all. A recursive schema that passes (every
    cycle descends into the value) is validated by the fast path or jsonschema, both recursing
    as deep as the value; ``CompiledSchema.problems`` turns a value too deep for that into a
    validation problem, not a crash.
    """
    if not isinstance(root, dict):
        return False
    nodes = _all_nodes(root)
    if not any(isinstance(n.get(k), str) for n in nodes for k in _REF_KEYS):
        return False
    anchors = {n["$anchor"]: n for n in nodes if isinstance(n.get("$anchor"), str)}
    edges = {id(n): _in_place(n, root, anchors) for n in nodes}
    # Iterative three-colour DFS over in-place edges: a grey node met again closes a cycle.
    colour: dict[int, int] = {}
    for start in nodes:
        if colour.get(id(start)):
            continue
        stack: list[tuple[dict[str, Any], int]] = [(start, 0)]
        colour[id(start)] = 1
        while stack:
            node, i = stack[-1]
            children = edges.get(id(node))
            if children is None:  # reached through a reference only: compute its edges now
                children = edges[id(node)] = _in_place(node, root, anchors)
            if i == len(children):
                colour[id(node)] = 2
                stack.pop()
                continue
            stack[-1] = (node, i + 1)
            child = children[i]
            state = colour.get(id(child), 0)
            if state == 1:
                raise RefProblem("a $ref cycle that never reaches into the value (e.g. {'$ref': '#'})")
            if state == 0:
                colour[id(child)] = 1
                stack.append((child, 0))
    return True
