"""Upstream targets: where a request finally goes, and how its credentials are set.

* ``HttpTarget``: a provider over HTTP (OpenAI or any OpenAI-compatible server), through the
  shared pooled client of ``proxy.upstream.client``.
* ``AsgiTarget``: an ASGI app called in-process (the built-in demo upstream, ``builtin:demo``),
  so the embedded default works with nothing else running and no port to allocate.
* ``Router``: sends to the target the plan (``proxy.upstream.routing``) or the fallback chose.

Credentials: ``auth: policy`` replaces whatever the client sent with the policy's key (and
drops the billing-scope and ambient headers of ``AMBIENT_HEADERS``), ``passthrough`` forwards
the client's own ``Authorization``, ``none`` strips it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import replace
from typing import Any
from urllib.parse import unquote

import orjson

from proxy.chain.context import RequestContext
from proxy.chain.upstream import Upstream
from proxy.errors import UpstreamError
from proxy.models.chat import Route
from proxy.models.upstream import UpstreamRequest, UpstreamResponse
from proxy.upstream.client import HttpClient
from proxy.upstream.routing import RouteTable
from proxy.upstream.settle import settled

AUTH_HEADERS = frozenset({"authorization", "api-key", "x-api-key"})
#: Dropped when the upstream holds the key (``auth: policy``), unless its ``headers:`` set them:
#: with the sidecar's key, the client must not choose which organisation or project is billed
#: (``OpenAI-Organization``, ``OpenAI-Project``), send ambient browser state (``Cookie``) or
#: slip in another provider credential (Azure APIM, Google API keys) next to the policy's.
AMBIENT_HEADERS = frozenset(
    {
        "openai-organization",
        "openai-project",
        "cookie",
        "ocp-apim-subscription-key",
        "x-goog-api-key",
    }
)
_POLICY_DROP = AUTH_HEADERS | AMBIENT_HEADERS

ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]


class Credentials:
    """How one upstream authenticates; computed once per policy revision."""

    __slots__ = ("header", "mode", "static_headers", "value")

    def __init__(
        self, mode: str, api_key: str | None, header: str, scheme: str, static_headers: dict[str, str]
    ) -> None:
        self.mode = mode
        self.header = header.lower()
        self.value = f"{scheme} {api_key}".strip() if api_key is not None else None
        self.static_headers = [(k.lower(), v) for k, v in static_headers.items()]

    def apply(self, headers: list[tuple[str, str]], extra: dict[str, str]) -> list[tuple[str, str]]:
        if self.mode == "policy":
            headers = [(k, v) for k, v in headers if k.lower() not in _POLICY_DROP]
            if self.value is not None:
                headers.append((self.header, self.value))
        elif self.mode != "passthrough":
            headers = [(k, v) for k, v in headers if k.lower() not in AUTH_HEADERS]
        if self.static_headers or extra:
            override = {k for k, _ in self.static_headers} | {k.lower() for k in extra}
            headers = [(k, v) for k, v in headers if k.lower() not in override]
            headers.extend(self.static_headers)
            # An empty value in ``extra`` means "remove this header" (headers plugin strip_upstream).
            headers.extend((k.lower(), v) for k, v in extra.items() if v)
        return headers


class HttpTarget:
    """An OpenAI-compatible provider over HTTP; ``azure`` rewrites paths to the deployment form."""

    def __init__(
        self,
        name: str,
        base_url: str,
        client: HttpClient,
        credentials: Credentials,
        *,
        azure_api_version: str | None = None,
        first_token_timeout: float | None = None,
        max_response_bytes: int | None = None,
    ) -> None:
        self.name = name
        self._max_response = max_response_bytes
        self._base = base_url.rstrip("/")
        self._client = client
        self._credentials = credentials
        self._azure = azure_api_version
        self._first_token = first_token_timeout

    def url(self, request: UpstreamRequest) -> str:
        query = request.query
        if self._azure is not None and request.route is not Route.PASSTHROUGH:
            model = request.target.model if request.target else request.model
            path = f"/openai/deployments/{model}{request.path}"
            query = "&".join(q for q in (query, f"api-version={self._azure}") if q)
        else:
            path = request.path
        url = self._base + path
        return f"{url}?{query}" if query else url

    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        headers = self._credentials.apply(request.headers, ctx.upstream_headers)
        url = self.url(request)
        return await settled(
            request,
            lambda: self._client.send(request.method, url, headers, request.body),
            self._first_token,
            self._max_response,
        )


class _AsgiResponse:
    """The streamed answer of an in-process ASGI call."""

    def __init__(
        self, status: int, headers: list[tuple[str, str]], queue: asyncio.Queue[Any], task: asyncio.Task[None]
    ) -> None:
        self.status = status
        self.headers = headers
        self._queue = queue
        self._task = task
        self._done = False

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        while not self._done:
            msg = await self._queue.get()
            if isinstance(msg, BaseException):
                self._done = True
                raise UpstreamError("The upstream provider sent an incomplete response.", detail=repr(msg))
            if msg is None:
                self._done = True
                return
            body = msg.get("body", b"")
            if body:
                yield body
            if not msg.get("more_body", False):
                self._done = True

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_bytes()])

    async def aclose(self) -> None:
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


class AsgiTarget:
    def __init__(
        self, name: str, app: ASGIApp, credentials: Credentials, *, max_response_bytes: int | None = None
    ) -> None:
        self.name = name
        self._max_response = max_response_bytes
        self._app = app
        self._credentials = credentials

    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        body = request.body
        if body is not None and not isinstance(body, bytes):
            body = b"".join([chunk async for chunk in body])
        headers = self._credentials.apply(request.headers, ctx.upstream_headers)
        raw_path = "/v1" + request.path  # pass-through paths keep the client's encoding
        path = unquote(raw_path) if request.route is Route.PASSTHROUGH else raw_path
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": "http",
            "path": path,
            "raw_path": raw_path.encode(),
            "root_path": "",
            "query_string": request.query.encode(),
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
            "server": ("builtin-demo", 80),
            "client": ("127.0.0.1", 0),
        }
        queue: asyncio.Queue[Any] = asyncio.Queue()
        sent_body = False
        finished = asyncio.Event()

        async def receive() -> MutableMapping[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body or b"", "more_body": False}
            await finished.wait()
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            await queue.put(message)

        async def run() -> None:
            try:
                await self._app(scope, receive, send)
                await queue.put(None)
            except Exception as exc:
                await queue.put(exc)
            finally:
                finished.set()

        async def call() -> UpstreamResponse:
            task = asyncio.create_task(run())
            try:
                start = await queue.get()
            except BaseException:
                task.cancel()
                raise
            if start is None or isinstance(start, BaseException):
                raise UpstreamError("The upstream provider failed before answering.", detail=repr(start))
            hdrs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start.get("headers", [])]
            hdrs = [(k, v) for k, v in hdrs if k.lower() not in ("content-length", "transfer-encoding")]
            return _AsgiResponse(int(start["status"]), hdrs, queue, task)

        return await settled(request, call, None, self._max_response)


def _with_model(body: bytes | AsyncIterator[bytes] | None, model: str) -> bytes | AsyncIterator[bytes] | None:
    """The body with ``model`` replaced (a routed alias), re-encoded only when it differs."""
    if not isinstance(body, bytes):
        return body
    data = orjson.loads(body)
    if not isinstance(data, dict) or data.get("model") == model:
        return body
    data["model"] = model
    return orjson.dumps(data)


class Router:
    """Sends a request to its target: the one the fallback wrapper chose, else the plan's first.

    Every upstream attempt passes here (retries and fallbacks call through the wrappers again),
    so this is where attempts are counted and timed, and, for a traced request, where each
    attempt gets its span and the upstream request its ``traceparent``.
    """

    def __init__(
        self, targets: dict[str, Upstream], table: RouteTable, providers: dict[str, str] | None = None
    ) -> None:
        self._targets = targets
        self.table = table
        self._providers = providers or {}

    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        target = request.target
        if target is None:  # requests built outside the chain routes (tests, pass-through)
            target = request.target = (request.candidates or self.table.plan(request.model))[0]
        ctx.target = target.upstream
        if target.model != request.model and request.route is not Route.PASSTHROUGH:
            request = replace(request, body=_with_model(request.body, target.model))
        ctx.attempts += 1
        trace = ctx.trace
        started = time.perf_counter()
        if trace is None:
            try:
                return await self._targets[target.upstream].send(request, ctx)
            finally:
                ctx.upstream_s += time.perf_counter() - started
        provider = self._providers.get(target.upstream, "openai")
        attempt, request = trace.start_attempt(request, target, ctx.attempts, provider)
        try:
            resp = await self._targets[target.upstream].send(request, ctx)
        except BaseException as exc:
            trace.end_attempt(attempt, None, exc)
            raise
        finally:
            ctx.upstream_s += time.perf_counter() - started
        trace.end_attempt(attempt, resp.status, None)
        return resp
