#!/usr/bin/env python3
"""CPU cost of the harmful-request model (``proxy/detectors/moderation/harmful_request.py``).

Why its own bench: the model's budget is <= 150 µs per 2 KB (issue #18 item 4), and the detector's
other layers are being optimised in parallel, so the model's own cost and its share of
``ModerationDetector.scan`` are measured separately. Thread CPU time, alternating blocks in one
process (the machine is shared: wall clock is noise), median per call of each block's mean.

Rows: ``model.score(literal(text))`` alone (``literal`` is computed by the detector anyway for the
intent phrases, so it is timed apart), and ``scan`` with and without the model; texts are the
benchmarks' support-ticket prose and the same prose in Chinese-like and harmful-request variants.

Usage: python scripts/bench_harmful_request.py [--sizes 2048,8192] [--blocks 21] [--calls 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from payload import ticket  # noqa: E402

from proxy.detectors.moderation import ModerationDetector  # noqa: E402
from proxy.detectors.moderation import harmful_request as hr  # noqa: E402
from proxy.detectors.moderation.intent import literal  # noqa: E402


def per_call_us(fns: dict[str, Callable[[], object]], blocks: int, calls: int) -> dict[str, float]:
    """Median over ``blocks`` of the mean thread CPU µs per call, the functions taking turns."""
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm caches and lazy loads
    for _ in range(blocks):
        for name, fn in fns.items():
            start = time.thread_time()
            for _ in range(calls):
                fn()
            samples[name].append((time.thread_time() - start) / calls * 1e6)
    return {k: statistics.median(v) for k, v in samples.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", default="2048,8192")
    ap.add_argument("--blocks", type=int, default=21)
    ap.add_argument("--calls", type=int, default=50)
    args = ap.parse_args(argv)
    model = hr.default()
    with_model = ModerationDetector(harmful_request=True)
    without = ModerationDetector()
    print("| text | literal() | model.score(literal) | scan without model | scan with model |")
    print("|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        text = ticket(size)
        blanked = literal(text)
        r = per_call_us(
            {
                "literal": lambda t=text: literal(t),
                "model": lambda b=blanked: model.score(b),
                "without": lambda t=text: without.scan(t),
                "with": lambda t=text: with_model.scan(t),
            },
            args.blocks,
            args.calls,
        )
        print(
            f"| {size // 1024} KB ticket prose | {r['literal']:.0f} µs | {r['model']:.0f} µs | "
            f"{r['without']:.0f} µs | {r['with']:.0f} µs |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
