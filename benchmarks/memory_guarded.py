#!/usr/bin/env python
"""Where the guarded policy's memory goes (issue 17: RSS <= 120 MB): RSS per stage, per mapping kind.

    python benchmarks/memory_guarded.py                        # guarded policy, defaults
    python benchmarks/memory_guarded.py --policy pii --policy empty
    python benchmarks/memory_guarded.py --env MALLOC_ARENA_MAX=2 --env "A=1 B=2"   # 3 variants each
    python benchmarks/memory_guarded.py --compare /path/to/other/checkout   # before/after, same run

Starts the fake upstream and one sidecar per variant (policy x environment x checkout), then per
stage reads ``/proc/PID/status`` (VmRSS, VmHWM) and ``/proc/PID/smaps`` (RSS split into the
``[heap]`` (glibc's main arena), anonymous mappings (thread arenas, big mallocs, numpy arrays,
Hyperscan databases and scratch, Rust heaps: tiktoken's ranks), thread stacks and
file-backed mappings (shared libraries, the interpreter)). Stages: idle after start, after one
request of each size, then after 16-connection wrk load with rotating support tickets
(``tickets.TicketSet``) of 2, 16 and 64 KB. Only RSS, never a wall-clock figure: memory does not
care how busy the machine is, so this runs fine beside other benchmarks.

Writes a markdown table to stdout (and ``--out`` when given).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from config import CHAT, GUARD_PARTS, GUARD_SIZES, GUARDED_PLUGINS, ROOT
from guarded import Bodies, GRow, _check, _sidecar
from measure import Loader, drain
from procs import Server, fake_upstream, report_abort, stop_all

POLICIES: dict[str, list[Any]] = {"empty": [], "guarded": GUARDED_PLUGINS, **GUARD_PARTS}


def status_kb(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile and Threads from /proc/PID/status (kB; Threads a count)."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
            out[key] = int(value.split()[0])
    return out


_HEADER = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")


def smaps_split(pid: int) -> dict[str, int]:
    """RSS (kB) per mapping kind: heap, anon (other anonymous), stack, and file mappings by name."""
    split: dict[str, int] = {}
    name = "anon"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if _HEADER.match(line):
            parts = line.split(None, 5)
            path = parts[5].strip() if len(parts) > 5 else ""
            if not path:
                name = "anon"
            elif path == "[heap]":
                name = "heap"
            elif path.startswith("[stack"):
                name = "stack"
            elif path.startswith("["):
                name = "other"
            else:
                name = "file:" + Path(path).name
        elif line.startswith("Rss:"):
            split[name] = split.get(name, 0) + int(line.split()[1])
    return split


@dataclass
class Variant:
    label: str
    server: Server
    stages: list[tuple[str, dict[str, int], dict[str, int]]] = field(default_factory=list)

    def snapshot(self, stage: str) -> None:
        self.stages.append((stage, status_kb(self.server.pid), smaps_split(self.server.pid)))


def _mb(kb: int) -> str:
    return f"{kb / 1024:.1f}"


def render(variants: list[Variant], top_files: int) -> list[str]:
    out = [
        "| variant | stage | RSS | HWM | heap | anon | stack | files | threads |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v in variants:
        for stage, st, sm in v.stages:
            files = sum(kb for k, kb in sm.items() if k.startswith("file:"))
            out.append(
                f"| {v.label} | {stage} | {_mb(st['VmRSS'])} | {_mb(st['VmHWM'])} | {_mb(sm.get('heap', 0))} "
                f"| {_mb(sm.get('anon', 0))} | {_mb(sm.get('stack', 0))} | {_mb(files)} | {st['Threads']} |"
            )
    out += ["", "Biggest file-backed mappings at the last stage (MB):", ""]
    for v in variants:
        sm = v.stages[-1][2]
        biggest = sorted(((kb, k[5:]) for k, kb in sm.items() if k.startswith("file:")), reverse=True)
        listed = ", ".join(f"{name} {kb / 1024:.1f}" for kb, name in biggest[:top_files])
        out.append(f"- {v.label}: {listed}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", action="append", choices=sorted(POLICIES), help="default: guarded")
    parser.add_argument(
        "--env", action="append", default=[], help="'NAME=VALUE ...': one more variant of each policy"
    )
    parser.add_argument("--compare", type=Path, help="another checkout: the same variants from its sources")
    parser.add_argument("--seconds", type=int, default=3, help="seconds of wrk load per size")
    parser.add_argument("--top-files", type=int, default=6)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    policies = args.policy or ["guarded"]
    envs: list[dict[str, str]] = [{}]
    envs += [dict(item.split("=", 1) for item in variant.split()) for variant in args.env]
    sources = [ROOT] + ([args.compare.resolve()] if args.compare else [])
    workdir = Path(tempfile.mkdtemp(prefix="sidecar-memory-"))
    servers: list[Server] = []
    try:
        upstream = fake_upstream(workdir, ROOT)
        up_api = upstream.url + "/v1"
        variants: list[Variant] = []
        for src_i, src in enumerate(sources):
            for policy in policies:
                for env_i, env in enumerate(envs):
                    tag = f"{policy}-{src_i}-{env_i}"
                    server = _sidecar(workdir, tag, POLICIES[policy], up_api, src)
                    server.env.update(env)
                    label = policy + (f" [{' '.join(f'{k}={v}' for k, v in env.items())}]" if env else "")
                    label += " (compare)" if src_i else ""
                    variants.append(Variant(label, server))
        servers = [upstream, *(v.server for v in variants)]
        for server in servers:
            server.start()
        for server in servers:
            server.wait_listening(90)
        for v in variants:
            _wait_ready(v.server, 120)
        time.sleep(1.0)
        for v in variants:
            v.snapshot("idle")
        loader = Loader(workdir, force_python=False)
        bodies = Bodies(workdir, loader)
        for v in variants:
            for size in GUARD_SIZES:
                _check_one(v.server, bodies, size)
            v.snapshot("1 req/size")
        for size in GUARD_SIZES:
            for v in variants:  # one at a time: the other sidecars idle meanwhile
                bodies.load(v.server.url + CHAT, size, args.seconds, False)
                drain(v.server)
                v.snapshot(f"load {size // 1024} KB")
        text = "\n".join(render(variants, args.top_files)) + "\n"
        print(text)
        if args.out:
            args.out.write_text(text)
        return 0
    except (KeyboardInterrupt, RuntimeError) as exc:
        return report_abort(exc, servers)
    finally:
        stop_all(servers)


def _wait_ready(server: Server, timeout: float) -> None:
    """Until ``/ready`` answers 200: the socket is bound before the policy is compiled."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), opener.open(server.url + "/ready", timeout=5) as resp:
            if resp.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} not ready within {timeout}s: {server.tail()}")


def _check_one(server: Server, bodies: Bodies, size: int) -> None:
    """One request of ``size`` (the set's first body), answer checked like the CPU benchmark does."""
    _check(GRow("memory", server, size), bodies)


if __name__ == "__main__":
    sys.exit(main())
