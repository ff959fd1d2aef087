"""Every other ``/v1/*`` path: forwarded transparently to the default upstream.

Method, query string, headers (minus hop-by-hop ones), body, status and streaming are
preserved; the request body is streamed upstream and the response streamed back, so file
uploads and streamed downloads are never buffered whole in the sidecar.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from proxy.chain.context import RequestContext
from proxy.errors import InvalidRequest, ProxyError
from proxy.models.chat import Route
from proxy.models.upstream import UpstreamRequest, UpstreamResponse
from proxy.routes.common import error_response, forward_headers, query_string, request_id, response_headers
from proxy.runtime import Sidecar

log = logging.getLogger("policy_sidecar.access")


class _ClosingStream(StreamingResponse):
    def __init__(self, resp: UpstreamResponse, headers: dict[str, str], release: object) -> None:
        super().__init__(resp.aiter_bytes(), status_code=resp.status, headers=headers)
        self._resp = resp
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._resp.aclose()
                self._release()  # type: ignore[operator]


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InvalidRequest(
                f"Request body too large: the limit is {limit} bytes.", status=413, code="request_too_large"
            )
        if chunk:
            yield chunk


class PassthroughRoute:
    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar

    async def handle(self, request: Request) -> Response:
        store = self.sidecar.store
        policy = store.acquire()
        rid = request_id(request)
        base = {"x-request-id": rid, "x-sidecar-revision": policy.revision}
        handed_off = False
        try:
            limit = policy.max_body_bytes
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise InvalidRequest(
                    f"Request body too large: the limit is {limit} bytes.",
                    status=413,
                    code="request_too_large",
                )
            has_body = request.method not in ("GET", "HEAD", "OPTIONS", "DELETE") or bool(declared)
            ctx = RequestContext(rid, Route.PASSTHROUGH, request.headers, policy.revision)
            path = request.url.path[len("/v1") :] or "/"
            upstream_request = UpstreamRequest(
                request.method,
                path,
                forward_headers(request),
                _limited(request, limit) if has_body else None,
                query_string(request),
                Route.PASSTHROUGH,
            )
            resp = await policy.chain.send(upstream_request, ctx)
            headers = response_headers(resp.headers, base)
            if ctx.target:
                headers["x-sidecar-upstream"] = ctx.target
            handed_off = True
            return _ClosingStream(resp, headers, lambda: store.release(policy))
        except ProxyError as exc:
            return error_response(exc, base)
        except ClientDisconnect:
            log.info("client disconnected before its request body arrived", extra={"request_id": rid})
            return Response(status_code=499)
        except Exception as exc:
            log.exception("unexpected error on pass-through %s", request.url.path)
            return error_response(exc, base)
        finally:
            if not handed_off:
                store.release(policy)
