"""What the routes call: authenticate before reading the body, bind the identity to the context.

Kept out of the route modules so each route only adds a line or two:

* ``admit`` (first thing a ``/v1`` route does): 401 for a missing or bad credential, 403 for a
  route the credential does not allow. A refusal is a decision record (plugin ``clients``)
  even though no request context exists yet. The credential headers are removed from what
  will be forwarded: under ``clients:`` they are the caller's sidecar credential, never a
  provider key.
* ``bind`` (once the model is known): puts the identity on the context, makes its tenant the
  context's tenant, and refuses (403) a model the credential does not allow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from proxy.auth.authenticator import CREDENTIAL_HEADERS, Authenticator
from proxy.auth.caller import Caller
from proxy.chain.context import ActiveStep, RequestContext
from proxy.chain.decisions import Decision, DecisionSink
from proxy.errors import Forbidden, Unauthenticated

if TYPE_CHECKING:
    from starlette.requests import Request

    from proxy.models.chat import Route


# What the gate needs from the runtime and the compiled policy, which sit above this package
# (layers: it must not import them, not even for types); ``proxy.runtime.Sidecar`` and
# ``proxy.policy.compiler.CompiledPolicy`` fit these.
class Sidecar(Protocol):
    @property
    def sink(self) -> DecisionSink: ...


class CompiledPolicy(Protocol):
    @property
    def auth(self) -> Authenticator | None: ...

    @property
    def revision(self) -> str: ...


_CLIENTS = ActiveStep("clients", "enforce")


async def admit(
    sidecar: Sidecar,
    policy: CompiledPolicy,
    route: Route,
    headers: Any,
    request_id: str,
    forward: list[tuple[str, str]] | None = None,
) -> Caller | None:
    """The verified caller (``None`` when the policy has no ``clients:``); raises 401 / 403."""
    auth = policy.auth
    if auth is None:
        return None
    caller: Caller | None = None
    try:
        caller = await auth.authenticate(headers)
        caller.check_route(route.value)
    except (Unauthenticated, Forbidden) as exc:
        detail: dict[str, Any] = {"route": route.value, "status": exc.status}
        if caller is not None:
            detail["client"] = caller.identity.key_id
        sidecar.sink.emit(
            [
                Decision(
                    request_id,
                    policy.revision,
                    "clients",
                    exc.detail or "invalid",
                    "block",
                    "enforce",
                    detail=detail,
                )
            ]
        )
        raise
    if forward is not None:
        forward[:] = [(k, v) for k, v in forward if k.lower() not in CREDENTIAL_HEADERS]
    return caller


async def admit_request(
    sidecar: Sidecar, policy: CompiledPolicy, request: Request, route: Route, request_id: str
) -> None:
    """``admit`` for routes that build their context later (pass-through): the caller is kept
    on ``request.state.caller`` for ``bind(ctx, caller_of(request))``."""
    request.state.caller = await admit(sidecar, policy, route, request.headers, request_id)


def bind(ctx: RequestContext, caller: Caller | None) -> None:
    """The verified identity becomes the context's; a disallowed model is refused (403)."""
    if caller is None:
        return
    ctx.identity = caller.identity
    ctx.tenant = caller.identity.tenant
    if ctx.model:
        try:
            caller.check_model(ctx.model)
        except Forbidden as exc:
            previous, ctx.active = ctx.active, _CLIENTS
            detail = {"model": ctx.model, "client": caller.identity.key_id}
            ctx.record(exc.detail or "forbidden", "block", detail=detail)
            ctx.active = previous
            raise


def caller_of(request: Request) -> Caller | None:
    """What ``admit_request`` found (``None`` without ``clients:``)."""
    return getattr(request.state, "caller", None)
