"""``schema``: validated JSON outputs and tool calls, with a bounded repair (issue #7).

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

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from proxy.chain import (
    Deps,
    Match,
    PluginConfig,
    Reply,
    RequestContext,
    StateKey,
    StreamFilter,
    SurfaceHooks,
    UpstreamPolicy,
)
from proxy.chain.chain import Matcher
from proxy.chain.upstream import Upstream
from proxy.contracts import (
    Output,
    Plan,
    SchemaCache,
    SchemaInvalid,
    StreamAssembler,
    Verdict,
    compile_schema,
    evaluate,
    output_from_body,
    output_from_sse,
    plan_from_request,
    repair_body,
)
from proxy.contracts.compiled import CompiledSchema
from proxy.contracts.request import RequestSchemaError, declared_tool_names
from proxy.errors import ConfigError, InvalidRequest, OutputSchemaViolation, Rejected, UpstreamTimeout
from proxy.models import ChatRequest, ChatResponse, Finish, RawEvent, Route, StreamEvent, TextDelta
from proxy.models.upstream import BufferedResponse, UpstreamRequest, UpstreamResponse

_ROUTES = frozenset({Route.CHAT, Route.RESPONSES, Route.MESSAGES})
_TEXT_DONE = frozenset(
    {"response.output_text.done", "response.content_part.done", "response.output_item.done"}
)


def _now() -> float:
    """``time.monotonic``; a seam so tests can move the clock past a deadline without sleeping."""
    return time.monotonic()


class PolicyContract(BaseModel):
    """An output contract from the policy, for the requests ``match`` selects (first match wins)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: Match | None = Field(default=None, description="routes / models / tenants; empty: all")
    json_schema: dict[str, Any] | None = Field(
        default=None, description="inline JSON Schema (Draft 2020-12) the answer's content must satisfy"
    )
    json_schema_file: str | None = Field(
        default=None, description="a .json or .yaml schema file, relative to the policy's directory"
    )
    strict: bool = Field(default=False, description="close objects and require all their properties")
    allowed_tools: tuple[str, ...] | None = Field(
        default=None, description="tools requests may declare and answers may call"
    )

    @model_validator(mode="after")
    def _one_schema(self) -> PolicyContract:
        if self.json_schema is not None and self.json_schema_file is not None:
            raise ValueError("give json_schema or json_schema_file, not both")
        return self


class RequestLimits(BaseModel):
    """Request-side contracts: each violation is a 400 before anything is sent upstream."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_models: tuple[str, ...] | None = Field(default=None, description="glob patterns")
    max_tokens: int | None = Field(
        default=None, ge=1, description="max_tokens / max_completion_tokens / max_output_tokens"
    )
    max_messages: int | None = Field(default=None, ge=1, description="messages (or input items)")
    max_tools: int | None = Field(default=None, ge=0)
    required_fields: tuple[str, ...] = Field(default=(), description="top-level body fields, e.g. user")


class SchemaConfig(PluginConfig):
    """Validate JSON outputs and tool calls against request and policy contracts; repair or reject."""

    type: Literal["schema"] = "schema"
    stream: Literal["buffer", "validate_at_end", "skip", "reject"] = Field(
        description="streamed answers: buffer (validate, repair, then stream), validate_at_end "
        "(in-band error at the end), skip, or reject streamed requests"
    )
    on_failure: Literal["repair", "reject", "flag"] = Field(
        default="reject",
        description="repair: re-ask with the errors, then 502 if still invalid; reject: 502; "
        "flag: pass with x-sidecar-flags and a record",
    )
    max_repairs: int = Field(default=2, ge=1, le=5, description="repair requests at most")
    repair_target: Literal["same", "next"] = Field(
        default="same", description="next: repair on the next fallback target of the route, if any"
    )
    repair_token_budget: int | None = Field(
        default=None, ge=1, description="tokens all attempts may use; no repair starts beyond it"
    )
    extraction: Literal["strict", "lenient"] = Field(
        default="strict", description="lenient: accept JSON in code fences or after a sentence"
    )
    request_contracts: bool = Field(default=True, description="enforce response_format and tool schemas")
    contracts: tuple[PolicyContract, ...] = Field(default=(), description="policy contracts, first match")
    request: RequestLimits | None = None
    cache_size: int = Field(default=256, ge=1, description="compiled request schemas kept (LRU)")
    message: str = "The model's answer did not match the required output format."


@dataclass(frozen=True, slots=True)
class _Contract:
    matcher: Matcher | None
    schema: CompiledSchema | None
    allowed_tools: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class _Settled:
    """The wrapper's verdict on the answer it hands on (``raw`` identifies that answer)."""

    raw: bytes
    verdict: Verdict
    attempts: int
    stream: bool


def _load_schema(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    return yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else orjson.loads(text)


def _add_flag(ctx: RequestContext) -> None:
    existing = ctx.response_headers.get("x-sidecar-flags")
    if not existing:
        ctx.response_headers["x-sidecar-flags"] = "schema"
    elif "schema" not in existing.split(","):
        ctx.response_headers["x-sidecar-flags"] = f"{existing},schema"


class SchemaPlugin(UpstreamPolicy[SchemaConfig]):
    Config = SchemaConfig
    needs_full_body = True
    guard = True

    def surface_hooks(self, route: str, stream: bool) -> SurfaceHooks:
        if route not in _ROUTES:
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
        self.contracts = tuple(self._compile(i, c) for i, c in enumerate(config.contracts))
        # Step-scoped by the context (two schema steps never share them).
        self.plan_key: StateKey[Plan] = StateKey("schema.plan")
        self.settled_key: StateKey[_Settled] = StateKey("schema.settled")
        limits = config.request
        models = limits.allowed_models if limits else None
        self._models = Matcher(Match(models=models)) if models is not None else None

    def _compile(self, i: int, spec: PolicyContract) -> _Contract:
        """Policy schemas compile here, once per revision; a bad one fails the policy load."""
        schema = spec.json_schema
        where = f"contracts[{i}]"
        if spec.json_schema_file is not None:
            path = Path(self.deps.policy_dir) / spec.json_schema_file
            try:
                schema = _load_schema(path)
            except (OSError, ValueError, yaml.YAMLError) as exc:
                raise ConfigError(f"schema: {where}: cannot read {path}: {exc}") from exc
        try:
            compiled = compile_schema(schema, where, spec.strict) if schema is not None else None
        except SchemaInvalid as exc:
            raise ConfigError(f"schema: {where}: {exc}") from exc
        matcher = Matcher(spec.match) if spec.match is not None else None
        allowed = frozenset(spec.allowed_tools) if spec.allowed_tools is not None else None
        return _Contract(matcher, compiled, allowed)

    # -- request side ------------------------------------------------------------------
    def _check_limits(self, req: ChatRequest, ctx: RequestContext) -> None:
        limits = self.config.request
        if limits is None:
            return
        body = req.body

        def refuse(rule: str, message: str, param: str | None = None) -> Rejected:
            ctx.record(rule, "block", detail={"param": param} if param else None)
            return Rejected(message, code=rule, param=param)

        if self._models is not None and not self._models.matches(ctx):
            raise refuse("model_not_allowed", "This model is not allowed by policy.", "model")
        if limits.max_tokens is not None:
            for name in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
                value = body.get(name)
                if isinstance(value, int) and value > limits.max_tokens:
                    raise refuse("max_tokens_exceeded", f"{name} may be at most {limits.max_tokens}.", name)
        items = body.get("input" if req.route is Route.RESPONSES else "messages")
        count = len(items) if isinstance(items, list) else 1
        if limits.max_messages is not None and count > limits.max_messages:
            name = "input" if req.route is Route.RESPONSES else "messages"
            raise refuse("too_many_messages", f"At most {limits.max_messages} {name} are allowed.", name)
        tools = body.get("tools")
        if limits.max_tools is not None and isinstance(tools, list) and len(tools) > limits.max_tools:
            raise refuse("too_many_tools", f"At most {limits.max_tools} tools are allowed.", "tools")
        for name in limits.required_fields:
            if body.get(name) is None:
                raise refuse("missing_required_field", f"The field {name!r} is required by policy.", name)

    def _contract(self, ctx: RequestContext) -> _Contract | None:
        for contract in self.contracts:
            if contract.matcher is None or contract.matcher.matches(ctx):
                return contract
        return None

    async def on_request(self, req: ChatRequest, ctx: RequestContext) -> Reply | None:
        if req.route not in _ROUTES:
            return None
        self._check_limits(req, ctx)
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
        contract = self._contract(ctx)
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
            _add_flag(ctx)  # in shadow the chain drops the header with the step's other effects
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
        return _SchemaStream(self, plan, ctx, settled if settled is not None and settled.stream else None)

    # -- repair loop -------------------------------------------------------------------
    def wrap(self, inner: Upstream) -> Upstream:
        return _Repairing(self, inner)


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


class _SchemaStream:
    """Per-request stream filter.

    With the wrapper's verdict (``buffer``, enforce) it acts on the first event, before any
    byte reached the client, so a rejection is still a proper HTTP 502. Without one
    (``validate_at_end``, or shadow) it assembles the stream and acts at the end: a rejection
    then becomes the in-band error event.
    """

    def __init__(
        self, plugin: SchemaPlugin, plan: Plan, ctx: RequestContext, settled: _Settled | None
    ) -> None:
        self._plugin = plugin
        self._plan = plan
        self._ctx = ctx
        self._settled = settled
        self._acted = False
        self._assembler = StreamAssembler() if settled is None else None
        self._normalized = dict(settled.verdict.normalized) if settled is not None else {}
        self._responses = ctx.route is Route.RESPONSES
        self._where: dict[int, tuple[int, Any]] = {}  # choice -> (event index, meta) of its text

    async def on_event(self, event: StreamEvent) -> Sequence[StreamEvent]:
        if self._assembler is not None:
            self._assembler.feed(event)
            return [event]
        if not self._acted:
            self._acted = True
            assert self._settled is not None
            self._plugin.act(self._plan, self._settled.verdict, self._settled.attempts, self._ctx)
        if not self._normalized:
            return [event]
        # Lenient extraction found clean JSON: swallow the text as it came, and put the clean
        # JSON where the text ends (chat: before the choice's finish; Responses: before the
        # first "done" event, which the codec then patches to what the client really got).
        if isinstance(event, TextDelta):
            choice = 0 if self._responses else event.index
            if choice not in self._normalized:
                return [event]
            self._where.setdefault(choice, (event.index, event.meta))
            role = ((event.extra or {}).get("delta") or {}).get("role")
            return [TextDelta(event.index, "", {"delta": {"role": role}}, event.meta)] if role else []
        if isinstance(event, Finish) and event.index in self._normalized:
            return [*self._release(event.index), event]
        if isinstance(event, RawEvent) and event.event in _TEXT_DONE:
            return [*self._release(None), event]
        return [event]

    def _release(self, choice: int | None) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for key in sorted(self._normalized) if choice is None else [choice]:
            text = self._normalized.pop(key)
            index, meta = self._where.get(key, (key, None))
            out.append(TextDelta(index, text, None, meta))
        return out

    async def on_end(self) -> Sequence[StreamEvent]:
        if self._assembler is not None:
            verdict = evaluate(self._plan, self._assembler.output())
            self._plugin.act(self._plan, verdict, 1, self._ctx)
            return []
        return self._release(None)


def _tokens(usage: dict[str, Any] | None) -> dict[str, int]:
    return {k: v for k, v in (usage or {}).items() if k.endswith("_tokens") and isinstance(v, int)}


class _Repairing:
    """The repair loop (see module doc). One per revision; per-request state stays in locals."""

    def __init__(self, plugin: SchemaPlugin, inner: Upstream) -> None:
        self._plugin = plugin
        self._cfg = plugin.config
        self._inner = inner

    async def send(self, request: UpstreamRequest, ctx: RequestContext) -> UpstreamResponse:
        plan = ctx.get(self._plugin.plan_key)
        if (
            plan is None
            or request.route not in _ROUTES
            or (request.stream and self._cfg.stream != "buffer")
            or not isinstance(request.body, bytes)
        ):
            return await self._inner.send(request, ctx)
        route = Route.CHAT if request.route is Route.MESSAGES else request.route
        current, body_json = request, None
        spent: dict[str, int] = {}
        attempt = 0
        while True:
            attempt += 1
            resp = await self._inner.send(current, ctx)
            ctype = next((v for k, v in resp.headers if k.lower() == "content-type"), "")
            is_sse = "text/event-stream" in ctype
            if resp.status >= 400 or is_sse != request.stream:
                return resp  # an error, or not what we can assemble: later hooks see it as is
            data = await _read_all(resp, request.deadline)
            try:
                output = output_from_sse(data, route) if is_sse else _parse_output(data, route)
            except orjson.JSONDecodeError:
                return BufferedResponse(resp.status, resp.headers, data)
            verdict = evaluate(plan, output)
            for key, value in _tokens(output.usage).items():
                spent[key] = spent.get(key, 0) + value
            used = spent.get("total_tokens", 0) or output.total_tokens()
            stop = None if verdict.ok else self._stop_reason(attempt, used, request)
            if not verdict.ok and self._cfg.on_failure == "repair":  # each repair attempt is a record
                action = "repair" if stop is None else "stop"
                detail = {"attempt": attempt, "target": ctx.target, "tokens": used, **verdict.detail()}
                ctx.record("invalid_attempt", action, detail={**detail, **({"reason": stop} if stop else {})})
            if verdict.ok or stop is not None:
                if attempt > 1 and not is_sse:
                    data = _with_usage(data, spent)
                ctx.set(self._plugin.settled_key, _Settled(data, verdict, attempt, is_sse))
                return BufferedResponse(resp.status, resp.headers, data)
            if body_json is None:
                body_json = orjson.loads(request.body)
            current = self._next(request, repair_body(body_json, route, output, verdict), attempt)

    def _stop_reason(self, attempt: int, used: int, request: UpstreamRequest) -> str | None:
        cfg = self._cfg
        if cfg.on_failure != "repair":
            return "policy"
        if attempt > cfg.max_repairs:
            return "max_repairs"
        if request.deadline is not None and _now() >= request.deadline:
            return "deadline"
        if cfg.repair_token_budget is not None and used >= cfg.repair_token_budget:
            return "token_budget"
        return None

    def _next(self, request: UpstreamRequest, body: bytes, attempt: int) -> UpstreamRequest:
        if self._cfg.repair_target == "next" and len(request.candidates) > 1:
            candidates = (
                request.candidates[attempt % len(request.candidates) :]
                + request.candidates[: attempt % len(request.candidates)]
            )
            return replace(request, body=body, candidates=candidates, target=candidates[0])
        return replace(request, body=body)


def _parse_output(data: bytes, route: Route) -> Output:
    parsed = orjson.loads(data)
    if not isinstance(parsed, dict):
        raise orjson.JSONDecodeError("not an object", "", 0)
    return output_from_body(parsed, route)


def _with_usage(data: bytes, spent: dict[str, int]) -> bytes:
    """Usage of every attempt, so budgets charge what the repairs really cost."""
    if not spent:
        return data
    body = orjson.loads(data)
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return data
    body["usage"] = {**usage, **spent}
    return orjson.dumps(body)


async def _read_all(resp: UpstreamResponse, deadline: float | None) -> bytes:
    """The whole answer (a stream included), within the request's deadline."""
    try:
        if deadline is None:
            return await resp.read()
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            return await resp.read()
    except TimeoutError:
        raise UpstreamTimeout("The request deadline was exceeded.", code="deadline_exceeded") from None
    finally:
        await resp.aclose()
