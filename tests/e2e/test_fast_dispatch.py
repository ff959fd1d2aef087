"""The chain routes' direct dispatch (``proxy.app.SidecarApp``) and the streamed answer's ASGI
response (``proxy.routes.streaming._RelayResponse``) behave as Starlette's routing and
``StreamingResponse`` did: same answers, same fall-throughs, disconnects and cuts still end the
stream and finish the request."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from proxy.app import build_app, build_sidecar
from proxy.demo.fake_upstream import fake_upstream_in_thread
from proxy.settings import Settings
from tests.harness import policy_text, serve_in_thread, sidecar_harness

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _scenario(**fields: object) -> dict[str, str]:
    return {"x-fake-scenario": json.dumps(fields)}


def test_chain_paths_answer_and_other_methods_and_paths_still_route(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path) as h:
        ok = httpx.post(f"{h.v1}/chat/completions", json=CHAT)
        assert ok.status_code == 200
        assert ok.headers["x-sidecar-revision"] and ok.headers["x-request-id"]
        assert ok.json()["choices"][0]["message"]["content"]
        # Not the fast path: a GET, or a trailing slash, is the pass-through route's (the fake
        # upstream echoes what it was sent), as Starlette's routing had it.
        got = httpx.get(f"{h.v1}/chat/completions")
        assert got.status_code == 200 and got.json()["method"] == "GET"
        slash = httpx.post(f"{h.v1}/chat/completions/", json=CHAT)
        assert slash.json()["path"] == "/v1/chat/completions/"
        missing = httpx.post(f"{h.base_url}/v2/chat/completions", json=CHAT)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        bad = httpx.post(
            f"{h.v1}/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "invalid_json"


def test_user_middleware_still_sees_chain_requests(tmp_path: Path) -> None:
    """An app someone added middleware to goes through Starlette whole: the middleware runs."""
    seen: list[str] = []

    async def note(request: Request, call_next: Any) -> Response:
        seen.append(request.url.path)
        response: Response = await call_next(request)
        return response

    with fake_upstream_in_thread() as (upstream_url, _fake):
        policy = tmp_path / "policy.yaml"
        policy.write_text(policy_text(upstream_url))
        app = build_app(build_sidecar(Settings(policy_path=policy, log_requests=False)))
        app.add_middleware(BaseHTTPMiddleware, dispatch=note)
        with serve_in_thread(app) as base:
            assert httpx.post(f"{base}/v1/chat/completions", json=CHAT).status_code == 200
    assert seen == ["/v1/chat/completions"]


def test_piped_stream_is_relayed_whole(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path) as h:
        body = {**CHAT, "stream": True}
        headers = _scenario(content="abcdefgh" * 20, chunk_size=8)
        with httpx.stream("POST", f"{h.v1}/chat/completions", json=body, headers=headers) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            raw = b"".join(r.iter_bytes())
        deltas = [
            json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            for line in raw.decode().splitlines()
            if line.startswith("data: {")
        ]
        assert "".join(deltas) == "abcdefgh" * 20
        assert raw.rstrip().endswith(b"data: [DONE]")
        h.wait_idle()
        assert h.sidecar.store.current.in_flight == 0


def test_piped_stream_disconnect_cancels_the_upstream_read(tmp_path: Path) -> None:
    """The empty policy pipes bytes; a client that leaves still ends the request at once."""
    with sidecar_harness(tmp_path) as h:
        body = {**CHAT, "stream": True}
        headers = _scenario(content="y" * 400, chunk_size=2, chunk_delay=0.05)  # ~10 s in total
        with httpx.stream("POST", f"{h.v1}/chat/completions", json=body, headers=headers) as r:
            assert r.status_code == 200
            next(r.iter_bytes())
        h.wait_idle()
        assert h.sidecar.store.current.in_flight == 0
        assert not h.sidecar.live_streams


def test_piped_stream_cut_ends_with_an_error_event(tmp_path: Path) -> None:
    """``cut_streams`` (the shutdown grace deadline) ends a piped stream with the in-band error."""
    with sidecar_harness(tmp_path) as h:
        body = {**CHAT, "stream": True}
        headers = _scenario(content="z" * 200, chunk_size=2, chunk_delay=0.05)
        with httpx.stream("POST", f"{h.v1}/chat/completions", json=body, headers=headers) as r:
            it = r.iter_bytes()
            next(it)
            deadline = time.monotonic() + 5
            while not h.sidecar.live_streams and time.monotonic() < deadline:
                time.sleep(0.01)
            assert h.sidecar.cut_streams() == 1
            rest = b"".join(it)
        assert b"server_shutting_down" in rest


class _Closed(OSError):
    pass


@pytest.mark.parametrize("spec", ["2.3", "2.4"])
def test_relay_response_finalises_when_the_client_is_gone(tmp_path: Path, spec: str) -> None:
    """ASGI 2.3 servers report a disconnect through ``receive``; 2.4 servers raise on ``send``
    (Starlette's ``ClientDisconnect``). Either way the request is finished and unpinned."""

    async def scenario() -> None:
        with fake_upstream_in_thread() as (upstream_url, _fake):
            policy = tmp_path / "policy.yaml"
            policy.write_text(policy_text(upstream_url))
            sidecar = build_sidecar(Settings(policy_path=policy, log_requests=False))
            app = build_app(sidecar)
            body = json.dumps({**CHAT, "stream": True}).encode()
            headers = [(b"content-type", b"application/json")]
            headers += [
                (
                    b"x-fake-scenario",
                    json.dumps({"content": "q" * 400, "chunk_size": 2, "chunk_delay": 0.05}).encode(),
                )
            ]
            scope = {
                "type": "http",
                "asgi": {"version": "3.0", "spec_version": spec},
                "http_version": "1.1",
                "method": "POST",
                "path": "/v1/chat/completions",
                "raw_path": b"/v1/chat/completions",
                "root_path": "",
                "query_string": b"",
                "headers": headers,
            }
            gone = asyncio.Event()
            sent: list[MutableMapping[str, Any]] = []
            delivered = False

            async def receive() -> dict[str, Any]:
                nonlocal delivered
                if not delivered:
                    delivered = True
                    return {"type": "http.request", "body": body, "more_body": False}
                await gone.wait()
                return {"type": "http.disconnect"}

            async def send(message: MutableMapping[str, Any]) -> None:
                if gone.is_set() and spec == "2.4":
                    raise _Closed("closed")
                sent.append(message)
                if message["type"] == "http.response.body" and len(sent) == 3:
                    gone.set()

            if spec == "2.4":
                with pytest.raises(ClientDisconnect):
                    await app(scope, receive, send)
            else:
                await app(scope, receive, send)
            # Stopped early: the whole stream (200 deltas, ~10 s) never reached its end.
            relayed = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
            assert b"[DONE]" not in relayed and relayed.count(b"data: ") < 100, len(relayed)
            assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
            assert sidecar.store.current.in_flight == 0
            assert not sidecar.live_streams

    asyncio.run(scenario())
