"""Incremental Server-Sent Events parser and encoder.

``SSEParser.feed(bytes)`` accepts arbitrary network chunks (an event may be split anywhere,
even inside a UTF-8 sequence or between ``\\r`` and ``\\n``) and returns only complete events;
partial input stays buffered, like httpx's ``decode()/flush()`` pair. It follows the WHATWG
rules we need: ``\\n``, ``\\r\\n`` and ``\\r`` line ends, ``:`` comments, multi-line ``data``
joined with ``\\n``, the optional single space after the colon.

Linear time, bounded memory. An unfinished line is kept as a list of chunks and joined once,
when its end arrives: re-joining and re-scanning the whole pending line on every chunk made one
10 MB line cost 14 s of event-loop time. Each byte is scanned at most twice (once when it
arrives, once after the join), and the next ``\\n`` is remembered across ``\\r``-ended lines.
A line or an event larger than ``max_event_bytes`` raises ``EventTooLarge`` (an
``UpstreamError``), which the routes turn into the in-band stream error.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.errors import UpstreamError

#: Default cap on one SSE line / event (``UpstreamConfig.max_event_bytes``).
DEFAULT_MAX_EVENT_BYTES = 4 * 1024 * 1024


class EventTooLarge(UpstreamError):
    """One upstream SSE line or event exceeded the configured size."""

    default_code = "upstream_event_too_large"


class MalformedEvent(UpstreamError):
    """A parsed stream carried an event that is not the JSON object its format requires.

    Raised by the stream codecs (used only when the sidecar parses a stream: stream filters,
    Anthropic translation); the client then gets the typed in-band error instead of garbage
    its SDK would fail to decode.
    """

    default_code = "upstream_malformed_event"


def malformed(data: bytes) -> MalformedEvent:
    return MalformedEvent(
        "The upstream provider sent a malformed stream event.",
        detail=f"{len(data)} bytes of event data that are not a JSON object: {data[:80]!r}",
    )


@dataclass(frozen=True, slots=True)
class SSEEvent:
    data: bytes
    event: str | None = None
    id: str | None = None


class SSEParser:
    __slots__ = ("_data", "_data_size", "_event", "_id", "_max", "_pending", "_pending_size")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        # Chunks of the unfinished line: none of them holds a line end, except that the last
        # may end with a ``\r`` that could be half of ``\r\n``.
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._data: list[bytes] = []
        self._data_size = 0
        self._event: str | None = None
        self._id: str | None = None
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._pending:
            if b"\n" not in chunk and b"\r" not in chunk and not self._pending[-1].endswith(b"\r"):
                # Still inside the same line: keep the piece, scan nothing twice.
                self._pending.append(chunk)
                self._pending_size += len(chunk)
                self._check(self._pending_size)
                return []
            buf = b"".join(self._pending) + chunk
            self._pending = []
            self._pending_size = 0
        else:
            buf = chunk
        events: list[SSEEvent] = []
        start = 0
        n = len(buf)
        nl = -2  # position of the next "\n" at or after ``start``; -2: not looked up yet
        while start < n:
            if nl != -1 and nl < start:
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
        if start < n:
            rest = buf[start:] if start else buf
            self._pending = [rest]
            self._pending_size = len(rest)
            self._check(self._pending_size)
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream: a final event without its blank line still counts."""
        events: list[SSEEvent] = []
        if self._pending:
            buf = b"".join(self._pending)
            self._pending = []
            self._pending_size = 0
            line = buf[:-1] if buf.endswith(b"\r") else buf
            ev = self._line(line)
            if ev is not None:
                events.append(ev)
        ev = self._line(b"")
        if ev is not None:
            events.append(ev)
        return events

    def _check(self, size: int) -> None:
        if size > self._max:
            self._pending = []
            self._pending_size = 0
            raise EventTooLarge(
                "The upstream provider sent a stream event larger than the sidecar accepts.",
                detail=f"more than {self._max} bytes in one SSE line or event (max_event_bytes)",
            )

    def _line(self, line: bytes) -> SSEEvent | None:
        if not line:
            if not self._data and self._event is None:
                return None
            ev = SSEEvent(b"\n".join(self._data), self._event, self._id)
            self._data = []
            self._data_size = 0
            self._event = None
            return ev
        if line[:1] == b":":
            return None
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
            self._data_size += len(value) + 1
            if self._data_size > self._max:
                self._data = []
                self._data_size = 0
                self._check(self._max + 1)
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
