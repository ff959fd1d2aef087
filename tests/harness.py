"""Test harness: real uvicorn servers on loopback, in background threads.

``SidecarHarness`` runs the real sidecar app (lifespan, policy watcher, aiohttp upstream pool)
against a real fake-upstream server, so end-to-end tests exercise sockets, SSE framing and the
official SDKs exactly as users do.
"""

from __future__ import annotations

import contextlib
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from proxy.app import build_app, build_sidecar
from proxy.chain.registry import Registry
from proxy.demo.fake_scenario import FakeState
from proxy.demo.fake_upstream import fake_upstream_in_thread
from proxy.runtime import Sidecar
from proxy.server import protocol_options
from proxy.settings import Settings


@contextlib.contextmanager
def serve_in_thread(app: Any, lifespan: str = "on", **options: Any) -> Iterator[str]:
    """Serve an ASGI app on a free loopback port; yields ``http://127.0.0.1:PORT``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan=lifespan, log_config=None, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server failed to start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def policy_text(upstream_url: str, plugins: str = "", extra: str = "") -> str:
    """A policy pointing at ``upstream_url`` with the given (YAML, unindented) plugin list."""
    body = textwrap.dedent(plugins).strip()
    plugin_block = "plugins:\n" + textwrap.indent(body, "  ") if body else "plugins: []"
    return (
        f"version: 1\nupstreams:\n  default:\n    base_url: {upstream_url}\n    read_timeout: 5\n"
        f"{textwrap.dedent(extra).strip()}\n{plugin_block}\n"
    )


@dataclass
class SidecarHarness:
    base_url: str  # sidecar root, e.g. http://127.0.0.1:PORT
    upstream_url: str  # fake upstream /v1 root
    fake: FakeState
    sidecar: Sidecar
    policy_path: Path

    @property
    def v1(self) -> str:
        return f"{self.base_url}/v1"

    def write_policy(self, text: str) -> None:
        tmp = self.policy_path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.policy_path)

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until no request is in flight on the current revision (or ``timeout`` passes):
        a request that ended by a disconnect is finished by the server a moment later."""
        deadline = time.monotonic() + timeout
        while self.sidecar.store.current.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)

    def wait_for_revision(self, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info: dict[str, Any] = httpx.get(f"{self.base_url}/admin/policy").json()
            if predicate(info):
                return info
            time.sleep(0.05)
        raise AssertionError(f"policy did not change in {timeout}s: {info}")


@contextlib.contextmanager
def sidecar_harness(
    tmp_path: Path,
    plugins: str = "",
    extra: str = "",
    registry: Registry | None = None,
    policy: str | None = None,
    **settings: Any,
) -> Iterator[SidecarHarness]:
    """``policy``: a whole policy instead of ``plugins``/``extra``; ``{upstream}`` is replaced."""
    with fake_upstream_in_thread() as (upstream_url, fake):
        policy_path = tmp_path / "policy.yaml"
        text = (
            policy.replace("{upstream}", upstream_url)
            if policy
            else policy_text(upstream_url, plugins, extra)
        )
        policy_path.write_text(text)
        cfg = Settings(policy_path=policy_path, **{"log_requests": False, **settings})
        sidecar = build_sidecar(cfg, registry)
        # The listener options the real server uses (JSON framing errors, read timeout, cap).
        with serve_in_thread(build_app(sidecar), **protocol_options(cfg)) as base_url:
            yield SidecarHarness(base_url, upstream_url, fake, sidecar, policy_path)


def free_port() -> int:
    """A loopback port that was free a moment ago (for servers started as separate processes)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def wait_ready(url: str, proc: Any, timeout: float = 30.0) -> None:
    """Wait until ``url``/readyz answers 200; fail with the process's stderr if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"server exited: {err!r}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server not ready in {timeout} s")
