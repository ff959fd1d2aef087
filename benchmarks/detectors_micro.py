"""In-process cost of the injection and moderation detectors and plugins on the 2 KB prose prompt.

    python benchmarks/detectors_micro.py [--calls 300 --blocks 7] [--cold [--cold-mb 16]]
                                         [--components | --offload]

Why this exists: the end-to-end rows of ``run.py`` move by tenths of a millisecond with whatever
else runs on a shared 2-core machine, while the detectors' own cost is a few hundred µs. This
times each piece on one thread with no network: the detectors' ``scan`` on ``PROSE_2K``
(injection; moderation, which checks the prompt on input and the echoed prompt on output), and
the two plugins' hooks as the sidecar runs them for one request (injection ``on_request``, then
moderation ``on_request`` and ``on_response``, sharing one ``RequestContext``).

``plugin glue`` runs the same request with each detector's ``scan`` answered from a memo of its
real result: what the plugins cost around the scans (text extraction, decisions, scores). Why it
matters: in the sidecar (counters around hooks and scans, 16 connections) the glue measured
~45-55 µs per request for moderation (input + output) and ~70-80 µs for injection + moderation,
while each scan took ~0.37-0.41 ms there against ~0.25-0.3 ms here, where one text is scanned over
and over with warm caches (``--cold``, 16 MB written before each scan, makes them ~30-50% dearer).
Most of what an end-to-end row adds beyond this table is the scans running with cold caches, not the glue.

``--cold`` times each call on its own and writes one byte per cache line of a ``--cold-mb`` (16) MB
buffer before each, untimed: the scans then find their weight tables and hashing arrays evicted
from L1/L2 (and partly L3), as in the sidecar, where parsing, networking and other requests run
between two scans. Warm rows (the default) are the code's own cost; cold rows are closer to what a
request pays.

``--offload`` backs ``proxy.detectors.shared.INLINE_CHARS``: the process CPU (both threads) of one
hop to the CPU pool and back through ``Deps.run_cpu`` with a no-op, against a direct call, and the
scans' cost at 1 to 16 KB of prose.

Each figure is the median over ``--blocks`` blocks of the per-call thread CPU time (µs) of
``--calls`` sequential calls. The baseline, measured in the same run and interleaved with the
others, is ``orjson.loads`` of the ~2 KB request body: the ratio column is what to compare
between runs, as it cancels most of the machine's speed and load.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.payload import PROSE_2K, chat_body
from proxy.chain import Deps, RequestContext
from proxy.chain.plugin import Resources
from proxy.detectors.injection import InjectionDetector
from proxy.detectors.moderation import ModerationDetector
from proxy.models import ChatRequest, ChatResponse
from proxy.models.chat import Route


class _Memoised:
    """A detector whose ``scan`` answers from a memo of the real result: isolates the plugin glue."""

    def __init__(self, inner: Any) -> None:
        self.thresholds = inner.thresholds
        self._inner = inner
        self._memo: dict[str, Any] = {}

    def scan(self, text: str, cache: Any = None) -> Any:
        result = self._memo.get(text)
        if result is None:
            result = self._memo[text] = self._inner.scan(text, cache)
        return result


def _plugins(enabled: bool = True, memoise: bool = False) -> Callable[[], None]:
    """One request through both plugins, as the sidecar's chain calls them (inline: within
    ``INLINE_CHARS``); with ``enabled=False`` the same harness (event loop turn, body parsing)
    without them; with ``memoise`` the detectors answer from a memo (``_Memoised``)."""
    from plugins.injection import InjectionConfig, InjectionPlugin
    from plugins.moderation import ModerationConfig, ModerationPlugin

    deps = Deps(Resources())
    injection = InjectionPlugin(InjectionConfig(), deps)
    moderation = ModerationPlugin(ModerationConfig(), deps)
    if memoise:
        injection.detector = _Memoised(injection.detector)  # type: ignore[assignment]
        moderation.detector = _Memoised(moderation.detector)  # type: ignore[assignment]
    raw = chat_body(prose=True)
    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": PROSE_2K}}],
    }
    loop = asyncio.new_event_loop()

    async def once() -> None:
        ctx = RequestContext("req-1", Route.CHAT, {}, "rev", "gpt-4o-mini")
        req = ChatRequest(orjson.loads(raw), Route.CHAT, raw)
        resp = ChatResponse(answer, Route.CHAT)
        if enabled:
            await injection.on_request(req, ctx)
            await moderation.on_request(req, ctx)
            await moderation.on_response(resp, ctx)
        if ctx.decisions:
            raise RuntimeError(f"unexpected decisions on benign prose: {ctx.decisions}")

    return lambda: loop.run_until_complete(once())


def cases() -> dict[str, Callable[[], Any]]:
    raw = chat_body(prose=True)
    inj = InjectionDetector()
    mod = ModerationDetector()
    return {
        "baseline: orjson.loads(2 KB body)": lambda: orjson.loads(raw),
        "injection.scan(PROSE_2K)": lambda: inj.scan(PROSE_2K),
        "moderation.scan(PROSE_2K) (input)": lambda: mod.scan(PROSE_2K),
        "moderation.scan(PROSE_2K) (output, echoed)": lambda: mod.scan(PROSE_2K),
        "plugin harness alone (loop turn, parsing)": _plugins(enabled=False),
        "plugins: injection + moderation in + out": _plugins(),
        "plugin glue: the same, scans memoised": _plugins(memoise=True),
    }


def components() -> dict[str, Callable[[], Any]]:
    """The layers on their own (``--components``): where a scan's time goes, for the next round.

    Each row runs one layer on ``PROSE_2K`` as ``scan`` would (the moderation rows start from the
    folded text ``scan`` would have); the heuristics are timed together with the normaliser, whose
    rot13 gate does their literal search."""
    from proxy.detectors.injection.classifier import InjectionClassifier
    from proxy.detectors.injection.heuristics import HeuristicScanner
    from proxy.detectors.injection.normalise import default_normaliser
    from proxy.detectors.moderation.classifier import ModerationClassifier
    from proxy.detectors.moderation.rules import RuleScanner, canonicalise

    raw = chat_body(prose=True)
    scanner, normaliser = HeuristicScanner.default(), default_normaliser()
    injection, moderation = InjectionClassifier.default(), ModerationClassifier.default()
    rules = RuleScanner.default()
    folded = normaliser(PROSE_2K).text
    canonical = canonicalise(folded)
    classifier_text = rules.scan_canonical(canonical).classifier_text
    prepared = injection.hasher.prepare(PROSE_2K)

    return {
        "baseline: orjson.loads(2 KB body)": lambda: orjson.loads(raw),
        "injection: normalise (incl. the rot13 gate's literal search)": lambda: normaliser(PROSE_2K),
        "injection: normalise + heuristics (which reuse that search)": lambda: scanner.scan(
            normaliser(PROSE_2K)
        ),
        "injection: classifier (hash + gather)": lambda: injection.score(PROSE_2K),
        "  n-gram hashing alone": lambda: injection.hasher._mixed(prepared),
        "  n-gram hashing, numpy reference (the fallback without a compiler)": lambda: (
            injection.hasher._mixed_numpy(prepared)
        ),
        "moderation: normalise (no decoding)": lambda: rules.canonical(PROSE_2K),
        "moderation: canonicalise": lambda: canonicalise(folded),
        "moderation: rules on canonical text": lambda: rules.scan_canonical(canonical),
        "moderation: classifier (hash + gather)": lambda: moderation.score_list(classifier_text),
    }


def offload() -> None:
    """Print the hop's cost and the scans' cost by size (``--offload``)."""
    from proxy.chain.plugin import Resources as _Resources

    deps = Deps(_Resources())
    loop = asyncio.new_event_loop()

    def noop() -> None:
        return None

    async def hops(n: int) -> None:
        for _ in range(n):
            await deps.run_cpu(noop)

    async def direct(n: int) -> None:
        for _ in range(n):
            noop()

    loop.run_until_complete(hops(200))  # start the pool's threads
    cost: dict[str, list[float]] = {"hop": [], "direct": []}
    for _ in range(7):
        for name, fn in (("hop", hops), ("direct", direct)):
            t0 = time.process_time_ns()  # both threads: the loop's and the pool thread's
            loop.run_until_complete(fn(2000))
            cost[name].append((time.process_time_ns() - t0) / 2000 / 1000)
    loop.close()
    hop = statistics.median(cost["hop"]) - statistics.median(cost["direct"])
    print(f"hop to the CPU pool and back (Deps.run_cpu, no-op): {hop:.1f} µs process CPU per call\n")
    inj, mod = InjectionDetector(), ModerationDetector()
    print("| characters | injection.scan µs | moderation.scan µs | hop / injection | hop / moderation |")
    print("|---:|---:|---:|---:|---:|")
    for kb in (1, 2, 4, 8, 16):
        text = (PROSE_2K + " ") * (kb // 2 + 1)
        text = text[: kb * 1024]
        scans = {"i": lambda t=text: inj.scan(t), "m": lambda t=text: mod.scan(t)}
        times = measure(scans, 30, 5)
        ti, tm = statistics.median(times["i"]), statistics.median(times["m"])
        print(f"| {len(text)} | {ti:.0f} | {tm:.0f} | {hop / ti:.0%} | {hop / tm:.0%} |")


def measure(fns: dict[str, Callable[[], Any]], calls: int, blocks: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm-up: caches, first-call paths
        for _ in range(min(calls, 50)):
            fn()
    for block in range(blocks):
        order = list(fns.items())
        for name, fn in order if block % 2 == 0 else reversed(order):
            t0 = time.thread_time_ns()
            for _ in range(calls):
                fn()
            samples[name].append((time.thread_time_ns() - t0) / calls / 1000)
    return samples


def measure_cold(
    fns: dict[str, Callable[[], Any]], calls: int, blocks: int, megabytes: int
) -> dict[str, list[float]]:
    """``measure`` with the caches made cold before every call (``--cold``): each call is timed on
    its own, after an untimed write to every cache line of a ``megabytes`` buffer."""
    import numpy as np

    flush = np.zeros(megabytes << 20, dtype=np.uint8)
    lines = flush[::64]  # one byte per 64-byte cache line: touches all of it, ~1/64 of the work

    def evict() -> None:
        np.add(lines, 1, out=lines)

    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm-up: first-call paths (not the caches: they are flushed anyway)
        for _ in range(min(calls, 20)):
            fn()
    clock = time.thread_time_ns
    for block in range(blocks):
        order = list(fns.items())
        for name, fn in order if block % 2 == 0 else reversed(order):
            total = 0
            for _ in range(calls):
                evict()
                t0 = clock()
                fn()
                total += clock() - t0
            samples[name].append(total / calls / 1000)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per block")
    parser.add_argument("--blocks", type=int, default=7, help="blocks per case (alternating order)")
    parser.add_argument("--cold", action="store_true", help="evict the caches before every call")
    parser.add_argument("--cold-mb", type=int, default=16, help="megabytes written between calls (--cold)")
    parser.add_argument("--components", action="store_true", help="time the layers, not the scans")
    parser.add_argument("--offload", action="store_true", help="the CPU pool hop against scans by size")
    args = parser.parse_args()
    if args.offload:
        offload()
        return 0
    fns = components() if args.components else cases()
    if args.cold:
        samples = measure_cold(fns, args.calls, args.blocks, args.cold_mb)
    else:
        samples = measure(fns, args.calls, args.blocks)
    base = statistics.median(next(iter(samples.values())))
    caches = f"cold caches ({args.cold_mb} MB written before each call)" if args.cold else "warm caches"
    runs = f"{args.blocks} blocks of {args.calls} calls"
    print(f"{len(PROSE_2K)} characters; {runs}; thread CPU time; {caches}\n")
    if not args.components:
        print("The plugins row includes the harness row; their difference is what the two plugins add.\n")
    print("| case | µs p50 (block medians) | range | x baseline |")
    print("|---|---:|---:|---:|")
    for name, values in samples.items():
        p50 = statistics.median(values)
        print(f"| {name} | {p50:.1f} | {min(values):.1f} … {max(values):.1f} | {p50 / base:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
