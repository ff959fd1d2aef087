"""py-spy profiles of a server under load, summarised per request and diffed against a baseline.

Samples are turned into CPU microseconds per request: a frame's share of the on-CPU samples
times the row's CPU/request measured (unprofiled) by the benchmark. Diffing the sidecar against
the aiohttp pass-through then shows where the sidecar's *extra* CPU per request goes.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

RATE = 200  # Hz; py-spy pauses the process for each sample (consistent stacks, ~1-2% overhead)
PROJECT = ("proxy/", "plugins/", "passthrough.py")
#: Frames at the bottom of every stack (process entry, the loop runner): not "project work".
ENTRY_FILES = ("proxy/__main__.py", "proxy/server.py")
ENTRY_FUNCTIONS = ("main (", "<module> (")
OUTSIDE = "(no project frame: uvicorn, starlette, the event loop, aiohttp's callbacks)"


def available() -> bool:
    return shutil.which("py-spy") is not None


def record(pid: int, seconds: int, load_cmd: Sequence[str], raw: Path) -> bool:
    """Run ``load_cmd`` (already sized to outlast the recording) and py-spy ``pid`` meanwhile."""
    pyspy = shutil.which("py-spy")
    if pyspy is None:
        return False
    load = subprocess.Popen(list(load_cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # let the load reach steady state
        cmd = [pyspy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", str(RATE)]
        cmd += ["--threads", "--format", "raw", "--output", str(raw)]
        subprocess.run(cmd, capture_output=True, timeout=seconds + 30, check=False)
    finally:
        try:
            load.wait(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            load.kill()
            load.wait()
    return raw.exists()


def _entry(frame: str) -> bool:
    return frame.startswith(ENTRY_FUNCTIONS) or any(e in frame for e in ENTRY_FILES)


def _function(frame: str) -> str:
    """'handle (proxy/routes/pipeline.py:97)' -> 'handle (proxy/routes/pipeline.py)'."""
    head, sep, tail = frame.rpartition(":")
    return f"{head})" if sep and tail.rstrip(")").isdigit() else frame


@dataclass
class Profile:
    label: str
    cpu_us: float  # CPU per request of the profiled process, measured without the profiler
    total: int = 0
    other_threads: int = 0  # samples of non-main threads, left out
    self_line: Counter[str] = field(default_factory=Counter)
    self_func: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    project_line: Counter[str] = field(default_factory=Counter)  # deepest project frame of each sample

    @classmethod
    def parse(cls, raw: str, label: str, cpu_us: float, pid: int) -> Profile:
        """Main thread only: the sidecar's request work all runs there, while helper threads
        (the policy file watcher) would show up as 'active' whenever they wait for the GIL."""
        p = cls(label, cpu_us)
        main = f"thread ({pid})"
        for line in raw.splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            thread, _, rest = stack.partition(";")
            if not thread.startswith(main):
                p.other_threads += n
                continue
            frames = rest.split(";")
            p.total += n
            p.self_line[frames[-1]] += n
            p.self_func[_function(frames[-1])] += n
            for frame in {_function(f) for f in frames}:
                p.inclusive[frame] += n
            owner = next(
                (f for f in reversed(frames) if any(s in f for s in PROJECT) and not _entry(f)),
                OUTSIDE,
            )
            p.project_line[owner] += n
        return p

    def us(self, samples: int) -> float:
        return samples / self.total * self.cpu_us if self.total else 0.0


def _table(p: Profile, counter: Counter[str], top: int, project_only: bool = False) -> list[str]:
    lines = []
    for frame, n in counter.most_common():
        if project_only and not any(s in frame for s in PROJECT):
            continue
        lines.append(f"{100 * n / p.total:6.1f}%  {p.us(n):7.1f} µs/req  {frame}")
        if len(lines) == top:
            break
    return lines


def _diff(
    p: Profile, base: Profile, a: Counter[str], b: Counter[str], top: int, shared_only: bool = False
) -> list[str]:
    keys = (set(a) & set(b)) if shared_only else (set(a) | set(b))
    delta = sorted(((p.us(a[k]) - base.us(b[k]), k) for k in keys), reverse=True)
    return [f"{d:+7.1f} µs/req  {k}" for d, k in delta[:top] if d > 0]


def report(p: Profile, base: Profile | None = None, top: int = 25) -> str:
    if not p.total:
        return f"# py-spy profile: {p.label}\n\nno samples (py-spy needs ptrace permission)\n"
    out = [
        f"# py-spy profile: {p.label}",
        "",
        f"{p.total} on-CPU samples at {RATE} Hz under 16-connection load (idle excluded); "
        f"µs/req = share of samples x the {p.cpu_us:.0f} µs CPU/request measured without the profiler.",
        "Lines inside C code (socket writes, the uvloop loop) show as the Python line that called it.",
        f"Main thread only ({p.other_threads} samples of other threads left out: helper threads such "
        "as the policy file watcher look active to py-spy while they wait for the GIL).",
        "",
        "## By the deepest project line of each sample (includes the library calls made from it)",
        *_table(p, p.project_line, top),
        "",
        "## Self time by line",
        *_table(p, p.self_line, top),
        "",
        "## Inclusive time, project functions (proxy/, plugins/)",
        *_table(p, p.inclusive, top, project_only=True),
        "",
        "## Inclusive time, all functions",
        *_table(p, p.inclusive, top),
    ]
    if base is not None and base.total:
        out += [
            "",
            f"## Extra CPU per request vs. {base.label} ({p.cpu_us:.0f} vs {base.cpu_us:.0f} µs/req)",
            "",
            "### by deepest project line (project lines differ between the two; the outside share compares)",
            *_diff(p, base, p.project_line, base.project_line, top),
            "",
            "### by function, self time",
            *_diff(p, base, p.self_func, base.self_func, top),
            "",
            "### by function, inclusive time (functions both processes run)",
            *_diff(p, base, p.inclusive, base.inclusive, top, shared_only=True),
        ]
    return "\n".join(out) + "\n"
