"""The upstream client keeps no cookies: what one tenant's answer sets is never sent for another.

aiohttp's ``ClientSession`` has a cookie jar by default: a ``Set-Cookie`` from the provider
(Cloudflare's ``__cf_bm`` in front of api.openai.com, a session cookie behind a corporate
gateway) would be stored in the one pooled session per upstream and sent with every later
request from every client and tenant. A proxy must forward what its client sends, nothing more.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web

from proxy.upstream.client import HttpClient


async def _sets_a_cookie(_: web.Request) -> web.Response:
    resp = web.json_response({"ok": True})
    resp.set_cookie("session", "tenant-a-secret", path="/")
    return resp


async def _echoes_cookies(request: web.Request) -> web.Response:
    return web.json_response({"cookie": request.headers.get("Cookie")})


@pytest.fixture
async def base_url(unused_tcp_port: int) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/set", _sets_a_cookie)
    app.router.add_post("/echo", _echoes_cookies)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    # A host name, not an IP: aiohttp's default jar ignores cookies of IP hosts, so an IP would
    # hide the leak this test is about.
    yield f"http://localhost:{unused_tcp_port}"
    await runner.cleanup()


async def _post(client: HttpClient, url: str, headers: list[tuple[str, str]]) -> dict[str, object]:
    resp = await client.send("POST", url, [("content-type", "application/json"), *headers], b"{}")
    try:
        return dict(orjson.loads(b"".join([chunk async for chunk in resp.aiter_bytes()])))
    finally:
        await resp.aclose()


async def test_a_cookie_set_by_the_upstream_is_not_sent_on_later_requests(base_url: str) -> None:
    client = HttpClient(connect_timeout=5, read_timeout=30, max_connections=4)
    try:
        await _post(client, f"{base_url}/set", [])
        assert await _post(client, f"{base_url}/echo", []) == {"cookie": None}
        # What the client itself sends still goes through, and only that.
        sent = await _post(client, f"{base_url}/echo", [("cookie", "mine=1")])
        assert sent == {"cookie": "mine=1"}
    finally:
        await client.aclose()
