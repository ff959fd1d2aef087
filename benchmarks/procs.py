"""Process plumbing for the benchmark: free ports, process groups, /proc readers.

Every server runs in its own session (so its process group can be killed whole), is started
directly (no shell in between, so the PID we read /proc for *is* the server), and listens on a
free loopback port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1
LOOPBACK = "127.0.0.1"


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the benchmark dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def cpu_split(pid: int) -> tuple[float, float]:
    """utime and stime of the process (all its threads), in seconds."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "; fields[0] is state
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds (clock-tick resolution)."""
    return sum(cpu_split(pid))


def cpu_precise(pid: int) -> float:
    """CPU time of the process's live threads, in seconds, to the nanosecond.

    The first field of ``/proc/PID/task/TID/schedstat`` is the time the thread ran on a CPU (the
    scheduler's ``sum_exec_runtime``, which utime + stime are derived from), so it measures the same
    thing as ``cpu_seconds`` without its 10 ms ticks: over a 2 s run those ticks alone are ±5 µs per
    request, too coarse to compare plugins costing a few µs. Falls back to ``cpu_seconds`` where
    schedstat is missing. Threads that exited are not counted: use differences over short spans.
    """
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread that just exited
                total += int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return cpu_seconds(pid)
    return total / 1e9


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Server:
    """One server process on ``port``; ``log`` collects its stdout and stderr."""

    name: str
    argv: Sequence[str]
    port: int
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        env = {**os.environ, **self.env}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                list(self.argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.cwd,
                start_new_session=True,  # own process group: killpg reaches any child too
                preexec_fn=_die_with_parent,
            )

    def wait_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
            with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, self.port), timeout=0.5):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on port {self.port} within {timeout}s: {self.tail()}")

    def tail(self, n: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def cpu_precise(self) -> float:
        return cpu_precise(self.pid)

    def cpu_split(self) -> tuple[float, float]:
        return cpu_split(self.pid)

    def rss(self) -> float:
        return rss_mb(self.pid)

    def stop(self, grace: float = 5.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def fake_upstream(workdir: Path, root: Path) -> Server:
    """The scriptable fake provider every benchmark row talks to (``policy-sidecar fake-upstream``)."""
    port = free_port()
    return Server(
        "fake-upstream",
        [sys.executable, "-m", "proxy", "fake-upstream", "--port", str(port)],
        port,
        workdir / "upstream.log",
        cwd=str(root),
    )


def passthrough_floor(workdir: Path, here: Path, upstream_api: str, name: str = "pt-aiohttp") -> Server:
    """The baseline: a 40-line aiohttp pass-through (``benchmarks/passthrough.py``) to the same upstream."""
    port = free_port()
    argv = [sys.executable, str(here / "passthrough.py"), "--client", "aiohttp", "--port", str(port)]
    return Server(name, [*argv, "--upstream", upstream_api], port, workdir / "pt.log", cwd=str(here.parent))


def report_abort(exc: BaseException, servers: Sequence[Server]) -> int:
    """An aborted benchmark: the reason, and the log tail of every server that died (exit code 1)."""
    print(f"benchmark aborted: {exc!r}", file=sys.stderr)
    for server in servers:
        if server.proc is not None and server.proc.poll() is not None:
            print(f"# {server.name}:\n{server.tail()}", file=sys.stderr)
    return 1


def stop_all(servers: Sequence[Server]) -> None:
    """Stop every server, newest first; one that fails to stop does not keep the others running."""
    for server in reversed(servers):
        with contextlib.suppress(Exception):
            server.stop()
