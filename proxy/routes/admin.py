"""Admin endpoints: liveness, readiness, the live policy, reload, recent decisions, schema, live page,
review page (``proxy/routes/review.py``: its data and labels need the admin token).

Reads are open (they reveal no secrets: API keys are never shown); ``POST /admin/reload``
requires ``Authorization: Bearer <SIDECAR_ADMIN_TOKEN>`` and is refused when no token is
configured. When ``--admin-port`` is set these routes live only on that port, so the
application-facing port exposes nothing but the API.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from proxy.errors import ProxyError
from proxy.observability.live import live_for
from proxy.observability.live_page import LIVE_HTML
from proxy.routes.common import error_response
from proxy.routes.review import review_routes
from proxy.runtime import Sidecar


def _authorised(request: Request, token: str | None) -> bool:
    if token is None:
        return False
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.encode(), token.encode())


def _forbidden(message: str, status: int) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": "permission_error", "param": None, "code": "admin_forbidden"}},
        status_code=status,
    )


def admin_routes(sidecar: Sidecar, prefix: str = "/admin") -> list[Route]:
    store = sidecar.store

    async def health(_: Request) -> Response:
        # Liveness: the process and its event loop answer. Never depends on the policy.
        return JSONResponse({"status": "ok"})

    async def ready(_: Request) -> Response:
        if sidecar.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        if not store.ready:
            return JSONResponse({"status": "no policy"}, status_code=503)
        reasons = [r for s in store.current.chain.steps if (r := await s.plugin.not_ready())]
        if reasons:
            return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
        return JSONResponse({"status": "ready", "revision": store.current.revision})

    async def policy(_: Request) -> Response:
        body: dict[str, Any] = store.current.describe()
        body["last_reload"] = store.last_reload
        body["last_error"] = store.last_error
        body["reloads"] = {"ok": store.reloads_ok, "failed": store.reloads_failed}
        return JSONResponse(body)

    async def reload(request: Request) -> Response:
        if sidecar.settings.admin_token is None:
            return _forbidden("Admin reload is disabled: set SIDECAR_ADMIN_TOKEN to enable it.", 403)
        if not _authorised(request, sidecar.settings.admin_token):
            return _forbidden("Missing or invalid admin token.", 401)
        result = await store.reload("admin")
        return JSONResponse(result, status_code=422 if result["result"] == "failed" else 200)

    async def decisions(_: Request) -> Response:
        return JSONResponse(
            {
                "counts": sidecar.sink.snapshot(),
                "recent": [d.as_dict() for d in list(sidecar.sink.recent)[-100:]],
            }
        )

    async def schema(_: Request) -> Response:
        return JSONResponse(store.model.model_json_schema())

    live = live_for(sidecar)

    async def live_page(_: Request) -> Response:
        return HTMLResponse(LIVE_HTML, headers={"cache-control": "no-store"})

    async def live_json(_: Request) -> Response:
        return JSONResponse(live.snapshot(sidecar), headers={"cache-control": "no-store"})

    async def plugin_report(request: Request) -> Response:
        token = sidecar.settings.admin_token
        if token is not None and not _authorised(request, token):
            return _forbidden("Missing or invalid admin token.", 401)
        step = next((s for s in store.current.chain.steps if s.id == request.path_params["step"]), None)
        report = await step.plugin.admin_report(dict(request.query_params)) if step else None
        if report is None:
            return _forbidden("No such plugin step with a report.", 404)
        return JSONResponse(report)

    return [
        Route(f"{prefix}/health", health, methods=["GET"]),
        Route(f"{prefix}/ready", ready, methods=["GET"]),
        Route(f"{prefix}/policy", policy, methods=["GET"]),
        Route(f"{prefix}/reload", reload, methods=["POST"]),
        Route(f"{prefix}/decisions", decisions, methods=["GET"]),
        Route(f"{prefix}/schema", schema, methods=["GET"]),
        Route(f"{prefix}/live", live_page, methods=["GET"]),
        Route(f"{prefix}/live.json", live_json, methods=["GET"]),
        Route(f"{prefix}/plugins/{{step}}", plugin_report, methods=["GET"]),
        *review_routes(sidecar, prefix, _authorised, _forbidden),
    ]


def self_report_route(sidecar: Sidecar) -> Route:
    """``GET /sidecar/{step}`` on the API port: what a plugin shows a caller about itself."""

    async def self_report(request: Request) -> Response:
        step = next(
            (s for s in sidecar.store.current.chain.steps if s.id == request.path_params["step"]), None
        )
        auth, identity = sidecar.store.current.auth, None
        if auth is not None:  # clients: a caller sees its verified self only; 401 without a credential
            try:
                identity = (await auth.authenticate(request.headers)).identity
            except ProxyError as exc:
                return error_response(exc)
        if step is None:
            report = None
        elif identity is None:  # plugins written before ``identity`` existed keep working
            report = await step.plugin.self_report(request.headers)
        else:
            report = await step.plugin.self_report(request.headers, identity=identity)
        if report is None:
            return _forbidden("No such plugin step with a report.", 404)
        return JSONResponse(report)

    return Route("/sidecar/{step}", self_report, methods=["GET"])
