"""What schema enforcement adds per answer: extract + validate a ~2 KB JSON output.

    python benchmarks/schema_validation.py [--iterations N]

Standalone (no servers). Every number is measured in the same run against a baseline measured
the same way, so the table shows ratios and added microseconds rather than absolute times
that depend on the machine:

* baseline: ``orjson.loads`` of the same 2 KB output (what any JSON-consuming hook pays anyway);
* extract + validate: ``extract_json`` (strict) + ``CompiledSchema.problems`` on it;
* whole answer: ``output_from_body`` + ``evaluate`` on a chat completion carrying that output,
  against ``orjson.loads`` of the completion body;
* schema lookup: a cache hit for a request schema (hash of its canonical JSON) vs. a cold compile.

Target (issue #7): validation of a 2 KB output adds under 0.5 ms at p50; schemas are compiled
once per policy revision (policy) or once per distinct schema (request, LRU).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy.contracts import SchemaCache, compile_schema, evaluate, extract_json, output_from_body
from proxy.contracts.request import Plan
from proxy.models.chat import Route

TARGET_US = 500.0

ITEM = {
    "type": "object",
    "properties": {
        "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
        "name": {"type": "string", "minLength": 1},
        "quantity": {"type": "integer", "minimum": 1},
        "unit_price": {"type": "number", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["sku", "name", "quantity", "unit_price", "tags"],
    "additionalProperties": False,
}
SCHEMA = {
    "type": "object",
    "properties": {
        "invoice_id": {"type": "string"},
        "customer": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "email": {"type": "string"}},
            "required": ["name", "email"],
            "additionalProperties": False,
        },
        "currency": {"enum": ["EUR", "USD", "GBP"]},
        "items": {"type": "array", "items": {"$ref": "#/$defs/item"}},
        "notes": {"type": "string"},
    },
    "required": ["invoice_id", "customer", "currency", "items", "notes"],
    "additionalProperties": False,
    "$defs": {"item": ITEM},
}


def output_text(target_bytes: int = 2048) -> str:
    items: list[dict[str, Any]] = []
    doc: dict[str, Any] = {
        "invoice_id": "INV-2024-0001",
        "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "currency": "EUR",
        "items": items,
        "notes": "Thank you for your business.",
    }
    while len(orjson.dumps(doc, option=orjson.OPT_INDENT_2)) < target_bytes - 200:
        n = len(items)
        items.append(
            {
                "sku": f"ABC-{1000 + n}",
                "name": f"Widget number {n}",
                "quantity": n + 1,
                "unit_price": 9.99 + n,
                "tags": ["hardware", "blue"],
            }
        )
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()


def samples(fn: Callable[[], Any], iterations: int) -> list[float]:
    """Per-call microseconds; a warm-up run first so caches and branch predictors are settled."""
    for _ in range(min(200, iterations)):
        fn()
    out = []
    clock = time.perf_counter_ns
    for _ in range(iterations):
        start = clock()
        fn()
        out.append((clock() - start) / 1000)
    return out


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000)
    args = parser.parse_args()
    n = args.iterations

    text = output_text()
    size = len(text.encode())
    compiled = compile_schema(SCHEMA, "invoice", strict=True)
    value = orjson.loads(text)
    assert compiled.problems(value) == [], "the benchmark output must be valid"
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 500, "total_tokens": 510},
    }
    raw = orjson.dumps(body)
    plan = Plan(content=(compiled,), json_object=True, sources=("response_format",))
    cache = SchemaCache()
    cache.get(SCHEMA, strict=True)

    base = samples(lambda: orjson.loads(text), n)
    check = samples(lambda: compiled.problems(extract_json(text).value), n)
    base_body = samples(lambda: orjson.loads(raw), n)
    whole = samples(lambda: evaluate(plan, output_from_body(orjson.loads(raw), Route.CHAT)), n)
    reference = samples(lambda: compiled.validator.is_valid(value), max(50, n // 20))
    hit = samples(lambda: cache.get(SCHEMA, strict=True), n)
    cold = samples(lambda: compile_schema(SCHEMA, "invoice", strict=True), max(50, n // 20))

    rows = [
        ("orjson.loads (baseline)", base, base),
        ("extract + validate", check, base),
        ("jsonschema is_valid alone (reference, not on the hot path)", reference, base),
        ("orjson.loads chat body (baseline)", base_body, base_body),
        ("whole answer: parse + assemble + evaluate", whole, base_body),
        ("request schema: LRU hit", hit, hit),
        ("request schema: cold compile", cold, hit),
    ]
    print(f"Schema validation of a {size} B JSON output ({n} iterations, {sys.version.split()[0]})\n")
    print("| measurement | p50 µs | p99 µs | ratio to its baseline (p50) | added p50 µs |")
    print("|---|---:|---:|---:|---:|")
    for name, values, baseline in rows:
        p50, p99, b50 = p(values, 50), p(values, 99), p(baseline, 50)
        print(f"| {name} | {p50:.1f} | {p99:.1f} | {p50 / b50:.2f}x | {p50 - b50:.1f} |")
    added = p(check, 50) - p(base, 50)
    added_whole = p(whole, 50) - p(base_body, 50)
    worst = max(added, added_whole)
    verdict = "PASS" if worst < TARGET_US else "FAIL"
    print(
        f"\n{verdict}: validation adds {added:.1f} µs (extract + validate) and {added_whole:.1f} µs "
        f"(whole answer) at p50; target < {TARGET_US:.0f} µs"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
