"""The runtime's implementation of the plugins' HTTP port (``proxy.chain.ports.JsonHttp``).

Guards that call a remote model (judges, moderation endpoints) POST a small JSON body and read a
small JSON answer; they get this pooled client through ``Deps.json_http`` so that plugins never
import this layer. One pool per endpoint key, shared across policy revisions like every resource.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from proxy.upstream.client import HttpClient

#: Connections per remote endpoint: judges are asked only in a borderline band, so few are needed.
MAX_CONNECTIONS = 16


class PooledJsonHttp:
    """``JsonHttp`` over one ``HttpClient``: the body is read whole and decoded with orjson."""

    def __init__(self, timeout: float) -> None:
        self._client = HttpClient(
            connect_timeout=timeout, read_timeout=timeout, max_connections=MAX_CONNECTIONS
        )

    async def post_json(self, url: str, headers: Sequence[tuple[str, str]], body: bytes) -> Any:
        resp = await self._client.send("POST", url, headers, body)
        try:
            data = await resp.read()
        finally:
            await resp.aclose()
        return orjson.loads(data)

    async def aclose(self) -> None:
        await self._client.aclose()


def pooled_json_http(timeout: float) -> PooledJsonHttp:
    """The ``JsonHttpFactory`` the policy store hands to ``Deps``."""
    return PooledJsonHttp(timeout)
