"""``GET /metrics`` after real requests, parsed with prometheus_client's own parser."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Route

from proxy.app import build_admin_app, build_app
from proxy.observability.metrics import LATENCY, RequestCounter, RequestHistogram
from tests.harness import SidecarHarness, sidecar_harness

PLUGINS = """
- type: headers
  tenant_header: x-tenant-id
- type: blocklist
  id: secrets
  keywords: [password]
  action: redact
- type: blocklist
  id: watch-words
  mode: shadow
  keywords: [refund]
  scan_response: false
"""


def scrape(h: SidecarHarness) -> dict[str, list[Any]]:
    r = httpx.get(f"{h.base_url}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples.setdefault(s.name, []).append(s)
    return samples


def value(samples: dict[str, list[Any]], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(s.value for s in samples.get(name, []) if labels.items() <= s.labels.items())


def chat(h: SidecarHarness, text: str, tenant: str, stream: bool = False) -> None:
    body: dict[str, Any] = {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream(
        "POST", f"{h.v1}/chat/completions", json=body, headers={"x-tenant-id": tenant}, timeout=20
    ) as r:
        assert r.status_code == 200
        r.read()


def wait_for(h: SidecarHarness, name: str, expected: float, **labels: str) -> dict[str, list[Any]]:
    """Metrics are updated after the answer is sent (background task): poll a little."""
    for _ in range(200):
        samples = scrape(h)
        if value(samples, name, **labels) >= expected:
            return samples
        httpx.get(f"{h.base_url}/healthz")
    raise AssertionError(f"{name}{labels} never reached {expected}: {samples.get(name)}")


def test_requests_decisions_tokens_and_latency(tmp_path: Path) -> None:
    extra = "observability:\n  metrics:\n    tenant_label: hashed\n"
    with sidecar_harness(tmp_path, PLUGINS, extra) as h:
        chat(h, "my password is hunter2, I want a refund", "acme")
        chat(h, "my password is hunter2", "acme")
        chat(h, "hello", "beta")
        chat(h, "a refund please", "beta", stream=True)
        samples = wait_for(h, "sidecar_requests_total", 4)

    route = {"route": "chat.completions"}
    assert (
        value(samples, "sidecar_requests_total", status="200", model="gpt-4o", target="default", **route) == 4
    )
    # Shadow and enforce decisions are separate series.
    assert value(samples, "sidecar_decisions_total", plugin="secrets", action="redact", mode="enforce") == 2
    assert value(samples, "sidecar_decisions_total", plugin="watch-words", mode="shadow") == 2
    assert value(samples, "sidecar_decisions_total", mode="enforce", plugin="watch-words") == 0
    # Tenants are hashed (the policy asked for it), never raw.
    acme = hashlib.sha256(b"acme").hexdigest()[:8]
    assert value(samples, "sidecar_tokens_total", tenant=acme, type="input", model="gpt-4o") > 0
    assert value(samples, "sidecar_tokens_total", tenant=acme, type="output") > 0
    assert not [s for s in samples["sidecar_tokens_total"] if s.labels["tenant"] in ("acme", "beta")]
    # Latency histograms: total for all, overhead for the non-streamed, TTFT for the stream.
    assert value(samples, "sidecar_request_duration_seconds_count", **route) == 4
    assert value(samples, "sidecar_overhead_seconds_count", **route) == 3
    assert value(samples, "sidecar_upstream_duration_seconds_count", target="default") == 4
    assert value(samples, "sidecar_time_to_first_token_seconds_count", **route) == 1
    assert value(samples, "sidecar_upstream_attempts_total", **route) == 4
    # State read at scrape time.
    [info] = samples["sidecar_policy_info"]
    assert len(info.labels["revision"]) == 12
    assert value(samples, "sidecar_policy_reloads_total", result="failed") == 0
    assert "sidecar_event_loop_lag_seconds_count" in samples


def test_piped_stream_gets_ttft_and_tokens_without_parsing(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path) as h:  # empty policy: the stream is piped byte for byte
        h.fake.push({"content": "once upon a time " * 8})
        chat(h, "tell me a story", "x", stream=True)
        samples = wait_for(h, "sidecar_time_to_first_token_seconds_count", 1)
    assert value(samples, "sidecar_tokens_total", type="output", tenant="") > 1
    assert value(samples, "sidecar_time_per_output_token_seconds_count") == 1


def test_retries_fallbacks_circuits_and_reload_results(tmp_path: Path) -> None:
    policy = (
        "version: 1\nupstreams:\n  primary:\n    base_url: {upstream}\n  backup:\n    base_url: {upstream}\n"
        "default_upstream: primary\nroutes:\n  - match: '*'\n    targets: [primary, backup]\n"
        "plugins:\n  - type: fallback\n"
        "  - {type: retry, max_attempts: 2, base_delay: 0.001, max_delay: 0.002}\n"
        "  - {type: circuit_breaker, id: breaker}\n"
    )
    with sidecar_harness(tmp_path, policy=policy) as h:
        h.fake.push({"status": 503}, {"status": 503})
        chat(h, "hi", "t")
        samples = wait_for(h, "sidecar_requests_total", 1)
        h.write_policy("version: 1\nplugins: [{type: nope}]\n")  # a broken edit: counted, not applied
        h.wait_for_revision(lambda info: info["reloads"]["failed"] >= 1)
        after = scrape(h)
    assert value(samples, "sidecar_retries_total", target="primary") == 1
    assert value(samples, "sidecar_fallbacks_total", from_target="primary", to_target="backup") == 1
    assert value(samples, "sidecar_upstream_attempts_total") == 3
    assert value(samples, "sidecar_requests_total", target="backup", status="200") == 1
    assert value(samples, "sidecar_circuit_state", plugin="breaker", target="primary", state="closed") == 1
    assert value(samples, "sidecar_circuit_state", plugin="breaker", target="backup", state="open") == 0
    assert value(after, "sidecar_policy_reloads_total", result="failed") == 1


def test_metrics_live_on_the_admin_port_when_there_is_one(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path) as h:
        api_only = {r.path for r in build_app(h.sidecar, include_admin=False).routes if isinstance(r, Route)}
        admin = {r.path for r in build_admin_app(h.sidecar).routes if isinstance(r, Route)}
    assert "/metrics" in admin and "/metrics" not in api_only


def test_model_labels_are_bounded(tmp_path: Path) -> None:
    extra = "observability:\n  metrics:\n    max_models: 2\n"
    with sidecar_harness(tmp_path, extra=extra) as h:
        for model in ("m1", "m2", "m3", "m4"):
            r = httpx.post(
                f"{h.v1}/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
                timeout=20,
            )
            assert r.status_code == 200
        samples = wait_for(h, "sidecar_requests_total", 4)
    models = {s.labels["model"] for s in samples["sidecar_requests_total"]}
    assert models == {"m1", "m2", "other"}
    assert value(samples, "sidecar_requests_total", model="other") == 2
    # No response hook parsed these answers: usage and model came from a bounded scan of the bytes.
    assert value(samples, "sidecar_tokens_total", model="m1", type="input") > 0
    assert value(samples, "sidecar_tokens_total", model="other", type="output") > 0


def _exposition(registry: CollectorRegistry) -> list[tuple[str, str, list[tuple[str, str]], float]]:
    """(family, sample, labels, value) for every sample, ``_created`` timestamps left out."""
    return sorted(
        (f.name, s.name, sorted(s.labels.items()), s.value)
        for f in text_string_to_metric_families(generate_latest(registry).decode())
        for s in f.samples
        if not s.name.endswith("_created")
    )


def test_lock_free_series_expose_what_prometheus_client_would() -> None:
    """The per-request counters and histograms render exactly like prometheus_client's own."""
    ours, theirs = CollectorRegistry(auto_describe=False), CollectorRegistry(auto_describe=False)
    counter = RequestCounter("x_requests", "doc", ["route", "status"], ours)
    histogram = RequestHistogram("x_seconds", "doc", ["route"], LATENCY, ours)
    ref_counter = Counter("x_requests", "doc", ["route", "status"], registry=theirs)
    ref_histogram = Histogram("x_seconds", "doc", ["route"], buckets=LATENCY, registry=theirs)
    # Bucket edges exactly (amount == le lands in that bucket), beyond the last one, and zero.
    for amount in (0.0, 0.001, 0.0011, 0.0025, 0.3, 30, 120, 500, 0.0009):
        for route in ("chat", "embeddings"):
            histogram.observe((route,), amount)
            ref_histogram.labels(route).observe(amount)
    for key, n in ((("chat", "200"), 3), (("chat", "500"), 1), (("embeddings", "200"), 2.5)):
        counter.inc(key, n)
        ref_counter.labels(*key).inc(n)
    assert _exposition(ours) == _exposition(theirs)
    names = {
        s.name for f in text_string_to_metric_families(generate_latest(ours).decode()) for s in f.samples
    }
    assert {"x_requests_created", "x_seconds_created"} <= names
