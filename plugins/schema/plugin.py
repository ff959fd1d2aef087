"""The ``schema`` plugin: validated JSON outputs and tool calls, with a bounded repair (issue #7).

An application that asked for structured output gets valid structured output or a typed
error, never malformed JSON presented as success.

Contracts come from the request (``response_format`` / ``text.format`` of type ``json_schema``
or ``json_object``, each declared tool's ``parameters``) and from the policy (``contracts:``, one
schema and/or a tool allow-list per route, model or tenant, inline or from a file next to the
policy, compiled when the plugin is built, i.e. once per policy revision). Request-side limits
(``request:``) refuse a request before it costs anything: a clear 400 each.

Where each job happens, and why:

* ``on_request`` builds the per-request ``Plan`` (request schemas come from a bounded LRU keyed
  by a hash of their canonical JSON; an invalid one is the client's fault: 422).
* The **repair loop** is an upstream wrapper (``wrap``): it is the only place that can ask the
  upstream again. It settles each attempt (non-stream body, or the whole SSE stream with
  ``stream: buffer``), validates it, and re-sends the request with the invalid answer and the
  validator's messages appended, at most ``max_repairs`` times, within the request deadline and
  ``repair_token_budget``; every invalid attempt is a decision record. Wrappers are not applied
  in shadow mode (see the compiler), so it only runs when the step enforces.
* The **verdict** is acted on in ``on_response`` / the stream filter, which also run in shadow
  mode (the chain turns a rejection there into a "would have" record). The wrapper leaves its
  verdict in ``ctx`` state so an answer it already validated is not validated twice.

Streams (``stream:`` is required, so nothing buffers silently): ``buffer`` collects, validates,
repairs, then streams the valid attempt in the usual chunked form; ``validate_at_end`` streams
as it comes and ends with an in-band error event when the whole was invalid (with
``on_failure: flag`` only a record: the headers are gone); ``skip`` leaves streams alone;
``reject`` refuses streamed requests (400).
"""

from __future__ import annotations

from proxy.chain import (
    Deps,
    Match,
    Reply,
    RequestContext,
    StateKey,
    StreamFilter,
    SurfaceHooks,
    UpstreamPolicy,
)
from proxy.chain.chain import Matcher
from proxy.chain.upstream import Upstream
from proxy.contracts import Plan, SchemaCache, Verdict, evaluate, output_from_body, plan_from_request
from proxy.contracts.request import RequestSchemaError, declared_tool_names
from proxy.errors import InvalidRequest, OutputSchemaViolation, Rejected
from proxy.guards import add_flag
from proxy.models import ChatRequest, ChatResponse, Route

from .config import SchemaConfig
from .contracts import compile_contract, first_match
from .limits import check_limits
from .repair import Repairing, Settled
from .stream import SchemaStream

ROUTES = frozenset({Route.CHAT, Route.RESPONSES, Route.MESSAGES})


class SchemaPlugin(UpstreamPolicy[SchemaConfig]):
    Config = SchemaConfig
    needs_full_body = True
    guard = True

    def surface_hooks(self, route: str, stream: bool) -> SurfaceHooks:
        if route not in ROUTES:
            return SurfaceHooks((), "no output contracts on this route")
        if stream and self.config.stream in ("skip", "reject"):
            skip = self.config.stream == "skip"
            note = "stream: skip" if skip else "stream: reject (streamed requests refused)"
            return SurfaceHooks(("request",), note, skipped=skip)
        hooks = ("request", "stream" if stream else "response", "upstream")
        return SurfaceHooks(hooks, f"stream: {self.config.stream}" if stream else "")

    def __init__(self, config: SchemaConfig, deps: Deps) -> None:
        super().__init__(config, deps)
        self.cache: SchemaCache = deps.resource(
            f"schema:cache:{config.cache_size}", lambda: SchemaCache(config.cache_size)
        )
        self.contracts = tuple(
            compile_contract(i, c, deps.policy_dir) for i, c in enumerate(config.contracts)
        )
        # Step-scoped by the context (two schema steps never share them).
        self.plan_key: StateKey[Plan] = StateKey("schema.plan")
        self.settled_key: StateKey[Settled] = StateKey("schema.settled")
        limits = config.request
        models = limits.allowed_models if limits else None
        self._models = Matcher(Match(models=models)) if models is not None else None

    # -- request side ------------------------------------------------------------------
    async def on_request(self, req: ChatRequest, ctx: RequestContext) -> Reply | None:
        if req.route not in ROUTES:
            return None
        check_limits(self.config.request, self._models, req, ctx)
        if req.stream and self.config.stream == "reject":
            ctx.record("stream_not_allowed", "block")
            raise Rejected(
                "Streaming is not available for requests with enforced output schemas.",
                code="stream_not_allowed",
                param="stream",
            )
        if req.stream and self.config.stream == "skip":
            ctx.record("stream_skipped", "allow")
            return None
        contract = first_match(self.contracts, ctx)
        allowed = contract.allowed_tools if contract else None
        if allowed is not None:
            for name in declared_tool_names(req.body, req.route):
                if name not in allowed:
                    ctx.record("tool_not_allowed", "block", detail={"param": "tools"})
                    raise Rejected(
                        "A declared tool is not allowed by policy.", code="tool_not_allowed", param="tools"
                    )
        try:
            plan = plan_from_request(
                req.body,
                req.route,
                self.cache,
                use_request=self.config.request_contracts,
                policy_schema=contract.schema if contract else None,
                allowed_tools=allowed,
                lenient=self.config.extraction == "lenient",
            )
        except RequestSchemaError as exc:
            ctx.record("request_schema_invalid", "block", detail={"param": exc.param, "status": 422})
            raise InvalidRequest(
                "A JSON Schema in the request is invalid.",
                status=422,
                code="invalid_request_schema",
                param=exc.param,
                detail=str(exc),
            ) from None
        if plan is not None:
            # The repair wrapper reads it only for a request this step enforces: the compiler
            # leaves wrappers out of shadow steps and gates a canary step's wrapper by its share.
            ctx.set(self.plan_key, plan)
        return None

    # -- acting on a verdict -----------------------------------------------------------
    def act(self, plan: Plan, verdict: Verdict, attempts: int, ctx: RequestContext) -> None:
        """Record the final verdict; raise ``OutputSchemaViolation`` unless it is valid or flagged."""
        detail = {"attempts": attempts, "sources": list(plan.sources), **verdict.detail()}
        if verdict.ok:
            ctx.record("output_valid", "allow", detail=detail)
            return
        if self.config.on_failure == "flag":
            ctx.record("output_invalid", "flag", detail=detail)
            add_flag(ctx, "schema")  # in shadow the chain drops the header with the step's other effects
            return
        ctx.record("output_invalid", "block", detail=detail)
        raise OutputSchemaViolation(self.config.message, detail="; ".join(verdict.codes()))

    async def on_response(self, resp: ChatResponse, ctx: RequestContext) -> None:
        plan = ctx.get(self.plan_key)
        if plan is None:
            return
        settled = ctx.get(self.settled_key)
        if settled is not None and settled.raw is resp.raw and not resp.dirty:
            verdict, attempts = settled.verdict, settled.attempts
        else:
            verdict, attempts = evaluate(plan, output_from_body(resp.body, resp.route)), 1
        self.act(plan, verdict, attempts, ctx)
        if verdict.normalized:
            _normalize(resp, verdict.normalized)  # in shadow: the chain's copy of the response

    def open_stream(self, ctx: RequestContext) -> StreamFilter | None:
        plan = ctx.get(self.plan_key)
        if plan is None:
            return None
        settled = ctx.get(self.settled_key)
        return SchemaStream(self, plan, ctx, settled if settled is not None and settled.stream else None)

    # -- repair loop -------------------------------------------------------------------
    def wrap(self, inner: Upstream) -> Upstream:
        return Repairing(self, inner)


def _normalize(resp: ChatResponse, normalized: dict[int, str]) -> None:
    """Put the clean JSON (found by lenient extraction) where the application reads it."""
    done: set[int] = set()
    for slot in resp.text_slots():
        if slot.kind != "message":
            continue
        index = 0 if resp.route is Route.RESPONSES else slot.message_index
        if index in normalized:
            slot.set("" if index in done else normalized[index])
            done.add(index)
