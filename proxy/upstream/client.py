"""The upstream HTTP client: the only module that knows which HTTP library we use.

Chosen by measurement (see ``benchmarks/`` and the README): as a proxy's upstream client,
aiohttp costs a fraction of the CPU per request of httpx's default transport
(encode/httpx#3215), so every upstream call goes through aiohttp with a pooled, keep-alive
connector per upstream. Foreign exceptions are mapped to the sidecar's error tree here, at a
single boundary, so nothing above this module catches aiohttp errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import aiohttp
import yarl

from proxy.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable

# Headers that describe one hop, never forwarded (RFC 9110 section 7.6.1), plus framing
# headers the client library recomputes.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


# aiohttp decompresses bodies, so the encoding and length headers no longer apply.
_NOT_RETURNED = HOP_BY_HOP | {"content-encoding"}


def _map_error(exc: BaseException) -> UpstreamError:
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamTimeout("The upstream provider timed out.", detail=repr(exc))
    if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ClientOSError)):
        return UpstreamUnavailable("The upstream provider is unavailable.", detail=repr(exc))
    return UpstreamError("The upstream provider sent an invalid or incomplete response.", detail=repr(exc))


class ClientResponse:
    """Adapts an aiohttp response to the ``UpstreamResponse`` protocol."""

    __slots__ = ("_resp", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers = [(k, v) for k, v in resp.headers.items() if k.lower() not in _NOT_RETURNED]

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _map_error(exc) from exc

    @property
    def plain_length(self) -> int | None:
        """The declared Content-Length of a body that arrives as sent, else None.

        "As sent": no Content-Encoding for aiohttp to undo and no Transfer-Encoding, so what
        ``read`` returns can be no longer than this (a gzip body of a few KB may inflate to
        gigabytes: then None, and the caller reads chunk by chunk against its limit).
        """
        headers = self._resp.headers
        if headers.get("Content-Encoding", "identity").strip().lower() != "identity":
            return None
        if "Transfer-Encoding" in headers:
            return None
        return self._resp.content_length

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _map_error(exc) from exc

    async def aclose(self) -> None:
        self._resp.release()
        if not self._resp.closed:
            self._resp.close()


class HttpClient:
    """A pooled client for one upstream; shared across policy revisions while its config holds."""

    def __init__(self, *, connect_timeout: float, read_timeout: float, max_connections: int) -> None:
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._max = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # One connector per upstream, so no per-host limit; no skip_auto_headers either: it
            # makes aiohttp copy every header of every request (measured: 8.6 vs 1.6 us).
            connector = aiohttp.TCPConnector(limit=self._max, keepalive_timeout=30)
            # DummyCookieJar: the default jar would store a provider's Set-Cookie in this one
            # pooled session and send it with every later request, from every client and tenant.
            # A proxy forwards what its client sends (the Cookie header rules are the routes').
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                auto_decompress=True,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def send(
        self,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        body: bytes | AsyncIterator[bytes] | None,
        *,
        encoded: bool = False,
    ) -> ClientResponse:
        """``encoded``: send ``url`` byte for byte (no re-quoting), as a signed URL must go."""
        session = self._get_session()
        target: str | yarl.URL = yarl.URL(url, encoded=True) if encoded else url
        try:
            resp = await session.request(
                method, target, headers=list(headers), data=body, allow_redirects=False
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _map_error(exc) from exc
        return ClientResponse(resp)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
