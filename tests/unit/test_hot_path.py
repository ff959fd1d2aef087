"""The per-request shortcuts of the chain routes and metrics behave like the slow paths they replace."""

from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.requests import ClientDisconnect, Request

from proxy.chain.context import RequestContext
from proxy.chain.plugin import Outcome
from proxy.errors import InvalidRequest
from proxy.models.chat import Route
from proxy.observability.config import MetricsConfig
from proxy.observability.metrics import Metrics
from proxy.routes.common import Inbound, forward_headers, read_body, request_id
from proxy.server import tune_gc


def _request(
    headers: list[tuple[str, str]], chunks: list[bytes] | None = None, disconnect: bool = False
) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "query_string": b"",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
    }
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks or []) - 1}
        for i, c in enumerate(chunks or [])
    ]
    if disconnect:
        messages = [{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return Request(scope, receive)


HEADERS = [
    ("host", "sidecar"),
    ("content-type", "application/json"),
    ("content-length", "12"),
    ("x-request-id", "client-id-1"),
    ("x-request-id", "second"),
    ("connection", "keep-alive, x-hop"),
    ("x-hop", "1"),
    ("accept-encoding", "gzip"),
    ("authorization", "Bearer k"),
    ("x-tenant-id", "acme"),
]


def test_inbound_matches_the_header_lookups_it_replaces() -> None:
    request = _request(HEADERS)
    inbound = Inbound(request)
    assert inbound.forward == forward_headers(request)
    assert ("x-hop", "1") not in inbound.forward  # named by Connection
    assert inbound.content_length == request.headers.get("content-length") == "12"
    assert inbound.content_type == "application/json"
    assert inbound.request_id == "client-id-1"  # the first value, as Headers.get
    assert request_id(request) == "client-id-1"


def test_inbound_without_optional_headers() -> None:
    inbound = Inbound(_request([("host", "h")]))
    assert (inbound.content_length, inbound.content_type, inbound.request_id) == (None, None, None)
    assert inbound.forward == []


def test_read_body_joins_chunks_and_keeps_the_body_on_the_request() -> None:
    request = _request([], [b'{"a":', b"", b"1}"])
    body = asyncio.run(read_body(request, 100, None))
    assert body == b'{"a":1}'
    assert asyncio.run(request.body()) == body  # Starlette's own reader sees the same bytes
    assert asyncio.run(read_body(request, 100)) == body


def test_read_body_limits_and_disconnects() -> None:
    with pytest.raises(InvalidRequest) as too_large:
        asyncio.run(read_body(_request([], [b"x" * 10, b"y" * 10]), 15, None))
    assert too_large.value.status == 413
    with pytest.raises(InvalidRequest) as declared:
        asyncio.run(read_body(_request([], [b"{}"]), 15, "99"))
    assert declared.value.status == 413
    with pytest.raises(InvalidRequest):
        asyncio.run(read_body(_request([], [b"{}"]), 15, "1x"))
    with pytest.raises(ClientDisconnect):
        asyncio.run(read_body(_request([], disconnect=True), 15, None))


def _observe(metrics: Metrics, cfg: MetricsConfig, model: str, *, attempts: int = 1) -> None:
    ctx = RequestContext("r", Route.CHAT, {}, "rev", model)
    ctx.target, ctx.attempts, ctx.upstream_s = "default", attempts, 0.002
    usage = {"prompt_tokens": 10, "completion_tokens": 3}
    metrics.observe(SimpleNamespace(metrics=cfg), ctx, Outcome(200, usage=usage, latency_ms=5.0))  # type: ignore[arg-type]


def test_metrics_reuse_resolved_series_and_create_them_lazily() -> None:
    metrics = Metrics(SimpleNamespace())  # type: ignore[arg-type]
    cfg = MetricsConfig()
    _observe(metrics, cfg, "gpt-4o", attempts=0)
    assert metrics.attempts.values == {} and metrics.overhead.values == {}  # not observed yet
    _observe(metrics, cfg, "gpt-4o")
    _observe(metrics, cfg, "gpt-4o")
    assert metrics.requests.values[("chat.completions", "200", "gpt-4o", "default")][0] == 3
    assert sum(metrics.duration.values[("chat.completions", "false")][:-2]) == 3
    assert metrics.attempts.values[("chat.completions",)][0] == 2
    assert sum(metrics.overhead.values[("chat.completions",)][:-2]) == 2
    assert metrics.tokens.values[("", "gpt-4o", "input")][0] == 30
    assert metrics.tokens.values[("", "gpt-4o", "output")][0] == 9


def test_metrics_label_caps_follow_a_new_revision() -> None:
    metrics = Metrics(SimpleNamespace())  # type: ignore[arg-type]
    one = MetricsConfig(max_models=1)
    _observe(metrics, one, "a")
    _observe(metrics, one, "b")  # over the cap: "other"
    _observe(metrics, one, "b")
    assert metrics.requests.values[("chat.completions", "200", "other", "default")][0] == 2
    _observe(metrics, MetricsConfig(max_models=5), "b")  # a reload raised the cap
    assert metrics.requests.values[("chat.completions", "200", "b", "default")][0] == 1


def test_tune_gc() -> None:
    before = gc.get_threshold()
    try:
        tune_gc(0)
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0
        tune_gc(12_345)
        assert gc.get_threshold() == (12_345, before[1], before[2])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
