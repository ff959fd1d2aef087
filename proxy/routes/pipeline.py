"""The chain routes (chat completions, responses, embeddings, Anthropic messages): ``ChainRoute``.

    admit (401/403) -> read + parse the body (413/415/400, the format adapter)
        -> pin the policy revision -> ``Exchange(...).run()`` -> errors in the client's format

The route object is one per process and holds no per-request state. It does what comes before
a request is known to be well-formed (authentication, body, context, span) and maps every
failure to an error response; the request itself runs in a per-request ``Exchange``
(``proxy.routes.exchange``), the client's wire format is its ``FormatAdapter``
(``proxy.routes.adapters``), streams are relayed by a ``StreamRelay``
(``proxy.routes.streaming``), and everything recorded about a request goes through
``Records`` (``proxy.routes.records``). docs/architecture.md draws the whole path.
"""

from __future__ import annotations

import logging

import anyio
import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from proxy.auth.gate import admit, bind
from proxy.chain.context import RequestContext
from proxy.chain.plugin import Outcome
from proxy.errors import ProxyError
from proxy.models.chat import Route
from proxy.observability import capture
from proxy.policy.compiler import CompiledPolicy
from proxy.routes.adapters import ADAPTERS, FormatAdapter
from proxy.routes.common import Inbound, check_json_media_type, choose_request_id, error_response, read_body
from proxy.routes.exchange import Exchange, Finish
from proxy.routes.records import Records, elapsed_ms
from proxy.runtime import Sidecar

log = logging.getLogger("policy_sidecar.access")


class ChainRoute:
    """One instance per process; everything per request lives in an ``Exchange`` and ``ctx``."""

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        self.records = Records(sidecar)

    async def handle(self, request: Request, route: Route) -> Response:
        policy = self.sidecar.store.acquire()
        adapter = ADAPTERS[route]
        inbound = Inbound(request)
        rid = choose_request_id(inbound.request_id)
        headers = {"x-request-id": rid, "x-sidecar-revision": policy.revision}
        ctx: RequestContext | None = None
        handed_off = False
        try:
            # clients: 401 / 403 before the body is read; strips the credential from inbound.forward
            caller = await admit(self.sidecar, policy, route, request.headers, rid, inbound.forward)
            raw = await read_body(request, policy.max_body_bytes, inbound.content_length)
            check_json_media_type(inbound.content_type)
            req = adapter.parse(raw, policy.policy.limits)
            ctx = RequestContext(rid, route, request.headers, policy.revision, req.model, stream=req.stream)
            bind(ctx, caller)  # verified tenant/user/key on ctx; 403 for a model the key may not use
            if policy.capture_on:  # observability.capture: the body as it arrived, before any hook
                capture.keep_request(policy, ctx, raw if raw is not None else orjson.dumps(req.body))
            self.records.begin(ctx, request.headers, policy, req.body)
            exchange = Exchange(self.records, request, inbound, adapter, policy, ctx, req, headers)
            response = await exchange.run()
            handed_off = True
            return response
        except ProxyError as exc:
            handed_off = True
            outcome = Outcome(exc.status, exc, latency_ms=elapsed_ms(ctx))
            return self._error(exc, policy, ctx, outcome, headers, adapter)
        except ClientDisconnect:
            # Not an error of ours: one line, no traceback. Nobody reads the answer; ``finally``
            # finishes the request as a 499 (client closed request).
            log.info("client disconnected before its request body arrived", extra={"request_id": rid})
            return Response(status_code=499)
        except Exception as exc:
            log.exception("unexpected error on %s", route.value)
            handed_off = True
            return self._error(exc, policy, ctx, Outcome(500, exc), headers, adapter)
        finally:
            if not handed_off:  # cancelled (client went away) before a response existed
                with anyio.CancelScope(shield=True):
                    await self.records.finish(policy, ctx, Outcome(499, None, completed=False))

    def _error(
        self,
        exc: BaseException,
        policy: CompiledPolicy,
        ctx: RequestContext | None,
        outcome: Outcome,
        headers: dict[str, str],
        adapter: FormatAdapter,
    ) -> Response:
        """The OpenAI error envelope, re-shaped by the adapter; the request still finishes."""
        extra = {**headers, **(ctx.response_headers if ctx else {})}
        response = error_response(exc, extra, adapter.answer)
        response.background = Finish(self.records.finish, policy, ctx, outcome)
        return response
