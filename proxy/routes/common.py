"""Helpers shared by the routes: body reading with a size limit, header filtering, errors."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterable

from starlette.requests import Request
from starlette.responses import Response

from proxy.errors import InvalidRequest, to_envelope
from proxy.upstream.client import HOP_BY_HOP

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Not forwarded upstream: hop-by-hop and framing, plus accept-encoding (the client library
# negotiates its own compression and hands us decoded bodies).
_NOT_FORWARDED = HOP_BY_HOP | {"accept-encoding"}


_ID_PREFIX = os.urandom(6).hex()
_ID_COUNTER = itertools.count(1)


def request_id(request: Request) -> str:
    """The client's ``x-request-id`` when well-formed, else a process prefix plus a counter.

    Unique across replicas (random prefix) and free on the hot path (no system call).
    """
    given = request.headers.get("x-request-id")
    if given and _REQUEST_ID.match(given):
        return given
    return f"{_ID_PREFIX}{next(_ID_COUNTER):010x}"


def query_string(request: Request) -> str:
    """The raw query string; ``request.url`` would build and parse a whole URL object."""
    raw: bytes = request.scope.get("query_string", b"")
    return raw.decode("latin-1")


async def read_body(request: Request, limit: int) -> bytes:
    """Read the whole body, refusing (413) as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequest("Invalid Content-Length header.", code="invalid_content_length")
        if int(declared) > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> InvalidRequest:
    return InvalidRequest(
        f"Request body too large: the limit is {limit} bytes.", status=413, code="request_too_large"
    )


def check_json_content_type(request: Request) -> None:
    ctype = request.headers.get("content-type")
    if ctype is None:
        return
    media = ctype.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise InvalidRequest(
            f"Unsupported content type {media!r}: send application/json.",
            status=415,
            code="unsupported_media_type",
        )


def forward_headers(request: Request) -> list[tuple[str, str]]:
    """Client headers for the upstream, minus hop-by-hop ones (also those named in Connection)."""
    headers = request.headers
    nominated = headers.get("connection")
    if nominated:
        drop = _NOT_FORWARDED | {t.strip().lower() for t in nominated.split(",")}
        return [(k, v) for k, v in headers.items() if k not in drop]
    return [(k, v) for k, v in headers.items() if k not in _NOT_FORWARDED]


def response_headers(
    upstream: Iterable[tuple[str, str]], extra: dict[str, str], drop: Iterable[str] = ()
) -> dict[str, str]:
    """Upstream response headers minus hop-by-hop ones, plus the sidecar's own."""
    dropped = {"date", "server", *(d.lower() for d in drop)}  # this server sets its own
    headers = {k: v for k, v in upstream if k.lower() not in HOP_BY_HOP and k.lower() not in dropped}
    headers.update(extra)
    return headers


def error_response(
    exc: BaseException,
    extra: dict[str, str] | None = None,
    transform: Callable[[int, bytes], bytes] | None = None,
) -> Response:
    """The OpenAI error envelope (``transform`` re-shapes it for other client formats)."""
    status, headers, body = to_envelope(exc)
    if transform is not None:
        body = transform(status, body)
    if extra:
        headers = {**extra, **headers}
    return Response(body, status_code=status, headers=headers, media_type="application/json")
