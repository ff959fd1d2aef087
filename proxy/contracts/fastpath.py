"""A compiled yes/no check for the JSON Schema subset structured outputs use.

Why: ``jsonschema`` walks the schema for every instance through generators and a reference
resolver; on a 2 KB answer that is milliseconds, over the 0.5 ms budget of issue #7. Schemas
that LLM structured outputs use are small and regular (objects, arrays, scalars, ``enum``,
``$ref`` to ``$defs``, ``anyOf``), so they are compiled here once into nested closures that
only answer "valid or not".

``jsonschema`` stays the reference: it checks every schema (``check_schema``), produces every
error message, and validates any schema that uses a keyword this module does not implement
(the compiler then gives up with ``None``). When the fast check says "invalid", the error walk
of ``jsonschema`` runs anyway, so a disagreement in that direction can never reject a valid
answer; the other direction is covered by a property test against ``jsonschema``.

Semantics follow Draft 2020-12 as ``Draft202012Validator`` implements it without a format
checker: ``format`` and other annotations are ignored, ``integer`` accepts 1.0, booleans are
not numbers, unknown (non-standard) keywords are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from proxy.contracts.refs import follow_pointer

Check = Callable[[Any], bool]

_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$comment",
        "$defs",
        "definitions",
        "title",
        "description",
        "default",
        "deprecated",
        "readOnly",
        "writeOnly",
        "examples",
        "format",
        "contentEncoding",
        "contentMediaType",
    }
)
_SUPPORTED = frozenset(
    {
        "$ref",
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "minProperties",
        "maxProperties",
        "items",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "anyOf",
        "allOf",
        "oneOf",
    }
)
#: Standard keywords this module does not implement: their presence means "use jsonschema".
_UNSUPPORTED = frozenset(
    {
        "$id",
        "$anchor",
        "$dynamicRef",
        "$dynamicAnchor",
        "$vocabulary",
        "not",
        "if",
        "then",
        "else",
        "dependentSchemas",
        "dependentRequired",
        "dependencies",
        "prefixItems",
        "contains",
        "minContains",
        "maxContains",
        "patternProperties",
        "propertyNames",
        "unevaluatedItems",
        "unevaluatedProperties",
        "multipleOf",
        "uniqueItems",
        "contentSchema",
    }
)


class _Unsupported(Exception):
    pass


def _is_number(v: Any) -> bool:
    return (type(v) is int) or (type(v) is float)


def _is_integer(v: Any) -> bool:
    return type(v) is int or (type(v) is float and v.is_integer())


_TYPES: dict[str, Check] = {
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
    "string": lambda v: type(v) is str,
    "number": _is_number,
    "integer": _is_integer,
    "boolean": lambda v: type(v) is bool,
    "null": lambda v: v is None,
}


def _always(_: Any) -> bool:
    return True


def _never(_: Any) -> bool:
    return False


def _literal(values: list[Any]) -> Check:
    """``enum`` / ``const`` over strings, booleans and null only (number equality is subtle:
    JSON Schema says 1 == 1.0 but True != 1; such schemas go to jsonschema)."""
    if not all(v is None or type(v) in (str, bool) for v in values):
        raise _Unsupported("enum/const with numbers, arrays or objects")
    keys = frozenset((type(v), v) for v in values)
    return lambda v: (type(v), v) in keys if v is None or type(v) in (str, bool) else False


def _all(checks: list[Check]) -> Check:
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        a, b = checks
        return lambda v: a(v) and b(v)
    frozen = tuple(checks)
    return lambda v: all(c(v) for c in frozen)


class _Compiler:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.refs: dict[str, list[Check]] = {}

    def ref(self, ref: str) -> Check:
        holder = self.refs.get(ref)
        if holder is None:
            holder = self.refs[ref] = [_always]  # placeholder while compiling (recursion)
            holder[0] = self.compile(self._resolve(ref))
        return lambda v: holder[0](v)

    def _resolve(self, ref: str) -> Any:
        if ref == "#":
            return self.root
        if not ref.startswith("#/"):
            raise _Unsupported("only local references")
        try:
            return follow_pointer(self.root, ref)
        except LookupError:
            raise _Unsupported(f"unresolvable reference {ref}") from None

    def compile(self, schema: Any) -> Check:
        if schema is True:
            return _always
        if schema is False:
            return _never
        if not isinstance(schema, dict):
            raise _Unsupported("schema is not an object")
        unsupported = set(schema) & _UNSUPPORTED
        if schema is self.root:
            unsupported.discard("$id")  # a root $id does not change what "#/..." refers to
        if unsupported:
            raise _Unsupported(f"unsupported keywords {sorted(unsupported)}")
        checks: list[Check] = []
        if "$ref" in schema:
            checks.append(self.ref(schema["$ref"]))
        if "type" in schema:
            checks.append(self._type(schema["type"]))
        if "enum" in schema:
            checks.append(_literal(list(schema["enum"])))
        if "const" in schema:
            checks.append(_literal([schema["const"]]))
        obj = self._object(schema)
        if obj is not None:
            checks.append(obj)
        arr = self._array(schema)
        if arr is not None:
            checks.append(arr)
        text = self._string(schema)
        if text is not None:
            checks.append(text)
        num = self._number(schema)
        if num is not None:
            checks.append(num)
        for key in ("allOf", "anyOf", "oneOf"):
            if key in schema:
                checks.append(self._combine(key, schema[key]))
        return _all(checks)

    @staticmethod
    def _type(kind: Any) -> Check:
        names = [kind] if isinstance(kind, str) else list(kind)
        if not names or any(n not in _TYPES for n in names):
            raise _Unsupported("unknown type")
        if len(names) == 1:
            return _TYPES[names[0]]
        tests = tuple(_TYPES[n] for n in names)
        return lambda v: any(t(v) for t in tests)

    def _object(self, schema: dict[str, Any]) -> Check | None:
        keys = ("properties", "required", "additionalProperties", "minProperties", "maxProperties")
        if not any(k in schema for k in keys):
            return None
        props = {k: self.compile(s) for k, s in (schema.get("properties") or {}).items()}
        required = tuple(schema.get("required") or ())
        extra = schema.get("additionalProperties", True)
        other: Check | None = None if extra is True else self.compile(extra)
        low = schema.get("minProperties")
        high = schema.get("maxProperties")

        def check(v: Any) -> bool:
            if type(v) is not dict:
                return True
            for name in required:
                if name not in v:
                    return False
            if low is not None and len(v) < low:
                return False
            if high is not None and len(v) > high:
                return False
            for name, value in v.items():
                sub = props.get(name)
                if sub is not None:
                    if not sub(value):
                        return False
                elif other is not None and not other(value):
                    return False
            return True

        return check

    def _array(self, schema: dict[str, Any]) -> Check | None:
        if not any(k in schema for k in ("items", "minItems", "maxItems")):
            return None
        items = self.compile(schema["items"]) if "items" in schema else None
        low = schema.get("minItems")
        high = schema.get("maxItems")

        def check(v: Any) -> bool:
            if type(v) is not list:
                return True
            if (low is not None and len(v) < low) or (high is not None and len(v) > high):
                return False
            return items is None or all(items(x) for x in v)

        return check

    @staticmethod
    def _string(schema: dict[str, Any]) -> Check | None:
        if not any(k in schema for k in ("minLength", "maxLength", "pattern")):
            return None
        low = schema.get("minLength")
        high = schema.get("maxLength")
        try:
            pattern = re.compile(schema["pattern"]) if "pattern" in schema else None
        except re.error as exc:
            raise _Unsupported("pattern") from exc

        def check(v: Any) -> bool:
            if type(v) is not str:
                return True
            if (low is not None and len(v) < low) or (high is not None and len(v) > high):
                return False
            return pattern is None or pattern.search(v) is not None

        return check

    @staticmethod
    def _number(schema: dict[str, Any]) -> Check | None:
        names = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
        bounds = [(k, schema[k]) for k in names if k in schema]
        if not bounds:
            return None
        if not all(_is_number(b) for _, b in bounds):
            raise _Unsupported("non-numeric bound")
        lo = schema.get("minimum")
        hi = schema.get("maximum")
        xlo = schema.get("exclusiveMinimum")
        xhi = schema.get("exclusiveMaximum")

        def check(v: Any) -> bool:
            if not _is_number(v):
                return True
            return not (
                (lo is not None and v < lo)
                or (hi is not None and v > hi)
                or (xlo is not None and v <= xlo)
                or (xhi is not None and v >= xhi)
            )

        return check

    def _combine(self, key: str, parts: Any) -> Check:
        if not isinstance(parts, list) or not parts:
            raise _Unsupported(key)
        subs = tuple(self.compile(p) for p in parts)
        if key == "allOf":
            return _all(list(subs))
        if key == "anyOf":
            return lambda v: any(s(v) for s in subs)
        return lambda v: sum(1 for s in subs if s(v)) == 1


def compile_fast(schema: Any) -> Check | None:
    """A yes/no validity check for ``schema`` (already checked by jsonschema), or None when it
    uses something this module leaves to jsonschema."""
    try:
        return _Compiler(schema).compile(schema)
    except (_Unsupported, RecursionError, TypeError):
        return None
