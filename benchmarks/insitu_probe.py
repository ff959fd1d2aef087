#!/usr/bin/env python
"""Why does a detector call cost more inside the request path than in a loop? (issue 17)

    python benchmarks/insitu_probe.py                        # pii, moderation, injection scans
    python benchmarks/insitu_probe.py --sweep 512 2048 8192  # + grouped with caches emptied between
    python benchmarks/insitu_probe.py --page-sweep 8 32      # + one byte per page read (TLB only)
    python benchmarks/insitu_probe.py --batch 1 2 4 8        # + each detector over k requests at once
    python benchmarks/insitu_probe.py --target gate,mod-classifier,mod-rules   # parts of those
    python benchmarks/insitu_probe.py --specialisation      # + does the adaptive bytecode differ?

Apples to apples: the same functions (``--target``) on the same texts, timed the same way
(thread CPU, ``time.thread_time_ns`` around each call). Each block drives the real chain in
process (``guard_profile.one_call``, policy ``--policy``) with wrappers recording every call's
arguments and CPU ("in situ"), then replays exactly those calls without the request around
them: in the recorded order ("interleaved": only the detectors, no glue), grouped per target
(the tight loop), and the optional variants above. The request's ``ScanCache`` is not replayed
(it already holds the text's results), so a replayed moderation scan folds and hashes the text
itself. Figures: mean µs per call within a block, median over blocks; the ratio is against the
grouped replay.

Answer (README, Performance: "Why a detector costs more in the request than in a loop"): the
CPU's data caches. Reading 2 MB (this machine's L2 per core) between grouped calls reproduces
the in-situ cost; huge pages, gc tuning, PYTHONMALLOC=malloc and CPU pinning do not change it, a
page-stride read (TLB reach) explains a part, and the specialised bytecode is the same in both
(``--specialisation``: a few dozen of ~56,000 instructions differ).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import dis
import gc
import mmap
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import guard_profile
import numpy
import tickets
from config import GUARD_PARTS, GUARDED_PLUGINS

from proxy.detectors.injection.detector import InjectionDetector
from proxy.detectors.moderation.classifier import ModerationClassifier
from proxy.detectors.moderation.detector import ModerationDetector
from proxy.detectors.moderation.rules import RuleScanner
from proxy.detectors.multiscan import Gate, LiteralSet
from proxy.detectors.pii.recognizers import RuleSet

TARGETS: dict[str, tuple[type, str]] = {
    "pii": (RuleSet, "scan"),
    "moderation": (ModerationDetector, "scan"),
    "injection": (InjectionDetector, "scan"),
    # parts of those
    "gate": (Gate, "scan"),  # the Hyperscan pre-scans (pii, moderation, injection)
    "gate-matching": (Gate, "matching"),
    "literal-spans": (LiteralSet, "spans"),  # Hyperscan literal passes
    "literal-present": (LiteralSet, "present"),
    "mod-classifier": (ModerationClassifier, "score_list"),  # the 2 MB float16 table's sums
    "mod-rules": (RuleScanner, "scan"),
}


class Probe:
    """Wraps ``cls.name``: records (target, self, args, kwargs) and thread CPU of each call while
    ``on``, into a log shared by every probe (so the calls' order across detectors is kept)."""

    on = False
    log: list[tuple[str, Callable[..., Any], Any, tuple[Any, ...], dict[str, Any], int]] = []

    def __init__(self, target: str, cls: type, name: str) -> None:
        original: Callable[..., Any] = getattr(cls, name)

        def wrapper(self_: Any, *args: Any, **kwargs: Any) -> Any:
            if not Probe.on:
                return original(self_, *args, **kwargs)
            t0 = time.thread_time_ns()
            out = original(self_, *args, **kwargs)
            Probe.log.append((target, original, self_, args, kwargs, time.thread_time_ns() - t0))
            return out

        setattr(cls, name, wrapper)


def hugepage_copy(array: Any) -> Any:
    """A read-only copy of ``array`` in 2 MB-aligned anonymous memory advised MADV_HUGEPAGE (the
    kernel's THP mode here is ``madvise``: nothing else gets huge pages)."""
    huge = 1 << 21
    size = -(-array.nbytes // huge) * huge
    region = mmap.mmap(-1, size + huge)
    offset = -ctypes.addressof(ctypes.c_char.from_buffer(region)) % huge
    region.madvise(mmap.MADV_HUGEPAGE, offset, size)
    copy = numpy.frombuffer(region, dtype=array.dtype, count=array.size, offset=offset).reshape(array.shape)
    copy[...] = array
    copy.flags.writeable = False
    return copy


def huge_moderation_tables() -> int:
    """Every moderation classifier's float16 table moved to huge pages; returns how many."""
    moved = 0
    for obj in gc.get_objects():
        if isinstance(obj, ModerationClassifier) and obj._half is not None:
            obj._half = (hugepage_copy(obj._half[0]), obj._half[1])
            moved += 1
    return moved


def _uncached(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The request's ``ScanCache`` / ``HashCache`` is replaced by None: it already holds this
    text's results."""
    kwargs = {k: None if k == "cache" else v for k, v in kwargs.items()}
    args = tuple(None if type(a).__name__.endswith("Cache") else a for a in args)
    return args, kwargs


def replay(log: list[Any], interleaved: bool, sweep: Any = None, every: int = 1) -> dict[str, list[int]]:
    """The recorded calls again, timed as in situ: in their recorded order (``interleaved``:
    pii, then moderation, ... per request) or grouped by target (each detector's calls back
    to back, the tight loop). ``sweep``: read (untimed) after every ``every`` calls."""
    order = log if interleaved else sorted(log, key=lambda entry: entry[0])
    out: dict[str, list[int]] = {}
    for index, (target, original, self_, args, kwargs, _) in enumerate(order, 1):
        args, kwargs = _uncached(args, kwargs)
        t0 = time.thread_time_ns()
        original(self_, *args, **kwargs)
        out.setdefault(target, []).append(time.thread_time_ns() - t0)
        if sweep is not None and index % every == 0:
            sweep.sum()  # untimed: reads the buffer (a strided view: one byte per page)
    return out


def adaptive_opnames() -> dict[types.CodeType, list[str]]:
    """The specialised instruction names (3.11's adaptive interpreter) of every function and
    method defined in the detectors and plugins: to tell whether in-request and grouped calls
    run differently specialised code."""
    out: dict[types.CodeType, list[str]] = {}
    for module in list(sys.modules.values()):
        if not getattr(module, "__name__", "").startswith(("proxy.detectors", "plugins")):
            continue
        for value in list(vars(module).values()):
            members = list(vars(value).values()) if isinstance(value, type) else [value]
            for fn in members:
                if isinstance(fn, types.FunctionType):
                    out[fn.__code__] = [i.opname for i in dis.get_instructions(fn, adaptive=True)]
    return out


def respecialised(before: dict[types.CodeType, list[str]], after: dict[types.CodeType, list[str]]) -> str:
    """How many instructions changed specialisation between two ``adaptive_opnames``."""
    changed = sum(
        a != b for code, ops in before.items() for a, b in zip(ops, after.get(code, ops), strict=False)
    )
    return f"{changed} of {sum(len(ops) for ops in before.values())} instructions"


def batched(log: list[Any], size: int) -> list[Any]:
    """``log`` in chunks of ``size`` calls, each chunk grouped by target: what a sidecar that ran
    each detector over a batch of queued requests at once would run."""
    out: list[Any] = []
    for start in range(0, len(log), size):
        out.extend(sorted(log[start : start + size], key=lambda entry: entry[0]))
    return out


async def main_async(args: argparse.Namespace) -> None:
    for target in args.target.split(","):
        cls, name = TARGETS[target]
        Probe(target, cls, name)
    plugins = GUARDED_PLUGINS if args.policy == "guarded" else GUARD_PARTS[args.policy]
    rotating = tickets.TicketSet(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        app = guard_profile.compile_policy(plugins, Path(tmp), args.policy)
    if args.hugepages:
        print("moderation tables on huge pages:", huge_moderation_tables())
        rollup = Path("/proc/self/smaps_rollup").read_text()  # noqa: ASYNC240 (a /proc read)
        print([line for line in rollup.splitlines() if "AnonHuge" in line])
    if args.freeze:
        gc.collect()
        gc.freeze()
    if args.threshold:
        gc.set_threshold(args.threshold, 10, 10)
    n = 0
    for i in range(300):  # warm-up
        await guard_profile.one_call(app, rotating.body(n), i)
        n += 1
    rows: dict[str, dict[str, list[float]]] = {}
    for block in range(args.blocks):
        Probe.on, Probe.log = True, []
        bodies = [rotating.body(n + i) for i in range(args.calls)]
        n += args.calls
        for i, body in enumerate(bodies):
            await guard_profile.one_call(app, body, i)
        Probe.on = False
        log = Probe.log
        insitu: dict[str, list[int]] = {}
        for entry in log:
            insitu.setdefault(entry[0], []).append(entry[-1])
        after_request = adaptive_opnames() if args.specialisation else {}
        modes = {
            "in situ": insitu,
            "replay interleaved": replay(log, True),
            "replay grouped": replay(log, False),
        }
        if args.specialisation:
            print("re-specialised, in situ -> grouped:", respecialised(after_request, adaptive_opnames()))
        for kb in args.sweep:
            modes[f"grouped + {kb} KB sweep"] = replay(log, False, numpy.ones(kb * 128))
        per_request = max(1, len(log) // args.calls)
        cold = numpy.ones(args.batch_sweep * 128)
        for k in args.batch:
            order = batched(log, k * per_request)
            modes[f"batches of {k}, cold between"] = replay(order, True, cold, k * per_request)
        for mb in args.page_sweep:
            pages = numpy.ones(mb << 20, dtype=numpy.uint8)[:: 1 << 12]
            modes[f"grouped + 1 byte per page of {mb} MB"] = replay(log, False, pages)
        for mode, by_target in modes.items():
            for target, times in by_target.items():
                rows.setdefault(target, {}).setdefault(mode, []).append(statistics.fmean(times) / 1000)
        per = {target: f"{len(times) / args.calls:.1f}" for target, times in insitu.items()}
        print(f"block {block}: {len(log)} calls; per request: {per}", flush=True)
    for target, by_mode in rows.items():
        base = statistics.median(by_mode["replay grouped"])
        print(
            f"{target} in {args.policy}: "
            + ", ".join(
                f"{m} {statistics.median(v):.1f} µs ({statistics.median(v) / base:.2f}x)"
                for m, v in by_mode.items()
            )
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target", default="pii,moderation,injection", help="comma-separated: " + ", ".join(TARGETS)
    )
    parser.add_argument("--policy", default="guarded", help="guarded or a GUARD_PARTS name")
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--sweep", type=int, nargs="*", default=[], help="KB read between grouped calls")
    parser.add_argument(
        "--page-sweep",
        type=int,
        nargs="*",
        default=[],
        help="MB touched once per 4 KB page (TLB, not caches)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        nargs="*",
        default=[],
        help="requests per batch: each detector over a batch at once",
    )
    parser.add_argument("--batch-sweep", type=int, default=8192, help="KB read between batches")
    parser.add_argument(
        "--specialisation", action="store_true", help="count instructions re-specialised between modes"
    )
    parser.add_argument("--hugepages", action="store_true", help="moderation's table on huge pages")
    parser.add_argument("--freeze", action="store_true", help="gc.freeze() after compiling")
    parser.add_argument("--threshold", type=int, default=0, help="gc first-generation threshold")
    asyncio.run(main_async(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
