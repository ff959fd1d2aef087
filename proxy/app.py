"""Build the Starlette applications: the API app and, optionally, a separate admin app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as HttpRoute
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send

from proxy.chain.decisions import DecisionSink
from proxy.chain.registry import Registry, default_registry
from proxy.errors import InvalidRequest
from proxy.models.chat import Route
from proxy.observability.live import attach_calibration_observers
from proxy.observability.metrics import metrics_route
from proxy.observability.promotion import attach_promotion
from proxy.observability.telemetry import Telemetry
from proxy.policy.store import PolicyStore
from proxy.routes.admin import admin_routes, self_report_route
from proxy.routes.common import error_response
from proxy.routes.passthrough import PassthroughRoute
from proxy.routes.pipeline import ChainRoute
from proxy.runtime import Sidecar
from proxy.settings import Settings

log = logging.getLogger("policy_sidecar")

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def build_sidecar(settings: Settings, registry: Registry | None = None) -> Sidecar:
    """Load the policy (fails loudly at startup: there is no old policy to fall back to)."""
    store = PolicyStore(
        settings.policy_path, registry or default_registry(), cpu_workers=settings.cpu_workers
    )
    store.load_initial()
    telemetry = Telemetry.from_env(store)
    sidecar = Sidecar(settings=settings, store=store, sink=DecisionSink(), telemetry=telemetry)
    sidecar.observers.append(telemetry.observe)  # request span end, metrics
    attach_calibration_observers(sidecar)  # live page counters, decision log
    attach_promotion(sidecar)  # promote: steps move through their stages on live traffic
    return sidecar


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = {404: f"Unknown path {request.url.path}.", 405: "Method not allowed for this path."}
    return error_response(
        InvalidRequest(
            message.get(status, "Invalid request."),
            status=status,
            code="not_found" if status == 404 else "method_not_allowed",
        )
    )


Endpoint = Callable[[Request], Awaitable[Response]]


class SidecarApp(Starlette):
    """Starlette, plus a direct dispatch of the chain routes (issue 17: the empty policy's cost).

    Every chain request used to pass six ASGI layers before its endpoint ran (the error and
    exception middlewares, the router's scan of the route table, the route, Starlette's
    ``request_response`` wrapper and its exception-handling wrapper), and every message it sent
    went back through two ``send`` wrappers: CPU the pass-through floor pays too, but that a
    proxy serving four fixed ``POST`` paths does not need. So a ``POST`` to one of ``fast``'s
    paths goes straight to its endpoint, with the same ``Request`` and the same ``Response``
    objects; everything else (other methods and paths, 404/405, websockets, a mounted
    ``root_path``, an app with user middleware) goes through Starlette as before.

    Nothing is lost on the way: the chain endpoints answer every exception themselves
    (``ChainRoute.handle``), no exception handler of the app applies to them, and what could
    still escape (a failure while sending) reaches uvicorn, which logs it and answers 500
    before a response started, as Starlette's ``ServerErrorMiddleware`` would.
    """

    def __init__(self, *, fast: dict[str, Endpoint], **options: Any) -> None:
        super().__init__(**options)
        self._fast = fast

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            endpoint = self._fast.get(scope["path"])
            if endpoint is not None and not self.user_middleware:
                scope["app"] = self
                response = await endpoint(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


@contextlib.asynccontextmanager
async def _lifespan(sidecar: Sidecar) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    if sidecar.settings.watch:
        tasks.append(asyncio.create_task(sidecar.store.watch(stop, sidecar.settings.watch_polling)))
    if sidecar.telemetry is not None:
        tasks.append(asyncio.create_task(sidecar.telemetry.metrics.watch_loop_lag()))
    loop = asyncio.get_running_loop()
    hup = False
    try:
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(sidecar.store.reload("sighup")))
        hup = True
    except (RuntimeError, ValueError, NotImplementedError):
        log.debug("SIGHUP reload unavailable here (not the main thread)")
    try:
        yield
    finally:
        stop.set()
        if hup:
            loop.remove_signal_handler(signal.SIGHUP)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await sidecar.store.aclose()
        if sidecar.telemetry is not None:
            # Flush batched spans; off the loop (the OTLP exporter posts synchronously).
            await asyncio.to_thread(sidecar.telemetry.tracing.shutdown)


def build_app(sidecar: Sidecar, *, include_admin: bool = True) -> Starlette:
    chain_route = ChainRoute(sidecar)
    passthrough = PassthroughRoute(sidecar)

    def chain_endpoint(route: Route) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            return await chain_route.handle(request, route)

        return endpoint

    fast = {
        "/v1/chat/completions": chain_endpoint(Route.CHAT),
        "/v1/responses": chain_endpoint(Route.RESPONSES),
        "/v1/embeddings": chain_endpoint(Route.EMBEDDINGS),
        "/v1/messages": chain_endpoint(Route.MESSAGES),
    }
    routes: list[Any] = [
        *(HttpRoute(path, endpoint, methods=["POST"]) for path, endpoint in fast.items()),
        HttpRoute("/v1/{path:path}", passthrough.handle, methods=ALL_METHODS),
        WebSocketRoute("/v1/{path:path}", passthrough.websocket),  # refused, with a record
        self_report_route(sidecar),
    ]
    health_routes = admin_routes(sidecar, prefix="")
    routes += [r for r in health_routes if r.path in ("/health", "/ready")]
    routes += [
        HttpRoute("/healthz", health_routes[0].endpoint),
        HttpRoute("/readyz", health_routes[1].endpoint),
    ]
    if include_admin:
        routes += admin_routes(sidecar)
        if sidecar.telemetry is not None:
            routes.append(metrics_route(sidecar.telemetry.metrics))

    app = SidecarApp(
        fast=fast,
        routes=routes,
        exception_handlers={404: _http_error, 405: _http_error},
        lifespan=lambda _app: _lifespan(sidecar),
    )
    app.state.sidecar = sidecar
    return app


def build_admin_app(sidecar: Sidecar) -> Starlette:
    """The admin routes alone, for ``--admin-port``."""
    routes = admin_routes(sidecar)
    health = admin_routes(sidecar, prefix="")
    routes += [HttpRoute("/healthz", health[0].endpoint), HttpRoute("/readyz", health[1].endpoint)]
    if sidecar.telemetry is not None:
        routes.append(metrics_route(sidecar.telemetry.metrics))
    app = Starlette(routes=routes, exception_handlers={404: _http_error, 405: _http_error})
    app.state.sidecar = sidecar
    return app
