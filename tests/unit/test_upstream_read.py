"""``read_limited``'s one-read shortcut (issue 17) returns what the chunk loop returns, and never
lets a body past the limit: it applies only to a declared length of an unencoded body."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from proxy.errors import UpstreamError
from proxy.upstream.client import ClientResponse, HttpClient
from proxy.upstream.settle import read_limited

BODY = b'{"id":"x","choices":[],"pad":"' + b"p" * 50_000 + b'"}'


async def _plain(_: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/json")


async def _gzipped(_: web.Request) -> web.Response:
    return web.Response(
        body=gzip.compress(BODY), headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )


async def _chunked(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for i in range(0, len(BODY), 7_000):
        await resp.write(BODY[i : i + 7_000])
    await resp.write_eof()
    return resp


@pytest.fixture
async def base_url(unused_tcp_port: int) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/plain", _plain)
    app.router.add_post("/gzip", _gzipped)
    app.router.add_post("/chunked", _chunked)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", unused_tcp_port)
    await site.start()
    yield f"http://127.0.0.1:{unused_tcp_port}"
    await runner.cleanup()


async def _answer(client: HttpClient, url: str) -> ClientResponse:
    return await client.send("POST", url, [("content-type", "application/json")], b"{}")


@pytest.mark.parametrize("path", ["/plain", "/gzip", "/chunked"])
async def test_the_shortcut_reads_what_the_chunk_loop_reads(base_url: str, path: str) -> None:
    client = HttpClient(connect_timeout=5, read_timeout=30, max_connections=4)
    try:
        resp = await _answer(client, base_url + path)
        assert resp.plain_length == (len(BODY) if path == "/plain" else None)  # only plain bodies
        fast = await read_limited(resp, 10 * len(BODY))
        await resp.aclose()
        resp = await _answer(client, base_url + path)
        chunks = [chunk async for chunk in resp.aiter_bytes()]  # the loop's reading
        await resp.aclose()
        assert fast == b"".join(chunks) == BODY
    finally:
        await client.aclose()


@pytest.mark.parametrize("path", ["/plain", "/gzip", "/chunked"])
async def test_a_body_over_the_limit_is_refused_whatever_its_framing(base_url: str, path: str) -> None:
    """The gzip answer declares ~100 bytes and inflates to 50 KB: the limit still holds."""
    client = HttpClient(connect_timeout=5, read_timeout=30, max_connections=4)
    try:
        resp = await _answer(client, base_url + path)
        with pytest.raises(UpstreamError) as info:
            await read_limited(resp, 20_000)
        await resp.aclose()
        assert info.value.code == "upstream_response_too_large"
    finally:
        await client.aclose()
