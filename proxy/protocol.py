"""uvicorn's HTTP protocol with the sidecar's guards: JSON framing errors, read timeout, connection cap.

uvicorn answers what it cannot parse itself (a bad Content-Length, control characters in a
header) with a plain-text ``400 Invalid HTTP request received.``, before any ASGI app runs; it
never times out a request whose headers or body trickle in (2,000 such connections stayed open
for 40 s); and it takes every connection it is offered. ``protocol_class`` returns a subclass of
uvicorn's own protocol (httptools when installed, else h11; passed as ``uvicorn.Config(http=)``)
that:

* writes those framing errors as the OpenAI error envelope (``invalid_http_request``);
* gives a client ``read_timeout`` seconds to finish sending a request: the headers of a new
  connection, and the body of any request (``SIDECAR_BODY_TIMEOUT`` / ``--body-timeout``).
  Past it the client gets ``408 request_timeout`` (or, if the app already answered, the
  connection is closed) and the app's pending read sees a disconnect. A timer exists only while
  a request is incomplete: a request whose body arrived with its headers costs nothing;
* refuses connections beyond ``max_connections`` with ``503 server_busy`` and ``Retry-After``
  (``SIDECAR_MAX_CONNECTIONS`` / ``--max-connections``), so a flood of slow clients cannot
  exhaust file descriptors or memory.

Idle keep-alive connections are still closed by uvicorn's own ``timeout_keep_alive``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from proxy.errors import InvalidRequest, ProxyError, ServerBusy

try:  # the C parser uvicorn prefers; h11 is the pure-Python fallback it also ships with
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - httptools is a dependency
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base  # type: ignore[assignment]

#: How long a connection answered with an error keeps draining its input before it is closed.
LINGER_SECONDS = 2.0
_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 503: b"Service Unavailable"}


def error_bytes(exc: ProxyError) -> bytes:
    """A whole ``Connection: close`` HTTP/1.1 response carrying ``exc``'s OpenAI envelope."""
    import orjson

    body = orjson.dumps(exc.envelope())
    head = [
        b"HTTP/1.1 %d %s\r\n" % (exc.status, _REASONS.get(exc.status, b"Error")),
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n",
    ]
    head.extend(f"{k}: {v}\r\n".encode("latin-1") for k, v in exc.headers.items())
    return b"".join(head) + b"\r\n" + body


class GuardedProtocol(_Base):
    """uvicorn's protocol plus the guards above; the limits are class attributes (see factory)."""

    read_timeout: float | None = None
    max_connections: int | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._read_timer: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None
        if self.max_connections is not None and len(self.connections) > self.max_connections:
            self.logger.warning("connection refused: %d open connections", len(self.connections) - 1)
            busy = ServerBusy(
                "The sidecar has too many open connections; retry shortly.", headers={"retry-after": "1"}
            )
            self._reply_and_close(busy)
            return
        self._watch_reading()

    def data_received(self, data: bytes) -> None:
        if self._linger is not None:
            return  # answered and half-closed: what the client still sends is read and dropped
        super().data_received(data)
        self._watch_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        linger = getattr(self, "_linger", None)
        if linger is not None:
            linger.cancel()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self._cancel_timer()
        self._reply_and_close(
            InvalidRequest(f"{msg} Check the request line, headers and framing.", code="invalid_http_request")
        )

    # -- the read timer ----------------------------------------------------------------------
    def _reading(self) -> bool:
        """True while a request is incomplete: no headers yet on a new connection, or body due."""
        cycle: Any = self.cycle
        if cycle is None:
            return True
        return bool(cycle.more_body) and not cycle.response_complete and not cycle.disconnected

    def _watch_reading(self) -> None:
        if self.read_timeout is None or self.transport.is_closing():
            return
        if self._reading():
            if self._read_timer is None:
                loop = asyncio.get_running_loop()
                self._read_timer = loop.call_later(self.read_timeout, self._timed_out, self.cycle)
        else:
            self._cancel_timer()

    def _cancel_timer(self) -> None:
        timer = getattr(self, "_read_timer", None)
        if timer is not None:
            timer.cancel()
            self._read_timer = None

    def _timed_out(self, cycle: Any) -> None:
        self._read_timer = None
        if self.transport.is_closing() or not self._reading():
            return
        if self.cycle is not cycle:  # a new request started since: time it afresh
            self._watch_reading()
            return
        self.logger.info("request read timed out after %ss; closing the connection", self.read_timeout)
        if cycle is None or not cycle.response_started:
            timeout = InvalidRequest(
                f"The request was not received within {self.read_timeout:g} seconds.",
                status=408,
                code="request_timeout",
            )
            self._reply_and_close(timeout)
        else:
            self.transport.close()

    def _reply_and_close(self, exc: ProxyError) -> None:
        """Answer, then close *lingering*: a client still sending its body must read the answer.

        Closing a socket with unread input makes the kernel send a reset, and a reset can
        destroy the answer before the client reads it (a trickling client saw
        ``ECONNRESET`` instead of its 408). So, as nginx's lingering close does: send the
        answer and a FIN, keep reading and dropping input for up to ``LINGER_SECONDS``, then
        close. An app still waiting for the body sees a disconnect at once (uvicorn then drops
        whatever it sends), so nothing is written after this answer.
        """
        self.transport.write(error_bytes(exc))
        cycle: Any = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self._linger = asyncio.get_running_loop().call_later(LINGER_SECONDS, self.transport.close)


def protocol_class(read_timeout: float | None, max_connections: int | None) -> type[GuardedProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)``; None or 0 disables a guard."""
    return type(
        "SidecarHttpProtocol",
        (GuardedProtocol,),
        {"read_timeout": read_timeout or None, "max_connections": max_connections or None},
    )
