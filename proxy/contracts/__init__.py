"""Output and request contracts: the library behind the ``schema`` plugin.

Kept apart from the plugin so each piece stays small and testable on its own:

* ``extract``   — find the JSON value in what a model wrote (strict, or tolerant of fences/prose);
* ``compiled``  — JSON Schema (Draft 2020-12) compilation, ``strict`` semantics and a bounded LRU
  of request-provided schemas, keyed by a hash of their canonical JSON;
* ``request``   — the contracts a request carries (``response_format`` / ``text.format``, tools);
* ``assemble``  — the model's output as one neutral shape, from a body, an SSE byte string or
  stream events;
* ``verdict``   — check an output against a plan of contracts;
* ``repair``    — the follow-up messages that ask the model to fix its answer.
"""

from proxy.contracts.assemble import (
    CallOut,
    ChoiceOut,
    Output,
    StreamAssembler,
    output_from_body,
    output_from_sse,
)
from proxy.contracts.compiled import CompiledSchema, SchemaCache, SchemaInvalid, compile_schema
from proxy.contracts.extract import ExtractError, extract_json
from proxy.contracts.repair import repair_body
from proxy.contracts.request import Plan, ToolSpec, plan_from_request
from proxy.contracts.verdict import Verdict, Violation, evaluate

__all__ = [
    "CallOut",
    "ChoiceOut",
    "CompiledSchema",
    "ExtractError",
    "Output",
    "Plan",
    "SchemaCache",
    "SchemaInvalid",
    "StreamAssembler",
    "ToolSpec",
    "Verdict",
    "Violation",
    "compile_schema",
    "evaluate",
    "extract_json",
    "output_from_body",
    "output_from_sse",
    "plan_from_request",
    "repair_body",
]
