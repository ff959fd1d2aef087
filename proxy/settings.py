"""Process settings: from CLI flags, else ``SIDECAR_*`` environment variables, else defaults.

These are the things that cannot change without a restart (ports, admin token, where the
policy lives). Everything that shapes request handling lives in the policy instead, so it
reloads at runtime.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from proxy.errors import ConfigError


def default_policy_path() -> Path:
    """The embedded default policy (built-in demo upstream, in-memory state)."""
    return Path(str(files("policies").joinpath("default.yaml")))


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def _env_seconds(name: str, default: float, maximum: float | None = None, example: str = "") -> float:
    """Seconds from ``name`` (``default`` when unset); not a number, negative, infinite or above
    ``maximum`` is a ``ConfigError`` that names the variable (the process must not start)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    hint = f", e.g. {example}" if example else ""
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number of seconds{hint}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name}={raw!r}: expected a number of seconds >= 0{hint}")
    if maximum is not None and value > maximum:
        raise ConfigError(
            f"{name}={raw!r}: expected at most {maximum} seconds{hint} (milliseconds given as seconds?)"
        )
    return value


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


#: Default of ``SIDECAR_SWITCH_INTERVAL`` (chosen with ``benchmarks/loop_stall.py``, see README
#: "Performance"): a CPU-pool thread scanning a long prompt holds the GIL until the interval ends,
#: so the event loop waits up to this long each time it needs the GIL back.
SWITCH_INTERVAL_DEFAULT = 0.001
#: Above this the setting is certainly a unit mistake (milliseconds given as seconds).
_SWITCH_INTERVAL_MAX = 0.1


@dataclass
class Settings:
    policy_path: Path = field(default_factory=default_policy_path)
    host: str = "127.0.0.1"
    port: int = 8080
    admin_host: str = "127.0.0.1"
    admin_port: int | None = None  # None: admin routes are served on the main port under /admin
    admin_token: str | None = None
    log_level: str = "info"
    log_requests: bool = True
    watch: bool = True
    watch_polling: bool = False
    # Threads of the CPU pool (``Deps.run_cpu``). One: the detectors are mostly Python, so a second
    # thread adds GIL contention, not throughput; it doubled the event loop's stalls under 64 KB
    # prompts (``benchmarks/loop_stall.py``, README "Performance").
    cpu_workers: int = 1
    drain_delay: float = 0.0  # SIGTERM: seconds of "not ready" before the listeners close
    grace_seconds: float = 25.0  # then: how long in-flight requests and streams may take
    # A client gets this long to send a request's headers (new connection) or body, else 408;
    # 0 disables the timer (``proxy.protocol``).
    body_timeout: float = 30.0
    # Open client connections beyond this are answered 503 server_busy; 0: no cap.
    max_connections: int = 1000
    # First-generation threshold of Python's cyclic garbage collector (``server.tune_gc``);
    # 0 keeps the interpreter's defaults (700, and no freezing of the startup heap).
    gc_threshold: int = 10_000
    # Seconds a thread may hold the GIL before another one that waits for it gets it
    # (``sys.setswitchinterval``, ``server.tune_switch_interval``); 0 keeps the interpreter's 5 ms.
    switch_interval: float = SWITCH_INTERVAL_DEFAULT

    @classmethod
    def from_env(cls) -> Settings:
        s = cls()
        if os.environ.get("SIDECAR_POLICY"):
            s.policy_path = Path(os.environ["SIDECAR_POLICY"])
        s.host = os.environ.get("SIDECAR_HOST", s.host)
        s.port = _env_int("SIDECAR_PORT") or s.port
        s.admin_host = os.environ.get("SIDECAR_ADMIN_HOST", s.admin_host)
        s.admin_port = _env_int("SIDECAR_ADMIN_PORT")
        s.admin_token = os.environ.get("SIDECAR_ADMIN_TOKEN") or None
        s.log_level = os.environ.get("SIDECAR_LOG_LEVEL", s.log_level).lower()
        s.log_requests = _env_bool("SIDECAR_LOG_REQUESTS", s.log_requests)
        s.watch = _env_bool("SIDECAR_WATCH", s.watch)
        s.watch_polling = _env_bool("SIDECAR_WATCH_POLLING", s.watch_polling)
        s.cpu_workers = _env_int("SIDECAR_CPU_WORKERS") or s.cpu_workers
        s.drain_delay = _env_seconds("SIDECAR_DRAIN_DELAY", s.drain_delay)
        s.grace_seconds = _env_seconds("SIDECAR_GRACE_SECONDS", s.grace_seconds)
        s.body_timeout = _env_seconds("SIDECAR_BODY_TIMEOUT", s.body_timeout)
        connections = _env_int("SIDECAR_MAX_CONNECTIONS")
        if connections is not None:
            if connections < 0:
                raise ConfigError(f"SIDECAR_MAX_CONNECTIONS={connections}: expected 0 (no cap) or more")
            s.max_connections = connections
        threshold = _env_int("SIDECAR_GC_THRESHOLD")
        if threshold is not None:
            if threshold < 0:
                raise ConfigError(f"SIDECAR_GC_THRESHOLD={threshold}: expected 0 (defaults) or more")
            s.gc_threshold = threshold
        s.switch_interval = _env_seconds(
            "SIDECAR_SWITCH_INTERVAL", s.switch_interval, _SWITCH_INTERVAL_MAX, "0.001 (0: Python's default)"
        )
        return s
