"""In-process cost of the injection and moderation detectors and plugins on the 2 KB prose prompt.

    python benchmarks/detectors_micro.py [--calls 300 --blocks 7] [--components]

Why this exists: the end-to-end rows of ``run.py`` move by tenths of a millisecond with whatever
else runs on a shared 2-core machine, while the detectors' own cost is a few hundred µs. This
times each piece on one thread with no network: the detectors' ``scan`` on ``PROSE_2K``
(injection; moderation, which checks the prompt on input and the echoed prompt on output), and
the two plugins' hooks as the sidecar runs them for one request (injection ``on_request``, then
moderation ``on_request`` and ``on_response``, sharing one ``RequestContext``).

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


def _plugins(enabled: bool = True) -> Callable[[], None]:
    """One request through both plugins, as the sidecar's chain calls them (inline: < INLINE_LIMIT);
    with ``enabled=False`` the same harness (event loop turn, body parsing) without them."""
    from plugins.injection import InjectionConfig, InjectionPlugin
    from plugins.moderation import ModerationConfig, ModerationPlugin

    deps = Deps(Resources())
    injection = InjectionPlugin(InjectionConfig(), deps)
    moderation = ModerationPlugin(ModerationConfig(), deps)
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
        "moderation: normalise (no decoding)": lambda: rules.canonical(PROSE_2K),
        "moderation: canonicalise": lambda: canonicalise(folded),
        "moderation: rules on canonical text": lambda: rules.scan_canonical(canonical),
        "moderation: classifier (hash + gather)": lambda: moderation.score_list(classifier_text),
    }


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


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per block")
    parser.add_argument("--blocks", type=int, default=7, help="blocks per case (alternating order)")
    parser.add_argument("--components", action="store_true", help="time the layers, not the scans")
    args = parser.parse_args()
    samples = measure(components() if args.components else cases(), args.calls, args.blocks)
    base = statistics.median(next(iter(samples.values())))
    print(f"{len(PROSE_2K)} characters; {args.blocks} blocks of {args.calls} calls; thread CPU time\n")
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
