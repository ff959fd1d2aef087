"""What crosses the upstream boundary: one request out, one (possibly streamed) response back.

The one-method ``Upstream`` interface that sends them is ``proxy.chain.upstream.Upstream``:
its contract includes the request context, which lives in the chain, above this package.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from proxy.models.chat import Route


@dataclass(frozen=True, slots=True)
class Candidate:
    """One place a request may be served: an upstream name and the model to ask it for."""

    upstream: str
    model: str


@dataclass(slots=True)
class UpstreamRequest:
    """One request to send upstream.

    ``candidates`` is the per-request plan (routes, weights already drawn), best first; the
    fallback wrapper walks it, setting ``target`` for each attempt. Without a fallback step the
    first candidate serves. ``deadline`` is absolute (``time.monotonic()``), or None.
    """

    method: str
    path: str  # below the API root, e.g. "/chat/completions"
    headers: list[tuple[str, str]]
    body: bytes | AsyncIterator[bytes] | None = None
    query: str = ""
    route: Route = Route.PASSTHROUGH
    stream: bool = False
    model: str = ""
    candidates: tuple[Candidate, ...] = ()
    target: Candidate | None = None
    deadline: float | None = None


class UpstreamResponse(Protocol):
    status: int
    headers: list[tuple[str, str]]

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...

    async def read(self) -> bytes: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class BufferedResponse:
    """An UpstreamResponse whose body is already in memory (local replies, replays, tests)."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        if self.body:
            yield self.body

    async def read(self) -> bytes:
        return self.body

    async def aclose(self) -> None:
        return None
