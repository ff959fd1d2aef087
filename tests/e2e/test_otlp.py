"""Traces reach a real OTLP/HTTP receiver on loopback, configured only by ``OTEL_*`` variables."""

from __future__ import annotations

import gzip
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.harness import serve_in_thread, sidecar_harness

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


class Receiver:
    """A minimal OTLP/HTTP trace receiver: decodes every ``POST /v1/traces`` protobuf body."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.content_types: list[str] = []
        self._lock = threading.Lock()

    async def traces(self, request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        with self._lock:
            self.content_types.append(request.headers.get("content-type", ""))
            self.requests.append(ExportTraceServiceRequest.FromString(body))
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) for every span received."""
        out = []
        with self._lock:
            for req in self.requests:
                for rs in req.resource_spans:
                    resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                    out.extend((resource, span) for ss in rs.scope_spans for span in ss.spans)
        return out


def _attrs(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in span.attributes:
        v = a.value
        out[a.key] = getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None
    return out


def test_spans_are_exported_over_otlp_http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = Receiver()
    app = Starlette(routes=[Route("/v1/traces", receiver.traces, methods=["POST"])])
    with serve_in_thread(app, lifespan="off") as collector:
        monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector)  # the exporter adds /v1/traces
        monkeypatch.setenv("OTEL_SERVICE_NAME", "sidecar-under-test")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        plugins = "- {type: blocklist, id: secrets, keywords: [password], action: redact}\n"
        with sidecar_harness(tmp_path, plugins) as h:
            assert h.sidecar.telemetry is not None and h.sidecar.telemetry.tracing.exporter == "otlp"
            r = httpx.post(
                f"{h.v1}/chat/completions",
                json={"model": "gpt-4o", "messages": [{"role": "user", "content": "my password"}]},
                headers={"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"},
                timeout=20,
            )
            assert r.status_code == 200
            for _ in range(300):  # the batch processor exports every 50 ms
                if any(s.kind == s.SPAN_KIND_SERVER for _, s in receiver.spans()):
                    break
                time.sleep(0.02)
    spans = receiver.spans()
    assert receiver.content_types and receiver.content_types[0] == "application/x-protobuf"
    [(resource, root)] = [(res, s) for res, s in spans if s.kind == s.SPAN_KIND_SERVER]
    assert resource["service.name"] == "sidecar-under-test"
    assert root.name == "POST /v1/chat/completions"
    assert root.trace_id.hex() == TRACE_ID and root.parent_span_id.hex() == "b7ad6b7169203331"
    attrs = _attrs(root)
    assert attrs["gen_ai.request.model"] == "gpt-4o" and attrs["gen_ai.usage.output_tokens"] > 0
    names = {s.name for _, s in spans}
    assert {"on_request secrets", "chat gpt-4o"} <= names
    assert all(s.trace_id.hex() == TRACE_ID for _, s in spans)
