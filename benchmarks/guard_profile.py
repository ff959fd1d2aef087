#!/usr/bin/env python
"""In-process CPU of the guarded policy (issue 17), per plugin and per function.

    python benchmarks/guard_profile.py                    # µs per call: guarded + each part, 2 KB
    python benchmarks/guard_profile.py --size 65536       # the same on a 64 KB ticket
    python benchmarks/guard_profile.py --same-body        # only the old way: one body every call
    python benchmarks/guard_profile.py --evict 8192       # cold caches before every call (as served)
    python benchmarks/guard_profile.py --cprofile 25      # top 25 functions of the guarded policy
    python benchmarks/guard_profile.py --cprofile 25 --callers 'search|sub'   # + who calls them

Compiles the policies as the sidecar does (``PolicyStore.compile_text``) with the upstream
replaced by a stub that echoes the last user message back the way the fake upstream does (so
the moderation output check and the pii restore see realistic text), then times
``chain.send`` plus reading the answer on one event loop, with thread CPU time, in alternating
blocks. No HTTP, no sockets: this is the guards' own cost, the part the end-to-end rows
(``benchmarks/guarded.py``) add to the server's. Per-plugin figures are each plugin alone
minus the empty policy.

Every call sends a different ticket (``tickets.TicketSet``: 256 generated tickets, each call's
e-mail addresses made unique with a per-call id; the system prompt stays the same), so caches
keyed by text content (token counts, pii's e-mail validity LRU and vault conversations) miss as
they would on real traffic. By default each policy is also measured sending one body on every
call (``--same-body`` alone: only that, the benchmark's behaviour before), in the same
alternating blocks, so the table shows how much those caches flatter a same-body figure.
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
import tickets
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
        if not isinstance(request.body, bytes):
            raise TypeError("the benchmark sends buffered request bodies")
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


def evict_caches(buffer: bytes) -> None:
    """Read all of ``buffer`` (sized above the CPU's L2): what a request leaves in the data
    caches is gone, as in a served sidecar, where other requests, uvicorn and the kernel's
    network stack run between two requests of one worker (see ``--evict``)."""
    buffer.find(1)  # memchr over all of it: the buffer is zeros


async def measure(
    policies: dict[str, Any],
    sets: dict[str, tickets.TicketSet],
    calls: int,
    blocks: int,
    evict: bytes | None = None,
) -> dict[str, dict[str, float]]:
    """Median µs per call per body mode (``sets``' keys) and policy. Blocks alternate policies and
    modes (order reversed every other block); one call counter runs over all of them, so with a
    rotating set no body is ever sent twice, and each block's bodies are built before its clock
    starts. With ``evict``, the caches are emptied before every call (``evict_caches``, outside
    the clock: each call is timed on its own)."""
    runs = [(mode, name) for name in policies for mode in sets]
    samples: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    n = 0
    # Warm-up: one lap of the set (at least 50 calls), so whatever a detector builds lazily on
    # first meeting some phrasing (one moderation gate costs ~0.2 s) is built outside the clock.
    for mode, name in runs:
        for i in range(max(min(calls, 50), len(sets[mode]))):
            await one_call(policies[name], sets[mode].body(n), i)
            n += 1
    for block in range(blocks):
        for mode, name in runs if block % 2 == 0 else reversed(runs):
            bodies = [sets[mode].body(n + i) for i in range(calls)]
            n += calls
            policy = policies[name]
            if evict is None:
                t0 = time.process_time_ns()
                for i, body in enumerate(bodies):
                    await one_call(policy, body, i)
                spent = time.process_time_ns() - t0
            else:
                spent = 0
                for i, body in enumerate(bodies):
                    evict_caches(evict)
                    t0 = time.process_time_ns()
                    await one_call(policy, body, i)
                    spent += time.process_time_ns() - t0
            samples[(mode, name)].append(spent / calls / 1000)
    return {mode: {name: statistics.median(samples[(mode, name)]) for name in policies} for mode in sets}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="ticket characters (default 2048)")
    parser.add_argument("--calls", type=int, default=200, help="calls per block")
    parser.add_argument("--blocks", type=int, default=5, help="blocks per policy (alternating)")
    parser.add_argument("--cprofile", type=int, default=0, help="print this many top functions")
    parser.add_argument("--policy", default="guarded", help="what --cprofile profiles: guarded, pii...")
    parser.add_argument("--callers", default="", help="with --cprofile: who calls functions matching this")
    parser.add_argument(
        "--evict",
        type=int,
        default=0,
        metavar="KB",
        help="read this many KB between calls (cold caches, as served; e.g. 8192)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    parser.add_argument(
        "--same-body", action="store_true", help="only one body on every call (default: rotating, and same)"
    )
    args = parser.parse_args()
    rotating = tickets.TicketSet(args.size)
    same = tickets.TicketSet(args.size, same=True)
    sets = {"same": same} if args.same_body else {"rotating": rotating, "same": same}
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
            cycle = sets["same"] if args.same_body else rotating

            async def run_guarded(first: int) -> None:
                for i in range(args.calls * 2):
                    await one_call(guarded, cycle.body(first + i), i)

            asyncio.run(run_guarded(0))  # warm-up outside the profile
            prof = cProfile.Profile()
            prof.enable()
            asyncio.run(run_guarded(args.calls * 2))
            prof.disable()
            stats = pstats.Stats(prof).strip_dirs().sort_stats("tottime")
            stats.print_stats(args.cprofile)
            stats.sort_stats("cumulative").print_stats(args.cprofile)
            if args.callers:
                stats.print_callers(args.callers)
            return 0
        evict = bytes(args.evict << 10) if args.evict else None
        result = asyncio.run(measure(policies, sets, args.calls, args.blocks, evict))
    if args.json:
        print(json.dumps({"size": args.size, "us": result}))
        return 0
    print("\n".join(render(result, args.size)))
    return 0


def render(result: dict[str, dict[str, float]], size: int) -> list[str]:
    """The markdown table: µs per call and added µs over the empty policy, per body mode; with
    both modes, how much lower the same-body figure is (the caches' flattery)."""
    kb = size / 1024
    modes = list(result)
    both = len(modes) == 2
    head = f"| policy ({size} characters of ticket) |"
    head += "".join(f" µs/call, {m} | added vs empty, {m} |" for m in modes)
    head += " added µs/KB, " + modes[0] + " |" + (" same body's added vs rotating |" if both else "")
    out = [head, "|---|" + "---:|" * (2 * len(modes) + 1 + both)]
    added = {m: {name: us - result[m]["empty"] for name, us in result[m].items()} for m in modes}
    for name in result[modes[0]]:
        row = f"| {name} |" + "".join(f" {result[m][name]:.0f} | {added[m][name]:.0f} |" for m in modes)
        row += f" {added[modes[0]][name] / kb:.1f} |"
        if both:
            rot, same = added["rotating"][name], added["same"][name]
            row += (
                f" {same - rot:+.0f} µs ({(same - rot) / rot:+.0%}) |"
                if name != "empty" and rot > 0
                else " |"
            )
        out.append(row)
    for m in modes:
        parts = sum(added[m][n] for n in GUARD_PARTS)
        out.append(f"\n{m}: sum of the parts' added µs: {parts:.0f} (guarded adds {added[m]['guarded']:.0f})")
    return out


if __name__ == "__main__":
    sys.exit(main())
