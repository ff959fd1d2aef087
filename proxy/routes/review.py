"""Review routes on the admin app: the page, its data and the label sink (issue #19).

``GET {prefix}/review`` is the page (no data in it). ``GET {prefix}/review.json`` and
``POST {prefix}/review/labels`` need ``Authorization: Bearer <SIDECAR_ADMIN_TOKEN>`` and are
refused when no token is configured: captured text, even redacted, is for reviewers only.
The store is read and written in a worker thread (it may be many megabytes), never on the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from proxy.errors import InvalidRequest, ProxyError
from proxy.observability import capture_store, review
from proxy.observability.review_page import REVIEW_HTML
from proxy.routes.common import error_response
from proxy.runtime import Sidecar

MAX_LABEL_BODY = 1024 * 1024
MAX_EVENTS = 1000

Handler = Callable[[Request], Awaitable[Response]]


def review_routes(
    sidecar: Sidecar,
    prefix: str,
    authorised: Callable[[Request, str | None], bool],
    forbidden: Callable[[str, int], JSONResponse],
) -> list[Route]:
    def guarded(handler: Callable[[Request, Path, float], Awaitable[Response]]) -> Handler:
        async def endpoint(request: Request) -> Response:
            token = sidecar.settings.admin_token
            if token is None:
                return forbidden("Set SIDECAR_ADMIN_TOKEN to use the review page.", 403)
            if not authorised(request, token):
                return forbidden("Missing or invalid admin token.", 401)
            cfg = sidecar.store.current.policy.observability.capture
            try:
                if cfg.dir is None:
                    raise InvalidRequest(
                        "Capture is off in the current policy: set observability.capture.dir.",
                        status=409,
                        code="capture_off",
                    )
                return await handler(request, Path(cfg.dir), cfg.band)
            except ProxyError as exc:
                return error_response(exc)

        return endpoint

    async def page(_: Request) -> Response:
        return HTMLResponse(REVIEW_HTML, headers={"cache-control": "no-store"})

    async def data(request: Request, root: Path, band: float) -> Response:
        q = request.query_params
        chosen = q.get("band") or None
        if chosen is not None and chosen not in review.BANDS:
            raise InvalidRequest(f"Unknown band; one of: {', '.join(review.BANDS)}.", param="band")
        try:
            limit = min(max(int(q.get("limit", "200")), 1), 2000)
        except ValueError:
            raise InvalidRequest("'limit' must be an integer.", param="limit") from None
        body = await asyncio.to_thread(
            review.view,
            root,
            band,
            rule=q.get("rule") or None,
            band=chosen,
            unlabelled_only=q.get("unlabelled") in ("1", "true"),
            limit=limit,
        )
        return JSONResponse(body, headers={"cache-control": "no-store"})

    async def labels(request: Request, root: Path, _band: float) -> Response:
        raw = await request.body()
        if len(raw) > MAX_LABEL_BODY:
            raise InvalidRequest("Label batch too large.", status=413, code="body_too_large")
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidRequest("Send a JSON object (or a list of them) with id and labels.") from None
        events = body if isinstance(body, list) else [body]
        if not events or len(events) > MAX_EVENTS:
            raise InvalidRequest(f"Send between 1 and {MAX_EVENTS} labels.", param="labels")
        n = await asyncio.to_thread(_append, root, events)
        return JSONResponse({"appended": n})

    return [
        Route(f"{prefix}/review", page, methods=["GET"]),
        Route(f"{prefix}/review.json", guarded(data), methods=["GET"]),
        Route(f"{prefix}/review/labels", guarded(labels), methods=["POST"]),
    ]


def _append(root: Path, events: list[Any]) -> int:
    known = {str(r.get("id")) for r in capture_store.read_records(root)}
    checked = [capture_store.check_label_event(e, known) for e in events]
    return capture_store.append_labels(root, checked)
