"""Fuzz: malformed requests on every governed route, every plugin on; never a 5xx, never a hang.

Cases are generated from a fixed seed (``random.Random``), so a failure names a case that can be
replayed: valid bodies for each route, mutated at a random place (wrong types, missing fields,
nulls, huge numbers, Unicode junk, deep nesting, long strings, extra keys), plus whole-body
damage (invalid JSON, wrong content type, non-UTF-8 bytes, top-level non-objects, bodies over the
size limit). Each request has a client timeout; a timeout counts as a failure.

What is asserted for every answer: status < 500, and a 4xx body in the client's own error
format (OpenAI's ``{"error": {message, type, param, code}}``; Anthropic's
``{"type": "error", "error": {type, message}}`` on ``/v1/messages``). A 2xx stream is read to
its end.
"""

from __future__ import annotations

import copy
import json
import os
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.harness import sidecar_harness

# Fixed by default (a failure is a case that can be replayed); FUZZ_SEED / FUZZ_CASES explore more.
SEED = int(os.environ.get("FUZZ_SEED", "16"))
CASES_PER_ROUTE = int(os.environ.get("FUZZ_CASES", "300"))

EVERY_PLUGIN = """
- type: headers
  tenant_header: x-tenant-id
- type: timeout
  total: 20
- type: idempotency
- type: fallback
- type: retry
  max_attempts: 2
  base_delay: 0.01
- type: circuit_breaker
  consecutive_failures: 1000
- type: bulkhead
  max_concurrent: 64
- type: blocklist
  keywords: [forbidden-word]
  patterns: ['sk-[A-Za-z0-9]{20,}']
- type: injection
- type: pii
- type: moderation
  check: [input, output]
- type: schema
  stream: buffer
  on_failure: flag
- type: budget
  limits:
    - {name: rpm, requests: 1000000, window: minute}
    - {name: tpm, tokens: 1000000000, window: minute, key: [tenant, model]}
    - {name: in-flight, concurrent: 64}
"""
EXTRA = "limits: {max_body_bytes: 262144}"

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
    "additionalProperties": False,
}
VALID: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Weather in Paris? Mail jane@example.com"}],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        "max_tokens": 50,
        "temperature": 0.5,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": SCHEMA}}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "w", "schema": SCHEMA, "strict": True},
        },
        "user": "u1",
    },
    "/v1/responses": {
        "model": "gpt-4o",
        "instructions": "Be brief.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "hello"}]}],
        "max_output_tokens": 40,
        "text": {"format": {"type": "json_schema", "name": "w", "schema": SCHEMA, "strict": True}},
        "tools": [{"type": "function", "name": "f", "parameters": SCHEMA}],
    },
    "/v1/embeddings": {"model": "text-embedding-3-small", "input": ["first text", "second text"]},
    "/v1/messages": {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
        ],
        "tools": [{"name": "f", "description": "d", "input_schema": SCHEMA}],
        "tool_choice": {"type": "auto"},
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "metadata": {"user_id": "u1"},
    },
}

JUNK_STRINGS = [
    "",
    " ",
    "\u0000",
    "\ud7ff\ufffd\u202e\u200b",
    "😀" * 50,
    "<|endoftext|>",
    "a" * 5000,
    "null",
    "{}",
]


def _deep(rnd: random.Random, depth: int) -> Any:
    node: Any = rnd.choice([[], {}, "x", 1])
    for _ in range(depth):
        node = [node] if rnd.random() < 0.5 else {"k": node}
    return node


def _junk(rnd: random.Random) -> Any:
    choice = rnd.randrange(14)
    if choice == 0:
        return None
    if choice == 1:
        return rnd.choice([True, False])
    if choice == 2:
        return rnd.choice([0, -1, 1, 2**31, 2**63 - 1, -(2**63), 10**30])
    if choice == 3:
        return rnd.choice([0.5, -1e308, 1e308, 1e-320])
    if choice == 4:
        return rnd.choice(JUNK_STRINGS)
    if choice == 5:
        return []
    if choice == 6:
        return {}
    if choice == 7:
        return [_junk(rnd) for _ in range(rnd.randrange(1, 4))]
    if choice == 8:
        return {rnd.choice(["type", "text", "role", "content", "source", "x"]): _junk(rnd)}
    if choice == 9:
        return _deep(rnd, rnd.choice([30, 70, 150, 400]))
    if choice == 10:
        return [rnd.choice(JUNK_STRINGS)] * rnd.choice([10, 300])
    if choice == 11:
        return {"$ref": rnd.choice(["#", "#/nope", "https://example.com/s.json", "#/$defs/a"])}
    if choice == 12:
        return rnd.choice([{"type": "text"}, {"type": "image", "source": 1}, {"type": "tool_use"}])
    return "".join(chr(rnd.randrange(0x20, 0x2FFF)) for _ in range(rnd.randrange(1, 40)))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _mutate(rnd: random.Random, body: dict[str, Any]) -> dict[str, Any] | Any:
    body = copy.deepcopy(body)
    for _ in range(rnd.choice([1, 1, 1, 2, 3])):
        paths = [p for p in _paths(body) if p]
        if not paths:
            return body
        path = rnd.choice(paths)
        parent: Any = body
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        op = rnd.randrange(6)
        if op <= 2:
            parent[key] = _junk(rnd)
        elif op == 3:
            del parent[key]
        elif op == 4:
            parent[key] = [parent[key]]
        elif isinstance(parent, dict):
            parent[rnd.choice(["zzz", "stream", "n", "tools", "$ref"])] = _junk(rnd)
        else:
            parent.append(_junk(rnd))
    if rnd.random() < 0.2 and isinstance(body, dict):
        body["stream"] = True
    return body


@dataclass
class Case:
    route: str
    content: bytes
    headers: dict[str, str | bytes]
    label: str


def _whole_body(rnd: random.Random, route: str, valid: bytes) -> Case:
    kind = rnd.randrange(9)
    headers: dict[str, str | bytes] = {"content-type": "application/json"}
    if kind == 0:
        content = valid[: rnd.randrange(1, max(2, len(valid) - 1))]  # truncated JSON
    elif kind == 1:
        content = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 200)))
    elif kind == 2:
        content, headers = (
            valid,
            {"content-type": rnd.choice(["text/plain", "application/xml", "", "multipart/x"])},
        )
    elif kind == 3:
        content = rnd.choice([b"[]", b"1", b'"x"', b"null", b"true", b"", b"{}", b"NaN", b"1e400"])
    elif kind == 4:
        content = b"[" * 3000 + b"]" * 3000
    elif kind == 5:
        content = valid.replace(b'"', b"'", 3)
    elif kind == 6:
        content = valid[:-1] + b',"x": "\xff\xfe"}'
    elif kind == 7:
        content = b'{"model": "m", "pad": "' + b"a" * 300_000 + b'"}'  # over max_body_bytes
    else:
        content = valid.replace(b"}", b"}}", 1)
    return Case(route, content, headers, f"whole-body:{kind}")


def cases() -> list[Case]:
    rnd = random.Random(SEED)
    out: list[Case] = []
    for route, valid in VALID.items():
        raw = json.dumps(valid).encode()
        for i in range(CASES_PER_ROUTE):
            tenant = rnd.choice(["acme", "t" * 300, "ü".encode()])
            headers: dict[str, str | bytes] = {"content-type": "application/json", "x-tenant-id": tenant}
            if rnd.random() < 0.1:
                headers["idempotency-key"] = f"key-{rnd.randrange(20)}"
            if i % 10 == 0:
                out.append(_whole_body(rnd, route, raw))
                continue
            body = _mutate(rnd, valid)
            content = json.dumps(body, ensure_ascii=rnd.random() < 0.5).encode("utf-8", "surrogatepass")
            out.append(Case(route, content, headers, f"mutation:{i}"))
    return out


def _format_problem(case: Case, status: int, body: bytes) -> str | None:
    """Why a 4xx body is not in the route's error format, or None when it is."""
    try:
        data = json.loads(body)
    except ValueError:
        return "not JSON"
    if case.route == "/v1/messages":
        ok = (
            isinstance(data, dict)
            and data.get("type") == "error"
            and isinstance(data.get("error"), dict)
            and isinstance(data["error"].get("type"), str)
            and isinstance(data["error"].get("message"), str)
        )
        return None if ok else f"not Anthropic's envelope: {body[:200]!r}"
    ok = isinstance(data, dict) and set(data) == {"error"} and isinstance(data["error"], dict)
    ok = ok and {"message", "type", "param", "code"} <= set(data["error"])
    return None if ok else f"not the OpenAI envelope: {body[:200]!r}"


def _send(client: httpx.Client, base: str, case: Case) -> str | None:
    try:
        with client.stream("POST", base + case.route, content=case.content, headers=case.headers) as r:
            body = r.read()
    except httpx.TimeoutException:
        return f"{case.route} {case.label}: no answer within the client timeout"
    if r.status_code >= 500:
        return f"{case.route} {case.label}: {r.status_code} {body[:300]!r} for {case.content[:300]!r}"
    if r.status_code >= 400:
        problem = _format_problem(case, r.status_code, body)
        if problem:
            return f"{case.route} {case.label}: {r.status_code} {problem}"
    return None


def test_malformed_requests_never_get_a_5xx_or_hang(tmp_path: Path) -> None:
    all_cases = cases()
    assert len(all_cases) >= 1000
    with sidecar_harness(tmp_path, EVERY_PLUGIN, EXTRA) as h:
        with httpx.Client(timeout=15) as client, ThreadPoolExecutor(4) as pool:
            failures = [f for f in pool.map(lambda c: _send(client, h.base_url, c), all_cases) if f]
        # The sidecar still serves a valid request afterwards (no wedged state).
        ok = httpx.post(h.base_url + "/v1/embeddings", json=VALID["/v1/embeddings"], timeout=15)
    assert failures == [], f"{len(failures)} of {len(all_cases)} failed:\n" + "\n".join(failures[:20])
    assert ok.status_code == 200
