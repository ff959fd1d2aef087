"""The listener's own guards, on a real uvicorn server (issue 16 items 11 and 12).

Raw sockets, because the cases are exactly what HTTP clients refuse to send: a malformed
Content-Length, control characters in a header, a body or headers that trickle in, more
connections than the cap, a client that leaves halfway through its body.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import orjson
import pytest

from tests.harness import SidecarHarness, sidecar_harness


def _addr(h: SidecarHarness) -> tuple[str, int]:
    parts = urlsplit(h.base_url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def _connect(h: SidecarHarness, timeout: float = 30) -> socket.socket:
    return socket.create_connection(_addr(h), timeout=timeout)


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read until the server closes the connection; parse status, headers and body."""
    data = b""
    while True:
        part = sock.recv(65536)
        if not part:
            break
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def _openai_error(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    assert headers["content-type"] == "application/json"
    error: dict[str, Any] = orjson.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.fixture
def h(tmp_path: Path) -> Iterator[SidecarHarness]:
    with sidecar_harness(tmp_path, body_timeout=1.0) as harness:
        yield harness


# -- framing errors uvicorn answers itself --------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\nContent-Length: 2\r\n\r\n{}",
        b"GARBAGE\x00 / HTTP/1.1\r\n\r\n",
    ],
    ids=["bad-content-length", "control-char-in-header", "bad-request-line"],
)
def test_framing_errors_answer_the_openai_envelope(h: SidecarHarness, request_bytes: bytes) -> None:
    with _connect(h) as sock:
        sock.sendall(request_bytes)
        status, headers, body = _read_response(sock)
    assert status == 400
    error = _openai_error(headers, body)
    assert error["code"] == "invalid_http_request" and error["type"] == "invalid_request_error"
    assert headers["connection"] == "close"


# -- slow clients ---------------------------------------------------------------------------------


def test_a_trickling_body_gets_408_and_the_connection_closes(h: SidecarHarness) -> None:
    with _connect(h) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"model": '
        )
        status, headers, body = _read_response(sock)  # returns once the server closed
    assert status == 408
    assert _openai_error(headers, body)["code"] == "request_timeout"
    assert httpx.get(f"{h.base_url}/healthz").status_code == 200


def test_headers_that_never_finish_get_408(h: SidecarHarness) -> None:
    with _connect(h) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        status, headers, body = _read_response(sock)
    assert status == 408 and _openai_error(headers, body)["code"] == "request_timeout"


def test_normal_requests_and_streams_are_not_affected_by_the_timer(h: SidecarHarness) -> None:
    client = openai.OpenAI(base_url=h.v1, api_key="k", max_retries=0)
    for _ in range(3):
        r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content
    # A stream that lasts longer than the body timeout: the timer only covers reading the request.
    stream = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        extra_headers={"x-fake-scenario": '{"content": "a b c d e f", "chunk_size": 2, "chunk_delay": 0.4}'},
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "a b c d e f"


def test_many_trickling_clients_are_all_timed_out_and_healthz_answers(tmp_path: Path) -> None:
    """200 clients that each send one body byte at a time: every one gets its 408."""
    count = 200
    with sidecar_harness(tmp_path, body_timeout=2.0) as h:
        socks = [_connect(h, timeout=60) for _ in range(count)]
        for s in socks:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        stop = threading.Event()

        def trickle() -> None:
            while not stop.is_set():
                for s in socks:
                    with contextlib.suppress(OSError):
                        s.send(b" ")
                stop.wait(0.2)

        trickler = threading.Thread(target=trickle)
        trickler.start()
        try:
            health = [httpx.get(f"{h.base_url}/healthz", timeout=10).status_code for _ in range(5)]
            statuses = [_read_response(s)[0] for s in socks]
        finally:
            stop.set()
            trickler.join()
            for s in socks:
                s.close()
    assert health == [200] * 5
    assert statuses == [408] * count


# -- connection cap -------------------------------------------------------------------------------


def test_connections_beyond_the_cap_get_503_in_the_openai_envelope(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, max_connections=3, body_timeout=0) as h:
        idle = [_connect(h) for _ in range(3)]
        try:
            time.sleep(0.2)  # let the server accept them (ordering, not a measured threshold)
            with _connect(h) as extra:  # answered on connect, before any request is read
                status, headers, body = _read_response(extra)
            assert status == 503 and headers["retry-after"] == "1"
            assert _openai_error(headers, body)["code"] == "server_busy"
        finally:
            for s in idle:
                s.close()
        for _ in range(50):  # the server notices the closed sockets: the cap frees up
            try:
                if httpx.get(f"{h.base_url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError("the cap never freed up")


# -- item 12: a client that leaves during the body read ----------------------------------------


def test_client_disconnect_during_body_is_one_info_line(
    h: SidecarHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="policy_sidecar")
    with _connect(h) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"model"'
        )
        time.sleep(0.2)  # the app is now waiting for the rest of the body
    for _ in range(100):
        if any("disconnected" in r.getMessage() for r in caplog.records):
            break
        time.sleep(0.05)
    mine = [r for r in caplog.records if r.name.startswith("policy_sidecar")]
    assert [r.getMessage() for r in mine if "disconnected" in r.getMessage()] == [
        "client disconnected before its request body arrived"
    ]
    assert not [r for r in mine if r.levelno >= logging.ERROR], [r.getMessage() for r in mine]
    assert all(r.exc_info is None for r in mine)


# -- settings ---------------------------------------------------------------------------------------


def test_limits_come_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from proxy.__main__ import _serve_args, _settings
    from proxy.errors import ConfigError
    from proxy.settings import Settings

    monkeypatch.setenv("SIDECAR_BODY_TIMEOUT", "12.5")
    monkeypatch.setenv("SIDECAR_MAX_CONNECTIONS", "77")
    env = Settings.from_env()
    assert (env.body_timeout, env.max_connections) == (12.5, 77)

    parser = argparse.ArgumentParser()
    _serve_args(parser, with_policy=True)
    flags = _settings(parser.parse_args(["--body-timeout", "3", "--max-connections", "0"]))
    assert (flags.body_timeout, flags.max_connections) == (3.0, 0)  # flags win; 0 = off

    monkeypatch.setenv("SIDECAR_MAX_CONNECTIONS", "-1")
    with pytest.raises(ConfigError):
        Settings.from_env()
