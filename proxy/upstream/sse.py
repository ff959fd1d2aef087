"""Incremental Server-Sent Events parser and encoder.

``SSEParser.feed(bytes)`` accepts arbitrary network chunks (an event may be split anywhere,
even inside a UTF-8 sequence or between ``\\r`` and ``\\n``) and returns only complete events;
partial input stays buffered, like httpx's ``decode()/flush()`` pair. It follows the WHATWG
rules we need: ``\\n``, ``\\r\\n`` and ``\\r`` line ends, ``:`` comments, multi-line ``data``
joined with ``\\n``, the optional single space after the colon.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SSEEvent:
    data: bytes
    event: str | None = None
    id: str | None = None


class SSEParser:
    __slots__ = ("_buf", "_data", "_event", "_id")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []
        self._event: str | None = None
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf + chunk if self._buf else chunk
        events: list[SSEEvent] = []
        start = 0
        n = len(buf)
        while start < n:
            nl = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, nl if nl != -1 else n)
            if cr != -1:
                # A lone \r ends a line too; a \r at the very end may be half of \r\n: wait.
                if cr == n - 1:
                    break
                end, nxt = cr, cr + 2 if buf[cr + 1 : cr + 2] == b"\n" else cr + 1
            elif nl != -1:
                end, nxt = nl, nl + 1
            else:
                break
            ev = self._line(buf[start:end])
            if ev is not None:
                events.append(ev)
            start = nxt
        self._buf = buf[start:]
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream: a final event without its blank line still counts."""
        events: list[SSEEvent] = []
        if self._buf:
            line = self._buf[:-1] if self._buf.endswith(b"\r") else self._buf
            ev = self._line(line)
            self._buf = b""
            if ev is not None:
                events.append(ev)
        ev = self._line(b"")
        if ev is not None:
            events.append(ev)
        return events

    def _line(self, line: bytes) -> SSEEvent | None:
        if not line:
            if not self._data and self._event is None:
                return None
            ev = SSEEvent(b"\n".join(self._data), self._event, self._id)
            self._data = []
            self._event = None
            return ev
        if line[:1] == b":":
            return None
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            self._id = value.decode("utf-8", "replace")
        return None


def encode_event(data: bytes, event: str | None = None) -> bytes:
    """One SSE event; data with newlines becomes several ``data:`` lines, as the spec requires."""
    if b"\n" in data:
        lines = b"".join(b"data: " + part + b"\n" for part in data.split(b"\n"))
    else:
        lines = b"data: " + data + b"\n"
    if event is None:
        return lines + b"\n"
    return b"event: " + event.encode() + b"\n" + lines + b"\n"
