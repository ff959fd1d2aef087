"""JSON Schema compilation (Draft 2020-12), ``strict`` semantics, and a bounded cache.

Policy schemas are compiled once when the plugin is built (per policy revision). Schemas a
request brings (``response_format``, tool ``parameters``) are compiled on first sight and kept
in a bounded LRU keyed by a SHA-256 of their canonical JSON (sorted keys) plus the ``strict``
flag, so an application that sends the same schema on every call pays for compilation once.
The cache is a shared resource (``Deps.resource``), so it also survives policy reloads.

``strict`` follows OpenAI's structured-output semantics: every object schema that lists
``properties`` is closed (``additionalProperties: false``) and all its properties are required,
unless the schema already says otherwise. OpenAI refuses strict schemas that are not written
this way; applying it here means the sidecar enforces what the client asked for even against a
provider that ignores ``strict``.

Validation first asks a compiled yes/no check (``fastpath``: closures for the subset structured
outputs use, ``jsonschema.is_valid`` otherwise) and only walks jsonschema's error tree on
failure, so a valid answer costs microseconds and an invalid one gets jsonschema's messages.

Error messages may quote the instance, so two forms exist: ``problems`` (path
+ message, for the repair prompt that goes back to the same model) and ``codes`` (path +
keyword, safe for decision records, which never carry output text).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

from proxy.contracts.fastpath import compile_fast
from proxy.contracts.refs import RefProblem, check_refs

#: Errors reported per validation: enough for a repair prompt, bounded for records.
MAX_ERRORS = 8


class SchemaInvalid(ValueError):
    """The schema itself is not a valid Draft 2020-12 schema."""


@dataclass(frozen=True, slots=True)
class Problem:
    path: str  # JSONPath-like, e.g. $.items[0].price
    keyword: str  # the failing schema keyword: type, required, additionalProperties ...
    message: str  # may quote the output: repair prompt only, never decision records

    @property
    def code(self) -> str:
        return f"{self.path}: {self.keyword}"


def _json_path(error: ValidationError) -> str:
    out = "$"
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def close_objects(schema: Any) -> Any:
    """A copy of ``schema`` with ``strict`` semantics applied to every object (see module doc)."""
    if isinstance(schema, list):
        return [close_objects(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: close_objects(v) for k, v in schema.items()}
    props = out.get("properties")
    if isinstance(props, dict):
        out.setdefault("additionalProperties", False)
        out.setdefault("required", list(props))
    return out


class CompiledSchema:
    """One compiled validator; thread-safe and shared by every request that uses the schema."""

    __slots__ = ("digest", "fast", "name", "validator")

    def __init__(self, schema: dict[str, Any], name: str = "", strict: bool = False) -> None:
        effective = close_objects(schema) if strict else schema
        try:
            Draft202012Validator.check_schema(effective)
        except SchemaError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            raise SchemaInvalid(f"invalid JSON Schema at {where}: {exc.message[:200]}") from None
        try:
            check_refs(effective)
        except RefProblem as exc:
            raise SchemaInvalid(f"unsupported JSON Schema: {exc}") from None
        self.validator = Draft202012Validator(effective)
        self.fast = compile_fast(effective)
        self.name = name
        self.digest = schema_digest(schema, strict)

    def problems(self, instance: Any) -> list[Problem]:
        """Empty when ``instance`` is valid; else at most ``MAX_ERRORS`` problems, shallowest first."""
        fast = self.fast
        try:
            if fast(instance) if fast is not None else self.validator.is_valid(instance):
                return []
            # jsonschema has the last word: if it finds nothing, the answer is valid.
            errors = sorted(
                self.validator.iter_errors(instance), key=lambda e: (len(e.absolute_path), e.path)
            )
        except RecursionError:
            # A value nested deeper than validation can follow (an answer's depth is the model's
            # choice): invalid, with a message instead of a crash.
            return [Problem("$", "depth", "The value is nested too deeply to be validated.")]
        return [Problem(_json_path(e), str(e.validator), e.message[:300]) for e in errors[:MAX_ERRORS]]


def schema_digest(schema: Any, strict: bool) -> str:
    canonical = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical + (b"|strict" if strict else b"")).hexdigest()


def compile_schema(schema: Any, name: str = "", strict: bool = False) -> CompiledSchema:
    if not isinstance(schema, dict):
        raise SchemaInvalid("a JSON Schema must be an object")
    return CompiledSchema(schema, name, strict)


class SchemaCache:
    """Bounded LRU of compiled request schemas (see module doc). Thread-safe, O(1) per lookup."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._items: OrderedDict[str, CompiledSchema] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, schema: Any, name: str = "", strict: bool = False) -> CompiledSchema:
        """The compiled schema; raises ``SchemaInvalid`` (invalid schemas are not cached)."""
        if not isinstance(schema, dict):
            raise SchemaInvalid("a JSON Schema must be an object")
        key = schema_digest(schema, strict)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return hit
        compiled = CompiledSchema(schema, name, strict)  # outside the lock: may take a while
        with self._lock:
            self.misses += 1
            self._items[key] = compiled
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return compiled

    def __len__(self) -> int:
        return len(self._items)
