"""The benchmark's rows: the ``Row`` record and the processes and policies behind each row."""

from __future__ import annotations

import shutil
import socket
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config import BUDGET_LIMITS, CHAT, HERE, PROSE_ROWS, REFERENCE_ROWS, RESILIENCE_PLUGINS, ROOT
from procs import LOOPBACK, Server, free_port


@dataclass
class Row:
    key: str
    label: str
    server: Server | None  # None: the direct-to-upstream reference row
    base_url: str
    skipped: str | None = None
    aux: Server | None = None  # a process the row depends on (redis-server): its CPU is reported
    prose: bool = False  # driven with the ~2 KB prose body instead of the ~1 KB conversation
    requests16: int = 0
    seconds16: float = 0.0
    cpu16: float = 0.0
    upstream_cpu16: float = 0.0
    round_cpu_us: list[float] = field(default_factory=list)
    round_user_sys_us: list[tuple[float, float]] = field(default_factory=list)
    round_upstream_us: list[float] = field(default_factory=list)
    round_aux_us: list[float] = field(default_factory=list)
    redis_calls: dict[str, int] = field(default_factory=dict)  # Redis commands during 16-conn. load
    requests1: int = 0
    cpu1: float = 0.0
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    stream_ms: list[float] = field(default_factory=list)
    paced: list[tuple[float, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rss: float | None = None

    @property
    def url(self) -> str:
        return self.base_url + CHAT

    @property
    def ref(self) -> str:
        """The row a plugin row is compared with: the empty policy measured with the same body, or
        (telemetry) the same policy with telemetry off."""
        if self.key in REFERENCE_ROWS:
            return REFERENCE_ROWS[self.key]
        return "sidecar-empty-2k" if self.prose else "sidecar-empty"

    @property
    def rps(self) -> float | None:
        return self.requests16 / self.seconds16 if self.seconds16 else None

    @property
    def cpu_us(self) -> float | None:
        """Median over rounds of the proxy's CPU time per request at 16 connections."""
        return statistics.median(self.round_cpu_us) if self.server and self.round_cpu_us else None

    def ratio(self, base: Row | None, normalized: bool = False) -> tuple[float, float, float] | None:
        """Median, min and max over rounds of this row's CPU/request over ``base``'s, round by round.

        ``normalized``: each side first divided by the fake upstream's CPU/request in the same
        window. The upstream does the same work for every aiohttp-based row, so this cancels most
        of the inflation that background load causes (not meant for the httpx rows, whose way of
        sending makes the upstream itself work harder).
        """
        if base is None or not self.round_cpu_us or not base.round_cpu_us:
            return None
        mine, theirs = self.round_cpu_us, base.round_cpu_us
        if normalized:
            mine = [c / u for c, u in zip(mine, self.round_upstream_us, strict=True) if u]
            theirs = [c / u for c, u in zip(theirs, base.round_upstream_us, strict=True) if u]
        pairs = [a / b for a, b in zip(mine, theirs, strict=False) if b]
        return (statistics.median(pairs), min(pairs), max(pairs)) if pairs else None

    @property
    def upstream_cpu_us(self) -> float | None:
        return self.upstream_cpu16 / self.requests16 * 1e6 if self.requests16 else None

    @property
    def p50_ms(self) -> float | None:
        return statistics.median(self.p50) if self.p50 else None

    @property
    def p99_ms(self) -> float | None:
        return statistics.median(self.p99) if self.p99 else None

    @property
    def ttft_ms(self) -> float | None:
        return statistics.median(self.ttft) if self.ttft else None


# -- servers ------------------------------------------------------------------------------


def _policy(
    workdir: Path,
    name: str,
    upstream: str,
    plugins: list[Any],
    backup: str | None = None,
    observability: dict[str, Any] | None = None,
) -> Path:
    """A policy file; with ``backup``, two upstreams and one route over both (primary first)."""
    import yaml

    folder = workdir / f"policy-{name}"  # one folder each (the sidecar would watch its folder)
    folder.mkdir()
    path = folder / "policy.yaml"
    doc: dict[str, Any] = {"version": 1, "upstreams": {"default": {"base_url": upstream}}}
    if backup is not None:
        doc["upstreams"] = {"primary": {"base_url": upstream}, "backup": {"base_url": backup}}
        doc["default_upstream"] = "primary"
        doc["routes"] = [{"match": "*", "targets": ["primary", "backup"]}]
    if observability is not None:
        doc["observability"] = observability
    doc["plugins"] = plugins
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _budget(backend: str, redis_url: str | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {"type": "budget", "limits": BUDGET_LIMITS}
    if backend == "redis":
        step |= {"id": "budget-redis", "backend": "redis", "redis_url": redis_url}
    return step


#: Telemetry per row: the tracing exporter (environment) and the policy's ``observability:``.
#: Every other row runs with the defaults (metrics on, no exporter configured: tracing off).
TELEMETRY: dict[str, tuple[str, dict[str, Any]]] = {
    "sidecar-default-notel": ("none", {"metrics": {"enabled": False}}),
    "sidecar-telemetry": ("memory", {"tracing": {"sample_ratio": 1.0}, "metrics": {"enabled": True}}),
}


def _sidecar(workdir: Path, key: str, policy: Path) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "proxy", "serve", "--policy", str(policy), "--port", str(port)]
    argv += ["--no-watch", "--log-level", "warning"]
    # No OTLP endpoint from the caller's environment may turn tracing on in a row that must not have it.
    env = {"OTEL_TRACES_EXPORTER": TELEMETRY[key][0] if key in TELEMETRY else "none"}
    return Server(key, argv, port, workdir / f"{key}.log", env=env, cwd=str(ROOT))


def redis_server(workdir: Path) -> Server:
    """A throwaway redis-server on a free loopback port: no persistence, no config file."""
    port = free_port()
    argv = [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", LOOPBACK]
    argv += ["--save", "", "--appendonly", "no", "--dir", str(workdir), "--protected-mode", "yes"]
    return Server("redis-server", argv, port, workdir / "redis.log")


def redis_command(port: int, *args: str) -> str:
    """One command over RESP (no client library): the reply as text (an integer as digits)."""
    payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        sock.sendall(payload.encode())
        reader = sock.makefile("rb")
        head = reader.readline().decode().rstrip("\r\n")
        if head.startswith("$"):
            size = int(head[1:])
            return "" if size < 0 else reader.read(size + 2)[:size].decode()
        if head.startswith("-"):
            raise RuntimeError(f"redis: {head[1:]}")
        return head[1:]


def redis_commandstats(port: int) -> dict[str, int]:
    """Calls per command since the server started (``INFO commandstats``; commands run inside a
    Lua script count too), and ``reads``: network reads the server processed (``INFO stats``), one
    per round trip of a client that waits for each answer (a pipeline is one)."""
    out = {}
    for line in redis_command(port, "INFO", "commandstats").splitlines():
        name, _, rest = line.partition(":")
        if name.startswith("cmdstat_") and rest.startswith("calls="):
            out[name[len("cmdstat_") :]] = int(rest.split(",")[0][len("calls=") :])
    for line in redis_command(port, "INFO", "stats").splitlines():
        if line.startswith("total_reads_processed:"):
            out["reads"] = int(line.split(":")[1])
    return out


def _default_plugins() -> list[Any]:
    import yaml

    doc = yaml.safe_load((ROOT / "policies" / "default.yaml").read_text())
    return list(doc.get("plugins") or [])


def code_version() -> str:
    """Which sidecar code was measured: the commit, local changes, and a hash of the sources
    (read-only git commands; the hash covers proxy/ and plugins/ as they are on disk)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted([*ROOT.glob("proxy/**/*.py"), *ROOT.glob("plugins/**/*.py")]):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "proxy", "plugins"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
        changed = len([line for line in status.splitlines() if line.strip()])
    except (OSError, subprocess.TimeoutExpired):
        head, changed = "", 0
    local = f" + {changed} changed files in proxy/ and plugins/" if changed else ""
    return f"commit {head or 'unknown'}{local}; sources sha256 {digest.hexdigest()[:12]}"


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def build_rows(workdir: Path, upstream: Server) -> list[Row]:
    up_api = upstream.url + "/v1"
    rows = [Row("direct", "direct to fake upstream (reference)", None, upstream.url)]
    for client in ("aiohttp", "httpx", "httpx-aiohttp"):
        port = free_port()
        server = Server(
            f"pt-{client}",
            [
                sys.executable,
                str(HERE / "passthrough.py"),
                "--client",
                client,
                "--port",
                str(port),
                "--upstream",
                up_api,
            ],
            port,
            workdir / f"pt-{client}.log",
            cwd=str(ROOT),
        )
        row = Row(f"pt-{client}", f"pass-through, {client}", server, server.url)
        if client == "httpx-aiohttp" and not _has_module("httpx_aiohttp"):
            row.skipped = "httpx-aiohttp is not installed (pip install -r benchmarks/requirements.txt)"
        rows.append(row)
    redis = redis_server(workdir) if shutil.which("redis-server") else None
    redis_url = f"redis://{LOOPBACK}:{redis.port}/0" if redis else None
    prose = "2 KB prose prompt"
    policies: dict[str, tuple[str, list[Any], str | None]] = {
        "sidecar-empty": ("sidecar, empty policy (plugins: [])", [], None),
        "sidecar-default": (
            "sidecar, default policy plugins (headers + blocklist)",
            _default_plugins(),
            None,
        ),
        "sidecar-resilience": (
            "sidecar, resilience wrappers (fallback+retry+circuit_breaker+bulkhead), happy path",
            RESILIENCE_PLUGINS,
            up_api,  # the route's backup target: the same healthy fake, never needed here
        ),
        "sidecar-budget-mem": ("sidecar, budget (memory)", [_budget("memory")], None),
        "sidecar-budget-redis": ("sidecar, budget (redis on loopback)", [_budget("redis", redis_url)], None),
        "sidecar-empty-2k": (f"sidecar, empty policy, {prose}", [], None),
        "sidecar-injection": (f"sidecar, injection, {prose}", [{"type": "injection"}], None),
        "sidecar-moderation": (
            f"sidecar, moderation (input + output: the 2 KB echoed back), {prose}",
            [{"type": "moderation"}],
            None,
        ),
        "sidecar-inj-mod": (
            f"sidecar, injection + moderation, {prose}",
            [{"type": "injection"}, {"type": "moderation"}],
            None,
        ),
        "sidecar-pii": (
            f"sidecar, pii (default engine: patterns, ner off), {prose}",
            [{"type": "pii", "ner": "off"}],
            None,
        ),
        "sidecar-default-notel": (
            "sidecar, default policy plugins, telemetry off (metrics disabled, no trace exporter)",
            _default_plugins(),
            None,
        ),
        "sidecar-telemetry": (
            "sidecar, default policy plugins + tracing (ratio 1.0, in-memory exporter) + metrics",
            _default_plugins(),
            None,
        ),
    }
    for key, (label, plugins, backup) in policies.items():
        observability = TELEMETRY[key][1] if key in TELEMETRY else None
        server = _sidecar(workdir, key, _policy(workdir, key, up_api, plugins, backup, observability))
        row = Row(key, label, server, server.url, prose=key == "sidecar-empty-2k" or key in PROSE_ROWS)
        if key == "sidecar-budget-redis":
            row.aux = redis
            if redis is None:
                row.skipped = "redis-server is not installed (apt-get install redis-server)"
        rows.append(row)
    return rows
