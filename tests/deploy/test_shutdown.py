"""SIGTERM drain of a real ``python -m proxy serve`` process, as Kubernetes does it.

Readiness turns false first, the listener keeps accepting for ``SIDECAR_DRAIN_DELAY``, then
new connections are refused while an in-flight stream still completes, and the process exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

POLICY = "version: 1\nupstreams:\n  default:\n    base_url: builtin:demo\nplugins: []\n"
CONTENT = "".join(chr(ord("a") + i % 26) for i in range(200))  # 200 chars, no spaces to trim


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True


Proc = tuple[subprocess.Popen[str], int]


@pytest.fixture
def sidecar_proc(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Proc]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    port = _free_port()
    env = {
        **os.environ,
        "SIDECAR_POLICY": str(policy),
        "SIDECAR_HOST": "127.0.0.1",
        "SIDECAR_PORT": str(port),
        "SIDECAR_LOG_REQUESTS": "0",
        "SIDECAR_WATCH": "0",
        "TIKTOKEN_CACHE_DIR": "",
        **getattr(request, "param", {}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, f"sidecar exited early: {proc.communicate()[0]}"
            assert time.monotonic() < deadline, "sidecar did not become ready"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def _stream(port: int, scenario: dict[str, object], out: dict[str, object], started: threading.Event) -> None:
    body = {"model": "demo-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    text: list[str] = []
    events: list[str] = []
    try:
        with (
            httpx.Client(timeout=30) as client,
            client.stream(
                "POST",
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json=body,
                headers={"x-fake-scenario": json.dumps(scenario)},
            ) as r,
        ):
            out["status"] = r.status_code
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[len("data: ") :]
                events.append(data)
                if data != "[DONE]":
                    for choice in json.loads(data).get("choices", []):
                        text.append(choice.get("delta", {}).get("content") or "")
                if len(events) == 5:
                    started.set()
    except Exception as exc:
        out["error"] = exc
    finally:
        out["text"] = "".join(text)
        out["events"] = events
        out["ended_at"] = time.monotonic()
        started.set()


@pytest.mark.parametrize(
    "sidecar_proc", [{"SIDECAR_DRAIN_DELAY": "1", "SIDECAR_GRACE_SECONDS": "25"}], indirect=True
)
def test_sigterm_drains_in_flight_stream_and_exits_zero(
    sidecar_proc: Proc,
) -> None:
    proc, port = sidecar_proc
    out: dict[str, object] = {}
    started = threading.Event()
    scenario = {"content": CONTENT, "chunk_size": 2, "chunk_delay": 0.02}  # ~2 s of stream
    reader = threading.Thread(target=_stream, args=(port, scenario, out, started))
    reader.start()
    assert started.wait(10), "the stream did not start"
    assert "ended_at" not in out, "the stream ended before SIGTERM; it is too fast to test a drain"

    proc.send_signal(signal.SIGTERM)
    sigterm_at = time.monotonic()

    # During the drain delay the listener still accepts, and readiness says 503 "draining".
    # (Polling stops at the first refused connection: on a loaded machine the delay may be over.)
    ready_statuses: list[int] = []
    live_statuses: list[int] = []
    while time.monotonic() - sigterm_at < 0.7:
        try:
            ready_statuses.append(httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code)
            live_statuses.append(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code)
        except httpx.TransportError:
            break
        time.sleep(0.05)
    assert 503 in ready_statuses and 200 not in ready_statuses[1:], ready_statuses
    assert live_statuses and set(live_statuses) == {200}, live_statuses  # liveness never drains

    # After the delay: new connections are refused while the old stream is still running.
    refused_at = None
    while time.monotonic() - sigterm_at < 5:
        if _refused(port):
            refused_at = time.monotonic()
            break
        time.sleep(0.05)
    assert refused_at is not None, "the listener still accepted connections 5 s after SIGTERM"
    assert refused_at - sigterm_at >= 0.9, "connections were refused before the drain delay elapsed"
    assert proc.poll() is None, "the process exited instead of draining"

    reader.join(timeout=20)
    assert "error" not in out, out.get("error")
    assert out["status"] == 200
    assert isinstance(out["ended_at"], float) and out["ended_at"] > refused_at, "stream ended before refusal"
    assert out["text"] == CONTENT
    events = out["events"]
    assert isinstance(events, list) and events[-1] == "[DONE]"

    assert proc.wait(timeout=10) == 0


@pytest.mark.parametrize(
    "sidecar_proc", [{"SIDECAR_DRAIN_DELAY": "0", "SIDECAR_GRACE_SECONDS": "1"}], indirect=True
)
def test_grace_period_bounds_the_drain(sidecar_proc: Proc) -> None:
    proc, port = sidecar_proc
    out: dict[str, object] = {}
    started = threading.Event()
    scenario = {"content": CONTENT, "chunk_size": 1, "chunk_delay": 0.1}  # ~20 s: longer than grace
    reader = threading.Thread(target=_stream, args=(port, scenario, out, started))
    reader.start()
    assert started.wait(10)
    proc.send_signal(signal.SIGTERM)
    sigterm_at = time.monotonic()
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - sigterm_at < 5, "the grace period did not cut the drain short"
    reader.join(timeout=10)
    assert out.get("text") != CONTENT  # the stream was cut, not completed


@pytest.mark.parametrize("sidecar_proc", [{"SIDECAR_DRAIN_DELAY": "0"}], indirect=True)
def test_idle_sidecar_exits_promptly_without_drain_delay(
    sidecar_proc: Proc,
) -> None:
    proc, _ = sidecar_proc
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - t0 < 3


def test_invalid_drain_setting_is_a_startup_error(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    env = {**os.environ, "SIDECAR_POLICY": str(policy), "SIDECAR_PORT": str(_free_port())}
    env["SIDECAR_DRAIN_DELAY"] = "soon"
    r = subprocess.run(
        [sys.executable, "-m", "proxy", "serve"], env=env, capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 1
    assert "SIDECAR_DRAIN_DELAY" in r.stderr
