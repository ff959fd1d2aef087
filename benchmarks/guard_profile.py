#!/usr/bin/env python
"""In-process CPU of the guarded policy (issue 17), per plugin and per function.

    python benchmarks/guard_profile.py                    # µs per call: guarded + each part, 2 KB
    python benchmarks/guard_profile.py --size 65536       # the same on a 64 KB ticket
    python benchmarks/guard_profile.py --cprofile 25      # top 25 functions of the guarded policy
    python benchmarks/guard_profile.py --cprofile 25 --callers 'search|sub'   # + who calls them

Compiles the policies as the sidecar does (``PolicyStore.compile_text``) with the upstream
replaced by a stub that echoes the last user message back the way the fake upstream does (so
the moderation output check and the pii restore see realistic text), then times
``chain.send`` plus reading the answer on one event loop, with thread CPU time, in alternating
blocks. No HTTP, no sockets: this is the guards' own cost, the part the end-to-end rows
(``benchmarks/guarded.py``) add to the server's. Per-plugin figures are each plugin alone
minus the empty policy.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
import payload
import yaml
from config import GUARD_PARTS, GUARDED_PLUGINS

import proxy.policy.compiler as compiler
from proxy.app import build_app, build_sidecar
from proxy.chain.context import RequestContext
from proxy.models.upstream import BufferedResponse, UpstreamRequest, UpstreamResponse
from proxy.settings import Settings

REPLY = "Hello from the demo upstream. You said: "  # the fake upstream's default reply


class EchoTarget:
    """Answers at once with the fake upstream's default reply: "... You said: <last user message>"."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        body = orjson.loads(request.body)
        last = next(m["content"] for m in reversed(body["messages"]) if m.get("role") == "user")
        answer = {
            "id": "chatcmpl-x",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": REPLY + last},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 500, "completion_tokens": 500, "total_tokens": 1000},
        }
        return BufferedResponse(200, [("content-type", "application/json")], orjson.dumps(answer))


def compile_policy(plugins: list[Any], workdir: Path, name: str) -> Any:
    """The sidecar's ASGI app for a policy of ``plugins``, its upstream an ``EchoTarget``."""
    path = workdir / f"{name}.yaml"
    doc = {"version": 1, "upstreams": {"default": {"base_url": "http://127.0.0.1:9/v1"}}, "plugins": plugins}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    original = compiler._build_target
    compiler._build_target = lambda name, cfg, deps: EchoTarget(name)
    try:
        settings = Settings(policy_path=path, watch=False, log_requests=False, log_level="warning")
        return build_app(build_sidecar(settings))
    finally:
        compiler._build_target = original


async def one_call(app: Any, body: bytes, n: int) -> None:
    """One POST /v1/chat/completions through the ASGI app (no sockets, no HTTP parsing)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in payload.HEADERS.items()]
        + [(b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 40000 + n % 1000),
        "server": ("127.0.0.1", 8080),
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    if status != 200:
        raise RuntimeError(f"unexpected status {status}")


async def measure(policies: dict[str, Any], body: bytes, calls: int, blocks: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in policies}
    for policy in policies.values():
        for i in range(min(calls, 50)):
            await one_call(policy, body, i)
    for block in range(blocks):
        order = list(policies.items())
        for name, policy in order if block % 2 == 0 else reversed(order):
            t0 = time.process_time_ns()
            for i in range(calls):
                await one_call(policy, body, i)
            samples[name].append((time.process_time_ns() - t0) / calls / 1000)
    return {name: statistics.median(s) for name, s in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="ticket characters (default 2048)")
    parser.add_argument("--calls", type=int, default=200, help="calls per block")
    parser.add_argument("--blocks", type=int, default=5, help="blocks per policy (alternating)")
    parser.add_argument("--cprofile", type=int, default=0, help="print this many top functions")
    parser.add_argument("--policy", default="guarded", help="what --cprofile profiles: guarded, pii...")
    parser.add_argument("--callers", default="", help="with --cprofile: who calls functions matching this")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    args = parser.parse_args()
    body = payload.ticket_body(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        policies = {
            "empty": compile_policy([], work, "empty"),
            "guarded": compile_policy(GUARDED_PLUGINS, work, "guarded"),
        }
        for name, plugins in GUARD_PARTS.items():
            policies[name] = compile_policy(plugins, work, name)
        if args.cprofile:
            guarded = policies[args.policy]

            async def run_guarded() -> None:
                for i in range(args.calls * 2):
                    await one_call(guarded, body, i)

            asyncio.run(run_guarded())  # warm-up outside the profile
            prof = cProfile.Profile()
            prof.enable()
            asyncio.run(run_guarded())
            prof.disable()
            stats = pstats.Stats(prof).strip_dirs().sort_stats("tottime")
            stats.print_stats(args.cprofile)
            stats.sort_stats("cumulative").print_stats(args.cprofile)
            if args.callers:
                stats.print_callers(args.callers)
            return 0
        result = asyncio.run(measure(policies, body, args.calls, args.blocks))
    empty = result["empty"]
    kb = args.size / 1024
    if args.json:
        print(json.dumps({"size": args.size, "us": result}))
        return 0
    print(f"| policy ({args.size} characters of ticket) | µs/call | added vs empty | added µs/KB |")
    print("|---|---:|---:|---:|")
    for name, us in result.items():
        added = us - empty
        print(f"| {name} | {us:.0f} | {added:.0f} | {added / kb:.1f} |")
    parts = sum(result[n] - empty for n in GUARD_PARTS)
    print(f"\nsum of the parts' added µs: {parts:.0f} (guarded adds {result['guarded'] - empty:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
