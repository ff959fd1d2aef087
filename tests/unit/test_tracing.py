"""Spans, checked with the in-process exporter (``OTEL_TRACES_EXPORTER=memory``) on a real sidecar.

A span per request, a child per plugin hook that ran and per upstream attempt (retries and
fallbacks visible), GenAI attributes, decisions as events, no prompt text unless the policy
opts in, and the client's W3C ``traceparent`` continued and propagated upstream.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanContext, SpanKind, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from proxy.chain.context import RequestContext
from proxy.chain.plugin import Outcome
from proxy.chain.trace import HookRecord
from proxy.models.chat import Route
from proxy.observability.timing import carries_token, peek_model, peek_usage
from proxy.observability.tracing import MemoryExporter, RequestTrace, Tracing, parse_traceparent
from tests.harness import SidecarHarness, sidecar_harness

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
SECRET = "sk-" + "A" * 30
PROMPT = f"my email is jane.doe@example.com, card 4111 1111 1111 1111, key {SECRET}"

PLUGINS = f"""
- type: headers
  tenant_header: x-tenant-id
- type: blocklist
  id: secrets
  patterns: ['{SECRET[:3]}[A-Za-z0-9_-]{{20,}}']
  action: redact
- type: blocklist
  id: shadow-words
  mode: shadow
  keywords: [email]
"""


def _memory(h: SidecarHarness) -> MemoryExporter:
    telemetry = h.sidecar.telemetry
    assert telemetry is not None and telemetry.tracing.memory is not None
    return telemetry.tracing.memory


def _wait_spans(h: SidecarHarness, requests: int) -> list[ReadableSpan]:
    """Request spans end after the answer is sent (background task): wait for ``requests`` of them."""
    memory = _memory(h)
    for _ in range(500):
        spans = list(memory.get_finished_spans())
        if sum(1 for s in spans if s.kind is SpanKind.SERVER) >= requests:
            return spans
        time.sleep(0.01)
    raise AssertionError(f"expected {requests} request spans, got {memory.get_finished_spans()}")


def _post(h: SidecarHarness, body: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
    body = body or {"model": "gpt-4o", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 50}
    return httpx.post(f"{h.v1}/chat/completions", json=body, headers=headers, timeout=20)


@pytest.fixture
def traced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SidecarHarness]:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "memory")
    with sidecar_harness(tmp_path, PLUGINS) as h:
        yield h


def test_request_hook_and_attempt_spans_follow_genai_conventions(traced: SidecarHarness) -> None:
    r = _post(traced, **{"x-tenant-id": "acme", "traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"})
    assert r.status_code == 200
    spans = _wait_spans(traced, 1)
    [root] = [s for s in spans if s.kind is SpanKind.SERVER]
    assert root.name == "POST /v1/chat/completions"
    # The client's trace is continued: same trace id, the client's span as parent.
    assert f"{root.context.trace_id:032x}" == TRACE_ID
    assert root.parent is not None and f"{root.parent.span_id:016x}" == CLIENT_SPAN
    attrs = dict(root.attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "gpt-4o"
    assert attrs["gen_ai.response.model"] == "gpt-4o"
    assert attrs["gen_ai.request.max_tokens"] == 50
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["http.response.status_code"] == 200
    assert attrs["sidecar.upstream"] == "default" and attrs["sidecar.tenant"] == "acme"
    assert attrs["sidecar.revision"] == r.headers["x-sidecar-revision"]

    children = [s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id]
    hooks = {s.name: dict(s.attributes or {}) for s in children if s.kind is SpanKind.INTERNAL}
    secrets = hooks["on_request secrets"]
    assert (secrets["sidecar.mode"], secrets["sidecar.hook.result"], secrets["sidecar.decisions"]) == (
        "enforce",
        "edited",
        1,
    )
    assert hooks["on_request shadow-words"]["sidecar.mode"] == "shadow"
    assert hooks["on_request shadow-words"]["sidecar.decisions"] == 1
    [attempt] = [s for s in children if s.kind is SpanKind.CLIENT]
    assert attempt.name == "chat gpt-4o"
    a = dict(attempt.attributes or {})
    assert (a["gen_ai.provider.name"], a["gen_ai.request.model"], a["sidecar.attempt"]) == (
        "openai",
        "gpt-4o",
        1,
    )
    assert a["http.response.status_code"] == 200

    # Decision records are events on the request span, shadow and enforce told apart.
    events = {(e.attributes or {}).get("sidecar.plugin.id"): dict(e.attributes or {}) for e in root.events}
    assert events["secrets"]["sidecar.decision.action"] == "redact"
    assert events["secrets"]["sidecar.decision.mode"] == "enforce"
    assert events["shadow-words"]["sidecar.decision.mode"] == "shadow"

    # Propagated upstream: the attempt span is the upstream call's parent.
    sent = traceparent_sent(traced)
    assert sent == f"00-{TRACE_ID}-{attempt.context.span_id:016x}-01"


def traceparent_sent(h: SidecarHarness) -> str | None:
    return h.fake.requests[-1].headers.get("traceparent")


def test_no_prompt_or_completion_text_in_spans_by_default(traced: SidecarHarness) -> None:
    assert _post(traced).status_code == 200
    spans = _wait_spans(traced, 1)
    dump = repr(
        [(s.name, dict(s.attributes or {}), [dict(e.attributes or {}) for e in s.events]) for s in spans]
    )
    for text in ("jane.doe", "4111 1111", "my email", "Hello from the demo upstream", SECRET):
        assert text not in dump
    root = next(s for s in spans if s.kind is SpanKind.SERVER)
    assert "gen_ai.input.messages" not in (root.attributes or {})


def test_retries_and_fallbacks_each_get_an_attempt_span(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "memory")
    policy = (
        "version: 1\nupstreams:\n  primary:\n    base_url: {upstream}\n  backup:\n    base_url: {upstream}\n"
        "default_upstream: primary\nroutes:\n  - match: '*'\n    targets: [primary, backup]\n"
        "plugins:\n  - type: fallback\n"
        "  - {type: retry, max_attempts: 2, base_delay: 0.001, max_delay: 0.002}\n"
    )
    with sidecar_harness(tmp_path, policy=policy) as h:
        h.fake.push({"status": 503}, {"status": 503})
        r = _post(h)
        assert r.status_code == 200 and r.headers["x-sidecar-upstream"] == "backup"
        spans = _wait_spans(h, 1)
        root = next(s for s in spans if s.kind is SpanKind.SERVER)
        attempts = sorted((s for s in spans if s.kind is SpanKind.CLIENT), key=lambda s: s.start_time or 0)
        seen = [
            (
                (s.attributes or {})["sidecar.upstream"],
                (s.attributes or {})["sidecar.attempt"],
                (s.attributes or {})["http.response.status_code"],
            )
            for s in attempts
        ]
        assert seen == [("primary", 1, 503), ("primary", 2, 503), ("backup", 3, 200)]
        assert all(s.parent is not None and s.parent.span_id == root.context.span_id for s in attempts)
        assert attempts[0].status.status_code.name == "ERROR"
        assert (root.attributes or {})["sidecar.attempts"] == 3
        actions = [(e.attributes or {})["sidecar.decision.action"] for e in root.events]
        assert actions == ["retry", "reroute"]
        # Each attempt carried its own span as the upstream parent.
        parents = [req.headers["traceparent"].split("-")[2] for req in h.fake.requests]
        assert parents == [f"{s.context.span_id:016x}" for s in attempts]


def test_sampling_ratio_and_parent_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "memory")
    with sidecar_harness(tmp_path, extra="observability:\n  tracing:\n    sample_ratio: 0\n") as h:
        unsampled = f"00-{TRACE_ID}-{CLIENT_SPAN}-00"
        assert _post(h, traceparent=unsampled).status_code == 200
        assert _post(h).status_code == 200
        # Not sampled: no spans, and the client's traceparent goes upstream untouched.
        assert traceparent_sent(h) is None
        assert h.fake.requests[0].headers["traceparent"] == unsampled
        # A sampled parent wins over the ratio (parent-based sampling).
        assert _post(h, traceparent=f"00-{TRACE_ID}-{CLIENT_SPAN}-01").status_code == 200
        spans = _wait_spans(h, 1)
        assert [s.name for s in spans if s.kind is SpanKind.SERVER] == ["POST /v1/chat/completions"]


def test_streams_record_time_to_first_token_without_a_span_per_chunk(traced: SidecarHarness) -> None:
    body = {
        "model": "gpt-4o",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "tell me a story"}],
    }
    traced.fake.push({"content": "once upon a time " * 10, "chunk_size": 4})
    with httpx.stream("POST", f"{traced.v1}/chat/completions", json=body, timeout=20) as r:
        assert r.status_code == 200
        text = "".join(r.iter_text())
    assert text.count("data:") > 10
    spans = _wait_spans(traced, 1)
    root = next(s for s in spans if s.kind is SpanKind.SERVER)
    attrs = dict(root.attributes or {})
    assert 0 < attrs["gen_ai.server.time_to_first_token"] <= (root.end_time - root.start_time) / 1e9  # type: ignore[operator]
    assert attrs["gen_ai.usage.output_tokens"] > 1
    assert attrs["gen_ai.server.time_per_output_token"] >= 0
    # One request span, its hook spans and one attempt: no span per chunk.
    assert len(spans) <= 1 + 3 + 1


def test_content_is_captured_redacted_only_when_the_policy_opts_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "memory")
    with sidecar_harness(tmp_path, extra="observability:\n  tracing:\n    content: redacted\n") as h:
        assert _post(h).status_code == 200
        root = next(s for s in _wait_spans(h, 1) if s.kind is SpanKind.SERVER)
        sent = str((root.attributes or {})["gen_ai.input.messages"])
        answer = str((root.attributes or {})["gen_ai.output.messages"])
    assert "my email is [EMAIL], card #### #### #### ####, key [TOKEN]" in sent
    assert "jane.doe" not in sent and SECRET not in sent and "4111" not in sent
    assert "Hello from the demo upstream" in answer


def test_tracing_is_off_without_an_exporter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert not Tracing.from_env().enabled
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert Tracing.from_env().exporter == "otlp"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")  # not supported: off, with an error log
    assert not Tracing.from_env().enabled
    with sidecar_harness(tmp_path) as h:
        assert h.sidecar.telemetry is not None and not h.sidecar.telemetry.tracing.enabled
        assert _post(h, traceparent=f"00-{TRACE_ID}-{CLIENT_SPAN}-01").status_code == 200
        assert traceparent_sent(h) == f"00-{TRACE_ID}-{CLIENT_SPAN}-01"  # forwarded as any header


def _request_trace(memory: MemoryExporter, parent: SpanContext | None = None) -> RequestTrace:
    return RequestTrace(
        SimpleSpanProcessor(memory), Resource.get_empty(), "root", {}, parent, "none", time.perf_counter()
    )


def test_a_hook_that_did_no_work_gets_no_span() -> None:
    memory = MemoryExporter()
    trace = _request_trace(memory)
    quick = time.perf_counter_ns() + 10**9  # "started" in the future: it took no time at all
    trace.hook_done(HookRecord("looked", "p", "on_request", "enforce", "ok", quick, 0))
    trace.hook_done(HookRecord("flagged", "p", "on_request", "enforce", "ok", quick, 1))
    trace.hook_done(HookRecord("edited", "p", "on_response", "shadow", "edited", quick, 0))
    trace.hook_done(
        HookRecord("slow", "p", "on_request", "enforce", "ok", time.perf_counter_ns() - 200_000, 0)
    )
    trace.hook_done(HookRecord("crashed", "p", "on_request", "enforce", "error", quick, 0))
    trace.finish(RequestContext("r1", Route.CHAT, {}, "rev", "gpt-4o"), Outcome(200))
    spans = memory.get_finished_spans()
    names = [s.name for s in spans]
    assert names == [
        "on_request flagged",
        "on_response edited",
        "on_request slow",
        "on_request crashed",
        "root",
    ]
    root = spans[-1]
    assert all(s.parent == root.context and s.context.trace_id == root.context.trace_id for s in spans[:-1])
    assert len({s.context.span_id for s in spans}) == len(spans)
    assert [s.status.status_code.name for s in spans] == ["UNSET", "UNSET", "UNSET", "ERROR", "UNSET"]
    assert all(s.start_time is not None and s.end_time is not None for s in spans)
    assert spans[2].start_time < spans[2].end_time <= root.end_time  # type: ignore[operator]


@pytest.mark.parametrize(
    "header",
    [
        f"01-{TRACE_ID}-{CLIENT_SPAN}-01-future",  # a later version may add fields
        f"  00-{TRACE_ID}-{CLIENT_SPAN}-01",
        f"00-{TRACE_ID}-{CLIENT_SPAN}-01\t",
    ],
)
def test_traceparent_parsing_accepts_what_the_w3c_propagator_accepts(header: str) -> None:
    expected = TraceContextTextMapPropagator().extract({"traceparent": header})
    parent = parse_traceparent(header)
    assert parent is not None
    assert parent == get_current_span(expected).get_span_context()
    assert parent.is_remote and parent.trace_flags.sampled


@pytest.mark.parametrize(
    "header",
    [
        f"00-{TRACE_ID}-{CLIENT_SPAN}-01-extra",  # version 00 has exactly four fields
        f"ff-{TRACE_ID}-{CLIENT_SPAN}-01",  # version ff is invalid
        f"00-{'0' * 32}-{CLIENT_SPAN}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero span id
        f"00-{TRACE_ID.upper()}-{CLIENT_SPAN}-01",  # upper-case hex
        f"00-{TRACE_ID[:-1]}-{CLIENT_SPAN}-01",
        f"00-{TRACE_ID}-{CLIENT_SPAN}-1",
        f"00-{TRACE_ID}-{CLIENT_SPAN}-01" + " " * 600,  # over the length limit
        "",
        "garbage",
    ],
)
def test_invalid_traceparents_are_ignored_like_the_w3c_propagator_does(header: str) -> None:
    expected = get_current_span(TraceContextTextMapPropagator().extract({"traceparent": header}))
    assert not expected.get_span_context().is_valid
    assert parse_traceparent(header) is None


def test_a_continued_trace_keeps_the_clients_tracestate_and_flags() -> None:
    parent = parse_traceparent(f"00-{TRACE_ID}-{CLIENT_SPAN}-01", "vendor=abc,other=1")
    assert parent is not None and parent.trace_state.get("vendor") == "abc"
    memory = MemoryExporter()
    trace = _request_trace(memory, parent)
    assert trace.trace_id == TRACE_ID
    trace.finish(RequestContext("r1", Route.CHAT, {}, "rev", "gpt-4o"), Outcome(200))
    [root] = memory.get_finished_spans()
    assert root.parent == parent and root.context.trace_state.get("vendor") == "abc"
    assert root.context.trace_flags == 0x01  # the client's flags: sampled, no random-id claim
    fresh = _request_trace(MemoryExporter())
    assert fresh.context.trace_flags == 0x03  # a new trace: sampled + random trace id, as the SDK


def test_answers_are_peeked_not_parsed() -> None:
    body = (
        b'{"id":"x","model":"gpt-4o-2024","choices":[{"message":{"content":"usage: \\"model\\""}}],'
        b'"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19,'
        b'"prompt_tokens_details":{"cached_tokens":0}}}'
    )
    assert peek_model(body) == "gpt-4o-2024"
    assert peek_usage(body) == {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
    assert (peek_model(b"not json"), peek_usage(b"not json")) == (None, {})
    assert not carries_token(b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n')
    assert carries_token(b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n')
    assert carries_token(b'data: {"type":"response.output_text.delta","delta":"Hi"}\n\n')
