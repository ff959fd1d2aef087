"""Ports: what the runtime lends plugins, declared here as protocols so plugins import no upper layer.

A guard that consults a remote model (an LLM judge, a ``/moderations`` endpoint) needs HTTP, but
the HTTP client lives in ``proxy.upstream``, above the plugins. Rather than letting plugins reach
up for it, the chain declares the one operation they need (POST JSON, get JSON back) and the
runtime plugs an implementation in when it builds ``Deps`` (``proxy.upstream.json_http``). Tests
can plug a fake in the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol


class JsonHttp(Protocol):
    """A pooled client for one remote endpoint: POST a JSON body, return the decoded JSON answer.

    The status code is not checked: a guard reads the fields it expects and treats anything else
    as a failure of that layer (its ``on_error`` decides). Transport errors and undecodable
    bodies raise."""

    async def post_json(self, url: str, headers: Sequence[tuple[str, str]], body: bytes) -> Any: ...

    async def aclose(self) -> None: ...


#: Builds a pooled client whose connect and read timeouts are ``timeout`` seconds.
JsonHttpFactory = Callable[[float], JsonHttp]
