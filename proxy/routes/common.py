"""Helpers shared by the routes: body reading with a size limit, header filtering, errors."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterable

from starlette.requests import ClientDisconnect, Request
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
    return choose_request_id(request.headers.get("x-request-id"))


def choose_request_id(given: str | None) -> str:
    """``request_id`` for a header value already in hand (``Inbound.request_id``)."""
    if given and _REQUEST_ID.match(given):
        return given
    return f"{_ID_PREFIX}{next(_ID_COUNTER):010x}"


class Inbound:
    """The request headers the chain routes need, found in one pass over the raw ASGI list.

    Starlette's ``Headers.get`` scans the whole list per lookup and raises and catches a
    ``KeyError`` for every absent name; the chain routes asked five times per request (id,
    length, content type, connection, then every header again to forward them). One pass that
    decodes each header once, keeps the first value of the names we read (as ``Headers.get``
    does) and builds the forwarded list costs a third as much.
    """

    __slots__ = ("content_length", "content_type", "forward", "request_id")

    def __init__(self, request: Request) -> None:
        forward: list[tuple[str, str]] = []
        length = ctype = given = nominated = None
        for raw_name, raw_value in request.scope["headers"]:
            name = raw_name.decode("latin-1")
            value = raw_value.decode("latin-1")
            if name in _NOT_FORWARDED:
                if name == "content-length":
                    length = value if length is None else length
                elif name == "connection":
                    nominated = value if nominated is None else nominated
                continue
            if name == "content-type":
                ctype = value if ctype is None else ctype
            elif name == "x-request-id":
                given = value if given is None else given
            forward.append((name, value))
        if nominated:  # also drop the headers the Connection header names
            drop = {t.strip().lower() for t in nominated.split(",")}
            forward = [(k, v) for k, v in forward if k not in drop]
        self.content_length: str | None = length
        self.content_type: str | None = ctype
        self.request_id: str | None = given
        #: what ``forward_headers`` returns: client headers for the upstream
        self.forward = forward


def query_string(request: Request) -> str:
    """The raw query string; ``request.url`` would build and parse a whole URL object."""
    raw: bytes = request.scope.get("query_string", b"")
    return raw.decode("latin-1")


_HEADER = object()  # read_body's ``declared`` default: look the header up


async def read_body(request: Request, limit: int, declared: str | object | None = _HEADER) -> bytes:
    """Read the whole body, refusing (413) as soon as it exceeds ``limit`` bytes.

    ``declared``: the Content-Length value when the caller already has it (``Inbound``).
    Reads the ASGI messages directly rather than through ``request.stream()``: the body nearly
    always arrives in one message, and the async generator around it cost more than the read.
    The body is kept on the request, so ``request.body()`` still works afterwards.
    """
    if declared is _HEADER:
        declared = request.headers.get("content-length")
    if isinstance(declared, str):
        if not declared.isdigit():
            raise InvalidRequest("Invalid Content-Length header.", code="invalid_content_length")
        if int(declared) > limit:
            raise _too_large(limit)
    if hasattr(request, "_body"):  # already read by someone else
        body: bytes = request._body
        if len(body) > limit:
            raise _too_large(limit)
        return body
    if request._stream_consumed:
        raise RuntimeError("Stream consumed")
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    request._stream_consumed = True
    request._body = body
    return body


def _too_large(limit: int) -> InvalidRequest:
    return InvalidRequest(
        f"Request body too large: the limit is {limit} bytes.", status=413, code="request_too_large"
    )


def check_json_content_type(request: Request) -> None:
    check_json_media_type(request.headers.get("content-type"))


def check_json_media_type(ctype: str | None) -> None:
    """415 unless ``ctype`` (a Content-Type value, or None when absent) is JSON."""
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


_RESPONSE_DROP = HOP_BY_HOP | {"date", "server"}  # this server sets its own date and server


def response_headers(
    upstream: Iterable[tuple[str, str]], extra: dict[str, str], drop: Iterable[str] = ()
) -> dict[str, str]:
    """Upstream response headers minus hop-by-hop ones, plus the sidecar's own."""
    dropped = _RESPONSE_DROP.union(d.lower() for d in drop) if drop else _RESPONSE_DROP
    headers = {k: v for k, v in upstream if k.lower() not in dropped}
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
