"""A misbehaving upstream on a raw asyncio socket: it writes exactly the bytes a test scripts.

Real HTTP libraries refuse to send what these tests need (a close-delimited body that stops
without its end event, one 10 MB SSE line, a body far above a cap), so this server reads one
request (headers and Content-Length body) per connection and writes the scripted response
parts, then closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"

#: A response: the parts to write, in order; a float part means "sleep this many seconds".
Script = list[bytes | float]


@dataclass
class RawUpstream:
    url: str  # the /v1 root
    scripts: list[Callable[[bytes, bytes], Script]] = field(default_factory=list)
    requests: list[bytes] = field(default_factory=list)

    def answer(self, script: Callable[[bytes, bytes], Script] | Script) -> None:
        """Queue the answer to the next request (``script(request_line, body)`` or fixed parts)."""
        self.scripts.append(script if callable(script) else (lambda _line, _body, s=script: s))


async def _handle(up: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        body = await reader.readexactly(length) if length else b""
        up.requests.append(head + body)
        script = up.scripts.pop(0)(head.split(b"\r\n", 1)[0], body) if up.scripts else [SSE_HEAD]
        for part in script:
            if isinstance(part, float):
                await asyncio.sleep(part)
            else:
                writer.write(part)
                await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


@contextlib.contextmanager
def raw_upstream() -> Iterator[RawUpstream]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def start() -> None:
        up = RawUpstream("")
        server = await asyncio.start_server(lambda r, w: _handle(up, r, w), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        up.url = f"http://127.0.0.1:{port}/v1"
        holder["up"], holder["server"] = up, server
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop)
    ready.wait(10)
    try:
        yield holder["up"]  # type: ignore[misc]
    finally:
        server = holder["server"]

        async def stop() -> None:
            server.close()  # type: ignore[attr-defined]

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
