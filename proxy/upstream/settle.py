"""Settle an upstream answer inside the attempt that produced it.

Resilience wrappers (retry, circuit breaker, fallback) can only act on failures they see. So a
target does not return as soon as headers arrive: a non-streamed body is read whole (the
pipeline needs it whole anyway), and a stream's first body chunk is awaited. A deadline, a
first-token timeout, a connection drop or a 5xx therefore all happen *inside* the attempt,
where they can still be retried or routed around; only once the first chunk is in hand is the
stream handed on, and after that nothing is retried.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from proxy.errors import UpstreamError, UpstreamTimeout
from proxy.models.chat import Route
from proxy.models.upstream import BufferedResponse, UpstreamRequest, UpstreamResponse


class PeekedResponse:
    """A streamed response whose first chunk was already read."""

    def __init__(self, inner: UpstreamResponse, first: bytes, rest: AsyncIterator[bytes]) -> None:
        self.status = inner.status
        self.headers = inner.headers
        self._inner = inner
        self._first = first
        self._rest = rest

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        if self._first:
            yield self._first
        async for chunk in self._rest:
            yield chunk

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_bytes()])

    async def aclose(self) -> None:
        await self._inner.aclose()


def _looks_like_json(body: bytes) -> bool:
    """A structural check, not a parse: catches truncated and non-JSON bodies for a few ns.

    The full parse happens once, where a plugin needs the body; parsing here as well would
    cost the empty policy a second parse of every answer.
    """
    head = body.lstrip()[:1]
    tail = body.rstrip()[-1:]
    return (head == b"{" and tail == b"}") or (head == b"[" and tail == b"]")


def _too_large(limit: int, detail: str) -> UpstreamError:
    return UpstreamError(
        "The upstream provider's response is larger than the sidecar accepts.",
        code="upstream_response_too_large",
        detail=f"{detail}; max_response_bytes is {limit}",
    )


async def read_limited(resp: UpstreamResponse, limit: int | None) -> bytes:
    """The whole body, refusing (502 ``upstream_response_too_large``) past ``limit`` bytes.

    A declared Content-Length over the limit fails before reading anything; otherwise the body
    is read chunk by chunk and abandoned as soon as it grows past the limit, so a huge answer
    never sits in memory whole (a 50 MB body took the RSS from 62 to 147 MB).
    """
    if limit is None:
        return await resp.read()
    for name, value in resp.headers:
        if name.lower() == "content-length" and value.strip().isdigit() and int(value) > limit:
            raise _too_large(limit, f"Content-Length {value.strip()}")
    declared = getattr(resp, "plain_length", None)  # an aiohttp answer (``ClientResponse``)
    if isinstance(declared, int) and declared <= limit:
        # The body cannot outgrow its declared, unencoded length: one read instead of the chunk
        # loop and its async generator (~6 us of CPU per answer, issue 17).
        return await resp.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, f"more than {limit} bytes received")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _deadline_error() -> UpstreamTimeout:
    return UpstreamTimeout("The request deadline was exceeded.", code="deadline_exceeded")


def settled(
    request: UpstreamRequest,
    call: Callable[[], Awaitable[UpstreamResponse]],
    first_token_timeout: float | None = None,
    max_response_bytes: int | None = None,
) -> Coroutine[Any, Any, UpstreamResponse]:
    """Run one attempt within the request's deadline and settle its answer (see module doc).

    Not a coroutine function itself: it hands back the coroutine to await, so a request with
    no deadline (the hot path) runs ``_settle`` without a wrapping frame or timeout machinery.
    The deadline is read here, when the caller is about to await.
    """
    budget = remaining(request.deadline)
    if budget is None:
        return _settle(request, call, first_token_timeout, max_response_bytes)
    return _settle_within(budget, request, call, first_token_timeout, max_response_bytes)


async def _settle_within(
    budget: float,
    request: UpstreamRequest,
    call: Callable[[], Awaitable[UpstreamResponse]],
    first_token_timeout: float | None,
    max_response_bytes: int | None,
) -> UpstreamResponse:
    if budget <= 0:
        raise _deadline_error()
    try:
        async with asyncio.timeout(budget):
            return await _settle(request, call, first_token_timeout, max_response_bytes)
    except TimeoutError:
        raise _deadline_error() from None


async def _settle(
    request: UpstreamRequest,
    call: Callable[[], Awaitable[UpstreamResponse]],
    first_token_timeout: float | None,
    max_response_bytes: int | None = None,
) -> UpstreamResponse:
    resp = await call()
    if request.route is Route.PASSTHROUGH:
        return resp
    if not request.stream or resp.status >= 400:
        try:
            body = await read_limited(resp, max_response_bytes)
        finally:
            await resp.aclose()
        if resp.status < 400 and not _looks_like_json(body):
            raise UpstreamError(
                "The upstream provider sent an invalid response.",
                detail=f"status {resp.status}, {len(body)} bytes that are not JSON",
            )
        return BufferedResponse(resp.status, resp.headers, body)
    rest = resp.aiter_bytes().__aiter__()
    try:
        if first_token_timeout is None:
            first = await anext(rest, b"")
        else:
            async with asyncio.timeout(first_token_timeout):
                first = await anext(rest, b"")
    except TimeoutError:
        await resp.aclose()
        raise UpstreamTimeout(
            "The upstream provider did not start streaming in time.", code="first_token_timeout"
        ) from None
    except BaseException:
        await resp.aclose()
        raise
    return PeekedResponse(resp, first, rest)
