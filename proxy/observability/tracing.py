"""OpenTelemetry tracing: a span per request, per plugin hook that did work, per upstream attempt.

Process-wide setup (``Tracing.from_env``) follows the standard environment variables:

* ``OTEL_TRACES_EXPORTER``: ``otlp`` (OTLP over HTTP/protobuf, batched), ``console``, ``none``,
  or ``memory`` (an in-process ring of finished spans, for tests and the benchmark). Unset, it
  is ``otlp`` when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is
  set, else ``none``. The OTLP exporter reads its own ``OTEL_EXPORTER_OTLP_*`` settings
  (endpoint, headers, timeout, compression); ``OTEL_SERVICE_NAME`` and
  ``OTEL_RESOURCE_ATTRIBUTES`` name the service (default ``policy-sidecar``).
* The sampling ratio is the policy's (``observability.tracing.sample_ratio``), so it reloads
  with the policy; ``OTEL_TRACES_SAMPLER`` is not read. A client's W3C ``traceparent`` is
  continued, and its sampled flag wins over the ratio (parent-based sampling).

Per request the decision is made once, when the request starts: an unsampled request carries
``ctx.trace = None`` and every later hook costs one ``is None`` check. A client's
``traceparent`` on an unsampled request is forwarded upstream untouched, like any header.

A sampled request's spans are recorded as plain values and become SDK ``ReadableSpan``s handed
to the span processor when the request finishes (``RequestTrace``): the SDK's live spans cost
several times more than the rest of the tracing, for features this code does not use.

Span shapes follow the OpenTelemetry GenAI semantic conventions: the request span (SERVER,
``POST /v1/chat/completions``) and each attempt span (CLIENT, ``chat gpt-4o``) carry
``gen_ai.operation.name``, ``gen_ai.request.model``, ``gen_ai.response.model`` and
``gen_ai.usage.*_tokens``; decision records are events on the request span. Prompt and
completion text are added only when the policy sets ``observability.tracing.content``.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from proxy.models.chat import Route
from proxy.observability import content as content_capture
from proxy.observability.timing import input_tokens, output_tokens

if TYPE_CHECKING:
    from proxy.chain.context import RequestContext
    from proxy.chain.decisions import Decision
    from proxy.chain.plugin import Outcome
    from proxy.chain.trace import HookRecord
    from proxy.models.upstream import Candidate, UpstreamRequest
    from proxy.policy.compiler import CompiledPolicy

log = logging.getLogger("policy_sidecar.tracing")

#: GenAI operation per route (``gen_ai.operation.name``); the Responses API is a chat operation.
OPERATIONS = {
    Route.CHAT: "chat",
    Route.RESPONSES: "chat",
    Route.MESSAGES: "chat",
    Route.EMBEDDINGS: "embeddings",
}
#: ``gen_ai.provider.name`` per upstream ``provider:``.
PROVIDERS = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
}
MEMORY_SPANS = 10_000
#: A hook that changed nothing still gets a span when it took this long (its time matters).
HOOK_SPAN_MIN_NS = 100_000


class MemoryExporter(SpanExporter):
    """The finished spans, newest last, at most ``keep`` of them (a long benchmark stays bounded).

    Like the SDK's ``InMemorySpanExporter`` (same ``get_finished_spans`` / ``clear``), but a ring:
    a server running for minutes with ``OTEL_TRACES_EXPORTER=memory`` must not grow without end.
    """

    def __init__(self, keep: int = MEMORY_SPANS) -> None:
        self._spans: deque[ReadableSpan] = deque(maxlen=keep)
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._spans.extend(spans)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def get_finished_spans(self) -> tuple[ReadableSpan, ...]:
        return tuple(self._spans)

    def clear(self) -> None:
        self._spans.clear()

    def shutdown(self) -> None:
        return None


class _ExportNow(SpanProcessor):
    """Hands each finished span straight to an in-process exporter (``memory``).

    ``SimpleSpanProcessor`` does the same plus, per span, a context attach/detach that keeps
    instrumentation from tracing the exporter's own network calls, and its self-metrics: an
    in-memory ring makes no calls, so that is a few µs per span for nothing.
    """

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter

    def on_end(self, span: ReadableSpan) -> None:
        self.exporter.export((span,))

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _exporter_name() -> str:
    name = os.environ.get("OTEL_TRACES_EXPORTER", "").split(",")[0].strip().lower()
    if name:
        return name
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    return "none"


def _resource() -> Resource:
    attrs: dict[str, str] = {}
    if not os.environ.get("OTEL_SERVICE_NAME") and "service.name=" not in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attrs["service.name"] = "policy-sidecar"
    return Resource.create(attrs)


class Tracing:
    """The process's span pipeline; ``enabled`` is False when no exporter is configured.

    ``processor`` is the span processor the finished spans are handed to (batching for OTLP and
    the console, synchronous for ``memory``); ``provider`` owns it (``shutdown`` flushes it) and
    names the service (``resource``).
    """

    def __init__(
        self,
        exporter: str,
        provider: TracerProvider | None,
        memory: MemoryExporter | None,
        processor: SpanProcessor | None,
    ) -> None:
        self.exporter = exporter
        self.provider = provider
        self.memory = memory
        self.processor = processor if provider is not None else None
        self.enabled = self.processor is not None
        self.resource = provider.resource if provider is not None else Resource.get_empty()

    @classmethod
    def disabled(cls) -> Tracing:
        return cls("none", None, None, None)

    @classmethod
    def from_env(cls) -> Tracing:
        name = _exporter_name()
        if name == "none":
            return cls.disabled()
        memory: MemoryExporter | None = None
        processor: SpanProcessor
        if name == "otlp":
            protocol = (
                os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf"
            )
            if protocol.strip().lower() != "http/protobuf":
                log.error(
                    "OTLP protocol %r is not supported (only http/protobuf, port 4318): tracing is off",
                    protocol,
                )
                return cls.disabled()
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            processor = BatchSpanProcessor(OTLPSpanExporter())
        elif name == "console":
            processor = BatchSpanProcessor(ConsoleSpanExporter())
        elif name == "memory":
            memory = MemoryExporter()
            processor = _ExportNow(memory)
        else:
            log.error(
                "OTEL_TRACES_EXPORTER=%r is not supported (otlp, console, none, memory): tracing is off", name
            )
            return cls.disabled()
        provider = TracerProvider(resource=_resource(), sampler=ALWAYS_ON, shutdown_on_exit=False)
        provider.add_span_processor(processor)
        log.info("tracing on", extra={"exporter": name})
        return cls(name, provider, memory, processor)

    def shutdown(self) -> None:
        """Flush and stop the exporter (batched spans are sent before the process exits)."""
        if self.provider is not None:
            self.provider.shutdown()

    # -- per request -----------------------------------------------------------------------
    def begin(
        self, ctx: RequestContext, headers: Mapping[str, str], policy: CompiledPolicy, body: Mapping[str, Any]
    ) -> None:
        """Decide sampling and, when sampled, start recording the request (``ctx.trace``).

        An unsampled request never touches the SDK: the decision is the client's sampled flag
        (parsed by ``parse_traceparent``) or one ``random.random()`` against the ratio.
        """
        processor = self.processor
        if processor is None:
            return
        parent: SpanContext | None = None
        if "traceparent" in headers:
            parent = parse_traceparent(headers["traceparent"], headers.get("tracestate"))
        if parent is not None:
            if not parent.trace_flags & TraceFlags.SAMPLED:
                return
        else:
            ratio = policy.trace_ratio
            if ratio < 1.0 and (ratio <= 0.0 or random.random() >= ratio):
                return
        route = "/v1/" + ctx.route.value.replace(".", "/")
        attrs: dict[str, Any] = {
            "http.request.method": "POST",
            "http.route": route,
            "gen_ai.operation.name": OPERATIONS.get(ctx.route, "chat"),
            "gen_ai.request.model": ctx.model,
            "sidecar.request_id": ctx.request_id,
            "sidecar.revision": ctx.revision,
            "sidecar.stream": ctx.stream,
        }
        for key, attr in _REQUEST_PARAMS:
            value = body.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attrs[attr] = value
        ctx.trace = RequestTrace(
            processor, self.resource, f"POST {route}", attrs, parent, policy.trace_content, ctx.started
        )


_REQUEST_PARAMS = (
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("max_completion_tokens", "gen_ai.request.max_tokens"),
    ("max_output_tokens", "gen_ai.request.max_tokens"),
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
)
# W3C Trace Context ``traceparent`` (the same grammar the SDK's propagator accepts).
_TRACEPARENT = re.compile(r"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*|[ \t]*)")
_TRACEPARENT_MAX = 512
_TRACESTATE_MAX = 512
_NO_TRACE = "0" * 32
_NO_SPAN = "0" * 16
_ERROR = Status(StatusCode.ERROR)
_UNSET = Status(StatusCode.UNSET)
_SCOPE = InstrumentationScope("policy_sidecar")
_SERVER, _CLIENT, _INTERNAL = SpanKind.SERVER, SpanKind.CLIENT, SpanKind.INTERNAL


def parse_traceparent(value: str, tracestate: str | None = None) -> SpanContext | None:
    """The client's span from a W3C ``traceparent`` (and ``tracestate``), or None if invalid.

    Written out rather than going through ``TraceContextTextMapPropagator.extract`` and
    ``get_current_span``: the same checks (version ``ff`` and extra fields on version ``00``
    refused, all-zero ids refused) with one regex match, without building the propagator's
    ``Context`` and non-recording span only to read the ``SpanContext`` back out of them.
    """
    if len(value) > _TRACEPARENT_MAX:
        return None
    found = _TRACEPARENT.fullmatch(value)
    if found is None:
        return None
    version, trace_id, span_id, flags, rest = found.groups()
    if (
        trace_id == _NO_TRACE
        or span_id == _NO_SPAN
        or version == "ff"
        or (version == "00" and rest[:1] == "-")
    ):
        return None
    state = None
    if tracestate and len(tracestate) <= _TRACESTATE_MAX:
        state = TraceState.from_header([tracestate])
    return SpanContext(
        int(trace_id, 16),
        int(span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(flags, 16)),
        trace_state=state,
    )


def _span_id() -> int:
    """A random non-zero span id (as the SDK's ``RandomIdGenerator``)."""
    while True:
        span_id = random.getrandbits(64)
        if span_id:
            return span_id


def _trace_id() -> int:
    while True:
        trace_id = random.getrandbits(128)
        if trace_id:
            return trace_id


class Attempt:
    """An upstream attempt in flight: its span's id, start and attributes (the span comes at its end)."""

    __slots__ = ("attrs", "name", "span_id", "started_ns")

    def __init__(self, name: str, span_id: int, attrs: dict[str, Any]) -> None:
        self.name = name
        self.span_id = span_id
        self.attrs = attrs
        self.started_ns = time.perf_counter_ns()


class RequestTrace:
    """The spans of one sampled request, recorded as plain values; lives in ``ctx.trace``.

    Why not the SDK's ``Tracer.start_span`` / ``Span.end``: a live SDK span is a mutable,
    locked object whose every attribute goes through validation (``BoundedAttributes``) and
    which is copied into a ``ReadableSpan`` when it ends; with ~15 attributes that costs
    40-60 µs per span on a 2-core machine, and nothing here needs a live span (no code reads
    the "current" span; each span's start and end are measured anyway). So the ids are drawn
    here (as the SDK's random id generator does), the attributes are built once from values
    whose types are known (str, bool, int, float: what the SDK would keep unchanged), and
    each finished span is an SDK ``ReadableSpan`` handed to the configured span processor,
    the same object and the same path (``SpanProcessor.on_end`` -> exporter) the SDK uses.
    (``ReadableSpan``'s constructor is public API, though the SDK expects its own tracer to be
    the one calling it; the memory-exporter and OTLP tests check what comes out the other end,
    so an SDK upgrade that changed it would fail there.)

    Every span of the request reaches the processor when the request finishes (``finish``),
    children first: the hook and attempt spans are built as they end, from timestamps taken
    around them (``perf_counter_ns``, converted to epoch nanoseconds once per request).
    """

    __slots__ = (
        "attrs",
        "content",
        "context",
        "epoch_ns",
        "input_messages",
        "name",
        "output_messages",
        "parent",
        "processor",
        "resource",
        "spans",
        "start_ns",
    )

    def __init__(
        self,
        processor: SpanProcessor,
        resource: Resource,
        name: str,
        attrs: dict[str, Any],
        parent: SpanContext | None,
        content: str,
        started: float,
    ) -> None:
        self.processor = processor
        self.resource = resource
        self.name = name
        self.attrs = attrs
        self.parent = parent
        self.content = content  # none | redacted | full
        self.epoch_ns = time.time_ns() - time.perf_counter_ns()  # perf_counter_ns -> span time
        self.start_ns = self.epoch_ns + int(started * 1e9)  # ``started``: perf_counter seconds
        if parent is None:
            # A new trace: sampled, and its id random (W3C level 2 flag, as the SDK sets it).
            flags = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)
            self.context = SpanContext(_trace_id(), _span_id(), False, flags)
        else:
            flags = TraceFlags(TraceFlags.SAMPLED | (parent.trace_flags & TraceFlags.RANDOM_TRACE_ID))
            self.context = SpanContext(parent.trace_id, _span_id(), False, flags, parent.trace_state)
        self.spans: list[ReadableSpan] = []
        self.input_messages: list[dict[str, str]] | None = None
        self.output_messages: list[dict[str, str]] | None = None

    @property
    def trace_id(self) -> str:
        return f"{self.context.trace_id:032x}"

    def _child(
        self,
        name: str,
        span_id: int,
        kind: SpanKind,
        attrs: dict[str, Any],
        status: Status,
        start_ns: int,
        end_ns: int,
    ) -> None:
        ctx = self.context
        self.spans.append(
            ReadableSpan(
                name,
                SpanContext(ctx.trace_id, span_id, False, ctx.trace_flags, ctx.trace_state),
                ctx,
                self.resource,
                attrs,
                kind=kind,
                status=status,
                start_time=start_ns + self.epoch_ns,
                end_time=end_ns + self.epoch_ns,
                instrumentation_scope=_SCOPE,
            )
        )

    # -- plugin hooks ----------------------------------------------------------------------
    def hook_done(self, record: HookRecord) -> None:
        """A span for a hook that did work, made after the fact from its measured start and end.

        "Did work": it recorded a decision, edited the request or response, answered locally,
        rejected or failed, or took at least ``HOOK_SPAN_MIN_NS``. A step that looked and let
        the request pass untouched in a few microseconds gets no span: a span costs more than
        the step itself, for nothing to see.
        """
        ended = time.perf_counter_ns()
        result, decisions = record.result, record.decisions
        if result == "ok" and not decisions and ended - record.started_ns < HOOK_SPAN_MIN_NS:
            return
        attrs = {
            "sidecar.plugin.id": record.step_id,
            "sidecar.plugin.type": record.plugin_type,
            "sidecar.hook": record.hook,
            "sidecar.mode": record.mode,
            "sidecar.hook.result": result,
            "sidecar.decisions": decisions,
        }
        status = _ERROR if result == "error" else _UNSET
        name = f"{record.hook} {record.step_id}"
        self._child(name, _span_id(), _INTERNAL, attrs, status, record.started_ns, ended)

    # -- upstream attempts -----------------------------------------------------------------
    def start_attempt(
        self, request: UpstreamRequest, target: Candidate, attempt: int, provider: str
    ) -> tuple[Attempt, UpstreamRequest]:
        """Start timing an attempt and put its span's ``traceparent`` on the request sent upstream."""
        operation = OPERATIONS.get(request.route, "chat")
        record = Attempt(
            f"{operation} {target.model}",
            _span_id(),
            {
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": PROVIDERS.get(provider, provider),
                "gen_ai.request.model": target.model,
                "sidecar.upstream": target.upstream,
                "sidecar.attempt": attempt,
            },
        )
        ctx = self.context
        # W3C traceparent, written directly; a client's tracestate is forwarded as it came.
        headers = [(k, v) for k, v in request.headers if k.lower() != "traceparent"]
        headers.append(("traceparent", f"00-{ctx.trace_id:032x}-{record.span_id:016x}-{ctx.trace_flags:02x}"))
        return record, replace(request, headers=headers)

    def end_attempt(self, attempt: Attempt, status: int | None, error: BaseException | None) -> None:
        """The attempt's CLIENT span, from its start to now, with the upstream's status or error."""
        ended = time.perf_counter_ns()
        attrs = attempt.attrs
        span_status = _UNSET
        if status is not None:
            attrs["http.response.status_code"] = status
            if status >= 400:
                attrs["error.type"] = str(status)
                span_status = _ERROR
        if error is not None:
            code = getattr(error, "code", None)
            attrs["error.type"] = code or type(error).__name__
            span_status = Status(StatusCode.ERROR, getattr(error, "message", None) or type(error).__name__)
        self._child(attempt.name, attempt.span_id, _CLIENT, attrs, span_status, attempt.started_ns, ended)

    # -- the end ---------------------------------------------------------------------------
    def finish(self, ctx: RequestContext, outcome: Outcome) -> None:
        """Final attributes and decision events on the request span, then export every span."""
        end_ns = time.perf_counter_ns() + self.epoch_ns
        usage = outcome.usage or ctx.usage
        attrs = self.attrs
        attrs["http.response.status_code"] = outcome.status
        attrs["sidecar.attempts"] = ctx.attempts
        if ctx.target:
            attrs["sidecar.upstream"] = ctx.target
        if ctx.tenant:
            attrs["sidecar.tenant"] = ctx.tenant
        if ctx.response_model:
            attrs["gen_ai.response.model"] = ctx.response_model
        tokens_in, tokens_out = input_tokens(usage), output_tokens(usage)
        if tokens_in is not None:
            attrs["gen_ai.usage.input_tokens"] = tokens_in
        if tokens_out is not None:
            attrs["gen_ai.usage.output_tokens"] = tokens_out
        if ctx.cost_usd is not None:
            attrs["sidecar.cost_usd"] = ctx.cost_usd
        if ctx.first_token_at is not None:
            ttft = ctx.first_token_at - ctx.started
            attrs["gen_ai.server.time_to_first_token"] = ttft
            if tokens_out and tokens_out > 1:
                generating = outcome.latency_ms / 1000 - ttft
                attrs["gen_ai.server.time_per_output_token"] = max(0.0, generating) / (tokens_out - 1)
        if self.content != "none":
            if self.input_messages is not None:
                attrs["gen_ai.input.messages"] = content_capture.render(self.input_messages, self.content)
            if self.output_messages is not None:
                attrs["gen_ai.output.messages"] = content_capture.render(self.output_messages, self.content)
        events = [Event("decision", _decision_event(d), end_ns) for d in ctx.decisions]
        status = _UNSET
        error = outcome.error
        if outcome.status >= 500 or error is not None:
            attrs["error.type"] = (
                (getattr(error, "code", None) or type(error).__name__) if error else str(outcome.status)
            )
            status = _ERROR
        root = ReadableSpan(
            self.name,
            self.context,
            self.parent,
            self.resource,
            attrs,
            events,
            kind=_SERVER,
            status=status,
            start_time=self.start_ns,
            end_time=end_ns,
            instrumentation_scope=_SCOPE,
        )
        on_end = self.processor.on_end
        for span in self.spans:
            on_end(span)
        on_end(root)


def _decision_event(d: Decision) -> dict[str, Any]:
    event: dict[str, Any] = {
        "sidecar.plugin.id": d.plugin,
        "sidecar.decision.rule": d.rule,
        "sidecar.decision.action": d.action,
        "sidecar.decision.mode": d.mode,
    }
    if d.score is not None:
        event["sidecar.decision.score"] = d.score
    if d.threshold is not None:
        event["sidecar.decision.threshold"] = d.threshold
    for key, value in d.detail.items():
        if isinstance(value, (str, bool, int, float)):
            event[f"sidecar.decision.detail.{key}"] = value
    return event
