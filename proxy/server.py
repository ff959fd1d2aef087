"""Run the sidecar under uvicorn: the API port and, optionally, a separate admin port.

Both servers run in one event loop. uvicorn's own signal handling is replaced by ours so one
SIGINT/SIGTERM stops both (readiness turns false first, then in-flight requests drain), and
SIGHUP reloads the policy instead of killing the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import uvicorn

from proxy.app import build_admin_app, build_app, build_sidecar
from proxy.observability.logging import configure_logging
from proxy.settings import Settings

log = logging.getLogger("policy_sidecar")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # signals are handled by ``serve`` below
        yield


def _config(app: object, host: str, port: int, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=30,
        server_header=False,
    )


async def serve(settings: Settings) -> None:
    configure_logging(settings.log_level)
    sidecar = build_sidecar(settings)
    separate_admin = settings.admin_port is not None
    servers = [
        _Server(
            _config(
                build_app(sidecar, include_admin=not separate_admin), settings.host, settings.port, settings
            )
        )
    ]
    if settings.admin_port is not None:
        admin = _config(build_admin_app(sidecar), settings.admin_host, settings.admin_port, settings)
        admin.lifespan = "off"
        servers.append(_Server(admin))

    loop = asyncio.get_running_loop()

    def stop() -> None:
        sidecar.draining = True  # readiness answers 503 from now on
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    log.info(
        "policy-sidecar listening",
        extra={
            "port": settings.port,
            "admin_port": settings.admin_port,
            "policy": str(settings.policy_path),
            "revision": sidecar.store.current.revision,
        },
    )
    await asyncio.gather(*(s.serve() for s in servers))


def run(settings: Settings) -> None:
    try:
        import uvloop

        uvloop.run(serve(settings))
    except ImportError:
        asyncio.run(serve(settings))
