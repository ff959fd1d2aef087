"""Run the sidecar under uvicorn: the API port and, optionally, a separate admin port.

Both servers run in one event loop. uvicorn's own signal handling is replaced by ours so one
SIGINT/SIGTERM stops both, and SIGHUP reloads the policy instead of killing the process.

Shutdown (what Kubernetes needs from a pod that receives SIGTERM):

1. readiness turns false at once (``sidecar.draining``: ``/readyz`` answers 503), while the
   listeners keep accepting: endpoints controllers and load balancers need a moment to notice;
2. after ``SIDECAR_DRAIN_DELAY`` seconds (default 0) both servers stop accepting connections
   (``should_exit``: uvicorn closes the listening sockets, closes idle keep-alive connections and
   marks busy ones ``Connection: close``);
3. in-flight requests and streams run to completion for up to ``SIDECAR_GRACE_SECONDS``
   (default 25; uvicorn's ``timeout_graceful_shutdown``), then whatever is left is cancelled;
4. the lifespan shutdown closes upstream pools and the policy watcher; the process exits 0.

A second SIGINT during the drain skips the wait (as uvicorn does); repeated SIGTERMs are ignored.

Startup binds both listening sockets *before* anything else (policy compile, uvicorn startup) and
hands them to uvicorn: a port already in use is one clear :class:`BindError` naming the port and
the flag that changes it, raised before "listening" is logged, instead of uvicorn's errno line
after it (and, for the admin port, a traceback from the other server's lifespan).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any

import uvicorn

from proxy.app import build_admin_app, build_app, build_sidecar
from proxy.chain.registry import default_registry
from proxy.observability.logging import configure_logging
from proxy.protocol import protocol_class
from proxy.runtime import Sidecar
from proxy.settings import Settings

log = logging.getLogger("policy_sidecar")


class BindError(Exception):
    """A listening socket could not be bound: the message is one line meant for the operator."""


def bind(host: str, port: int, flag: str, what: str) -> socket.socket:
    """Bind and listen on ``host:port`` as uvicorn would (``Config.bind_socket``), or raise
    :class:`BindError` saying which port, why, and which flag picks another one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # uvicorn's default backlog
    except OSError as exc:
        sock.close()
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        hint = f"choose another port with {flag} N"
        if exc.errno == errno.EADDRINUSE:
            hint = f"another process (another policy-sidecar?) listens there; {hint}"
        elif exc.errno == errno.EACCES:
            hint = f"ports below 1024 need privileges; {hint}"
        raise BindError(f"cannot listen on {host}:{port} ({what}): {reason}; {hint}") from None
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # signals are handled by ``serve`` below
        yield


def protocol_options(settings: Settings) -> dict[str, Any]:
    """The ``uvicorn.Config`` options every sidecar listener uses (tests reuse them)."""
    return {"http": protocol_class(settings.body_timeout, settings.max_connections)}


def _config(app: object, host: str, port: int, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        # uvicorn takes an int; round up so a fractional grace period is never shortened.
        timeout_graceful_shutdown=math.ceil(settings.grace_seconds),
        server_header=False,
        **protocol_options(settings),
    )


class _Shutdown:
    """The SIGTERM/SIGINT state machine: draining -> (delay) -> stop accepting -> done."""

    def __init__(self, sidecar: Sidecar, servers: list[_Server], drain_delay: float) -> None:
        self.sidecar = sidecar
        self.servers = servers
        self.drain_delay = drain_delay
        self.requested = asyncio.Event()
        self.forced = asyncio.Event()

    def on_signal(self, sig: signal.Signals) -> None:
        if self.requested.is_set():
            if sig == signal.SIGINT:  # a second Ctrl-C: stop waiting for anything
                log.warning("second SIGINT: forcing exit")
                for server in self.servers:
                    server.should_exit = True
                    server.force_exit = True
                self.forced.set()
            return
        log.info(
            "shutdown requested: not ready, draining",
            extra={"signal": sig.name, "drain_delay": self.drain_delay},
        )
        self.sidecar.draining = True  # readiness answers 503 from now on
        self.requested.set()

    def stop_servers(self) -> None:
        for server in self.servers:
            server.should_exit = True

    async def run(self) -> None:
        await self.requested.wait()
        if self.drain_delay > 0:
            # Keep accepting while endpoints/load balancers notice readiness went false; a
            # second SIGINT ends the wait (a server that fails on its own is handled in serve()).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.forced.wait(), timeout=self.drain_delay)
        log.info("no longer accepting connections; waiting for in-flight requests")
        self.stop_servers()
        # Shortly before uvicorn cancels what is left, end the remaining streams with an
        # in-band error event so clients see why they stopped (not a truncated body).
        grace = self.sidecar.settings.grace_seconds
        await asyncio.sleep(max(0.0, grace - min(1.0, grace / 4)))
        cut = self.sidecar.cut_streams()
        if cut:
            log.warning("grace period ending: cut %d stream(s) with an error event", cut)


def tune_gc(threshold: int) -> None:
    """Make Python's cyclic garbage collector cheap for a long-running proxy (measured, see below).

    The sidecar makes no cyclic garbage per request (checked with ``gc.DEBUG_SAVEALL`` under
    load), yet with the default first-generation threshold (700 net allocations) the collector
    ran every ~10 requests at 16 connections, each pass walking every in-flight request's
    objects, and promoted them until a full collection walked the whole ~75k-object startup
    heap: 40-60 us of CPU per request on the benchmark's empty policy, a third of the sidecar's
    own overhead over the pass-through then. Two standard remedies:

    * ``gc.freeze()`` moves what exists now (modules, classes, the plugin registry and its
      pydantic models, all immortal in practice) to the permanent generation, so full
      collections skip it. Called *before* the policy is compiled: a revision retired by a
      reload must stay collectable, reference cycles included.
    * a first-generation threshold of ``threshold`` (default 10,000) instead of 700: collections
      become ~7x rarer and each costs about the same (it walks the live set, not garbage).
      Cyclic garbage, where a plugin makes some, waits for at most that many allocations.

    ``threshold`` 0 (``SIDECAR_GC_THRESHOLD=0``) leaves the interpreter's defaults alone.
    """
    if threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(threshold, gen1, gen2)


def tune_switch_interval(seconds: float) -> None:
    """Let the event loop get the GIL back sooner from a CPU-pool thread (issue #17, measured).

    Long texts are scanned in the CPU pool, but the detectors are mostly Python: the pool thread
    holds the GIL, and the loop (a ``/health`` probe, other requests' I/O) waits for the switch
    interval to expire each time it wants it back, several times per loop turn. ``seconds`` 0
    (``SIDECAR_SWITCH_INTERVAL=0``) keeps the interpreter's 5 ms.
    """
    if seconds > 0:
        sys.setswitchinterval(seconds)


async def serve(settings: Settings) -> None:
    configure_logging(settings.log_level)
    # Bind first: a busy port must fail before the policy is compiled or "listening" is logged.
    sockets = [bind(settings.host, settings.port, "--port", "API port")]
    try:
        if settings.admin_port is not None:
            sockets.append(bind(settings.admin_host, settings.admin_port, "--admin-port", "admin port"))
        await _serve(settings, sockets)
    finally:
        for sock in sockets:  # uvicorn closes them on a normal shutdown; this covers a failed start
            sock.close()


async def _serve(settings: Settings, sockets: list[socket.socket]) -> None:
    drain_delay, grace_seconds = settings.drain_delay, settings.grace_seconds
    registry = default_registry()  # imports every plugin module: part of the frozen heap
    tune_gc(settings.gc_threshold)
    tune_switch_interval(settings.switch_interval)
    sidecar = build_sidecar(settings, registry)
    separate_admin = settings.admin_port is not None
    api_app = build_app(sidecar, include_admin=not separate_admin)
    servers = [_Server(_config(api_app, settings.host, settings.port, settings))]
    if settings.admin_port is not None:
        admin = _config(build_admin_app(sidecar), settings.admin_host, settings.admin_port, settings)
        admin.lifespan = "off"
        servers.append(_Server(admin))

    shutdown = _Shutdown(sidecar, servers, drain_delay)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, shutdown.on_signal, sig)
    log.info(
        "policy-sidecar listening",
        extra={
            "host": settings.host,
            "port": sockets[0].getsockname()[1],
            "admin_port": sockets[1].getsockname()[1] if len(sockets) > 1 else None,
            "policy": str(settings.policy_path),
            "revision": sidecar.store.current.revision,
            "drain_delay": drain_delay,
            "grace_seconds": grace_seconds,
        },
    )
    drainer = asyncio.create_task(shutdown.run())
    try:
        pairs = zip(servers, sockets, strict=True)
        tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in pairs]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        # One server ended (normally: a signal; otherwise it failed): stop the others too.
        shutdown.stop_servers()
        await asyncio.gather(*tasks)
    finally:
        drainer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drainer
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run(settings: Settings) -> None:
    try:
        import uvloop

        uvloop.run(serve(settings))
    except ImportError:
        asyncio.run(serve(settings))
