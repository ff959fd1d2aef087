"""In-process CPU cost of a policy's upstream wrappers, without network or event-loop noise.

    python benchmarks/wrappers.py --bare bare.yaml --wrapped wrapped.yaml [--calls 5000 --blocks 7]

Compiles both policies exactly as the sidecar does (``PolicyStore.compile_text`` with the
default plugin registry), but with every upstream target replaced by a stub that answers a
buffered 200 at once, then times ``chain.send`` (plus reading and closing the answer, which is
when the bulkhead gives its slot back) on one event loop (uvloop when installed), in alternating
blocks of ``--calls`` sequential calls. Prints one JSON object: CPU µs per call (thread CPU
time, median of the blocks) for each policy, and the median of the block-by-block differences,
which is what the wrappers themselves cost on the happy path. The two policies should differ
only in their wrappers (same upstreams and routes), so routing costs cancel.

This is the steady complement of the end-to-end CPU/request rows: a few µs are below the noise
of a loaded 2-core machine there, not here. It does not see costs the wrappers cause elsewhere
(more garbage, more event-loop wake-ups), which only the end-to-end figure includes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import proxy.policy.compiler as compiler
from proxy.chain.context import RequestContext
from proxy.chain.registry import default_registry
from proxy.models.chat import Route
from proxy.models.upstream import BufferedResponse, UpstreamRequest, UpstreamResponse
from proxy.policy.compiler import CompiledPolicy
from proxy.policy.store import PolicyStore

BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
ANSWER = b'{"id":"chatcmpl-x","object":"chat.completion","choices":[],"usage":{"total_tokens":1}}'
HEADERS = [("content-type", "application/json"), ("authorization", "Bearer bench-not-a-real-key")]


class StubTarget:
    """An upstream that answers at once, like an HTTP target's settled (buffered) answer."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        return BufferedResponse(200, [("content-type", "application/json")], ANSWER)


def compile_stubbed(path: Path) -> CompiledPolicy:
    original = compiler._build_target
    compiler._build_target = lambda name, cfg, deps: StubTarget(name)
    try:
        store = PolicyStore(path, default_registry())
        return store.compile_text(path.read_text(), str(path))
    finally:
        compiler._build_target = original


async def one_call(policy: CompiledPolicy, n: int) -> None:
    ctx = RequestContext(f"req-{n}", Route.CHAT, {}, policy.revision, "gpt-4o-mini")
    request = UpstreamRequest(
        "POST",
        "/chat/completions",
        list(HEADERS),
        BODY,
        "",
        Route.CHAT,
        False,
        "gpt-4o-mini",
        candidates=policy.routes.plan("gpt-4o-mini"),
    )
    request.target = request.candidates[0]
    resp = await policy.chain.send(request, ctx)
    await resp.read()
    await resp.aclose()
    if resp.status != 200 or ctx.decisions:
        raise RuntimeError(f"unexpected: status {resp.status}, decisions {ctx.decisions}")


async def measure(policies: dict[str, CompiledPolicy], calls: int, blocks: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {name: [] for name in policies}
    for policy in policies.values():  # warm-up: caches, first-call paths
        for i in range(min(calls, 500)):
            await one_call(policy, i)
    for block in range(blocks):
        order = list(policies.items())
        for name, policy in order if block % 2 == 0 else reversed(order):
            t0 = time.thread_time_ns()
            for i in range(calls):
                await one_call(policy, i)
            samples[name].append((time.thread_time_ns() - t0) / calls / 1000)
    return {name: {"us": statistics.median(s), "blocks": s} for name, s in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bare", type=Path, required=True, help="policy without the wrappers")
    parser.add_argument("--wrapped", type=Path, required=True, help="the same policy with the wrappers")
    parser.add_argument("--calls", type=int, default=5000, help="calls per block")
    parser.add_argument("--blocks", type=int, default=7, help="blocks per policy (alternating)")
    args = parser.parse_args()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run

    async def run() -> dict[str, Any]:
        policies = {"bare": compile_stubbed(args.bare), "wrapped": compile_stubbed(args.wrapped)}
        return await measure(policies, args.calls, args.blocks)

    result = runner(run())
    pairs = [w - b for w, b in zip(result["wrapped"]["blocks"], result["bare"]["blocks"], strict=True)]
    result["added_us"] = statistics.median(pairs)  # blocks measured back to back, paired
    result["added_range_us"] = [min(pairs), max(pairs)]
    result["calls"], result["blocks"] = args.calls, args.blocks
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
