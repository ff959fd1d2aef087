"""Sampled capture (``observability.capture``): keep some requests, with their scores, for review.

Why stratified toward the threshold: a uniform 1% sample of traffic where a rule fires on 0.5%
holds almost no positives and almost nothing near the threshold, which is where a label changes
a threshold. So each request is kept with probability

    p = max(base_rate, max over scored rules of  base + (peak - base) * exp(-((score - thr) / band)² / 2))

(independent draws: Poisson sampling). Every record carries ``inclusion`` = p and ``weight`` =
1/p, so ``calibrate`` can re-weight the labelled sample into unbiased (Horvitz-Thompson)
estimates of the rates on the whole traffic.

Why an observer and a thread: the decision to keep is a few float operations on the event loop
after the answer was sent; everything that costs (JSON parsing, the PII engine, encryption, disk)
runs in one writer thread fed by a bounded queue. A full queue drops the record and counts it
(``sidecar_capture_records_total{result="dropped"}``): capture never slows traffic down.

Records are the JSONL that ``replay`` and ``calibrate`` read (``id``, ``route``, ``headers``,
``request``, ``response``; a streamed answer is joined into the same JSON by ``capture_stream``
and noted ``response_streamed`` / ``response_truncated``), plus ``weight``, ``inclusion``,
``decisions`` (scores, thresholds, actions; never text) and, for ``text: encrypted``, ``sealed``
in place of request and response.
Segments rotate at ``segment_mb``; segments older than ``ttl_hours`` and the oldest beyond
``max_mb`` are deleted by the writer (``capture_store.prune``).
"""

from __future__ import annotations

import atexit
import logging
import math
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from proxy.errors import ConfigError
from proxy.observability import capture_crypto, capture_store
from proxy.observability.capture_labels import attach_to_promotions
from proxy.policy.observability import CaptureConfig

if TYPE_CHECKING:
    from proxy.chain.context import RequestContext
    from proxy.chain.plugin import Outcome
    from proxy.detectors.pii.engine import PiiEngine
    from proxy.policy.compiler import CompiledPolicy

log = logging.getLogger("policy_sidecar.capture")

REQUEST_KEY = "capture.request"  # ctx.state: the client's body (bytes) as it arrived, before any hook
RESPONSE_KEY = "capture.response"  # ctx.state: the provider's answer (bytes), before response hooks
PATH_KEY = "capture.path"  # ctx.state: the pass-through rule's path (pass-through requests only)
STREAM_KEY = "capture.stream"  # ctx.state: a streamed answer's notes (truncated, completed)
#: JSON keys whose string values are structure, not text: never redacted.
STRUCTURAL = frozenset(
    {"model", "role", "type", "id", "tool_call_id", "finish_reason", "object", "name", "format", "detail"}
)
MIN_SCORE = 0.5  # PII findings below this score are not masked in captured text


def inclusion(scores: Iterable[tuple[float, float]], cfg: CaptureConfig) -> float:
    """The keep probability of a request whose rules scored ``(score, threshold)`` pairs."""
    p = cfg.base_rate
    lift = max(cfg.peak_rate - cfg.base_rate, 0.0)
    for score, threshold in scores:
        d = (score - threshold) / cfg.band
        p = max(p, cfg.base_rate + lift * math.exp(-0.5 * d * d))
    return min(1.0, p)


def scored(ctx: RequestContext) -> list[tuple[float, float]]:
    return [(d.score, d.threshold) for d in ctx.decisions if d.score is not None and d.threshold is not None]


def keep_request(policy: CompiledPolicy, ctx: RequestContext, body: bytes, path: str | None = None) -> None:
    """Called by the routes for a new request when the policy captures: keep the body, and have
    score-based rules record their score even when they do not trigger (the sampler needs it).
    ``path``: a pass-through rule's path, shown by the review page (such records are not replayed)."""
    ctx.state[REQUEST_KEY] = body
    if path is not None:
        ctx.state[PATH_KEY] = path
    ctx.record_scores = True


def keep_answer(policy: CompiledPolicy, ctx: RequestContext, data: bytes) -> None:
    if policy.policy.observability.capture.responses:
        ctx.state[RESPONSE_KEY] = data


# -- text redaction (writer thread) -------------------------------------------------------------
def _mask(text: str, engine: PiiEngine, entities: list[str] | None) -> str:
    from proxy.detectors.pii.spans import resolve

    spans = resolve(engine.analyze(text, entities, MIN_SCORE), text)
    for span in sorted(spans, key=lambda s: s.start, reverse=True):
        text = f"{text[: span.start]}<{span.entity_type}>{text[span.end :]}"
    return text


def redact_tree(value: Any, engine: PiiEngine, key: str = "", entities: list[str] | None = None) -> Any:
    """Every string of a JSON body masked by the PII engine, except structural fields.
    ``entities``: the types to mask (the policy's pii step's; None: every type the engine knows)."""
    if isinstance(value, str):
        return value if key in STRUCTURAL or not value.strip() else _mask(value, engine, entities)
    if isinstance(value, list):
        return [redact_tree(v, engine, key, entities) for v in value]
    if isinstance(value, dict):
        return {k: redact_tree(v, engine, k, entities) for k, v in value.items()}
    return value


_default_engine: PiiEngine | None = None
_engine_lock = threading.Lock()


def _fallback_engine() -> PiiEngine:
    """Patterns only (no NER model load) for policies without a pii step; built once, lazily."""
    global _default_engine
    with _engine_lock:
        if _default_engine is None:
            from proxy.detectors.pii.engine import PiiEngine

            _default_engine = PiiEngine("off")
        return _default_engine


def policy_engine(policy: CompiledPolicy) -> tuple[PiiEngine, list[str] | None] | None:
    """The PII engine of the policy's first pii step (its recognisers, its NER) and the entity
    types that step acts on, if the policy has one."""
    from proxy.detectors.pii.engine import PiiEngine

    for step in policy.chain.steps:
        engine = getattr(step.plugin, "engine", None)
        if isinstance(engine, PiiEngine):
            return engine, getattr(step.plugin, "scan_entities", None)
    return None


def fallback_entities() -> list[str]:
    """Without a pii step: the pii plugin's default set, so "the capital of France" stays readable
    while names, contact data, IDs and credentials are masked."""
    from proxy.detectors.pii.defaults import DEFAULT_ENTITIES

    return sorted(DEFAULT_ENTITIES)


# -- the observer --------------------------------------------------------------------------------
@dataclass
class Item:
    cfg: CaptureConfig
    engine: tuple[PiiEngine, list[str] | None] | None  # the policy's pii engine and its entity types
    row: dict[str, Any]
    request: bytes
    response: bytes | None


class Capture:
    """A ``Sidecar`` observer; ``sidecar.observers.append(Capture())``. One writer thread, lazily."""

    def __init__(self, rng: Callable[[], float] | None = None) -> None:
        self._rng = rng or random.random
        self._queue: queue.Queue[Item | None] | None = None
        self._thread: threading.Thread | None = None
        self.counts: Counter[str] = Counter()
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, policy: CompiledPolicy, ctx: RequestContext, outcome: Outcome) -> None:
        if not policy.capture_on:
            return
        body = ctx.state.get(REQUEST_KEY)
        if not isinstance(body, bytes):
            return
        cfg = policy.policy.observability.capture
        if cfg.dir is not None:  # promote: max_false_positive_rate reads the reviewers' labels
            attach_to_promotions(policy, Path(cfg.dir))
        if ctx.tenant is not None and ctx.tenant in cfg.exclude_tenants:
            self.counts["opted_out"] += 1
            return
        p = inclusion(scored(ctx), cfg)
        if p <= 0.0 or self._rng() >= p:
            self.counts["skipped"] += 1
            return
        engine = policy_engine(policy) if cfg.text == "redacted" else None
        answer = ctx.state.get(RESPONSE_KEY)
        item = Item(cfg, engine, _row(ctx, outcome, p), body, answer if isinstance(answer, bytes) else None)
        q = self._start(cfg.queue)
        try:
            q.put_nowait(item)
        except queue.Full:
            self.counts["dropped"] += 1

    def _start(self, size: int) -> queue.Queue[Item | None]:
        if self._queue is None or self._thread is None or not self._thread.is_alive():
            self._queue = queue.Queue(maxsize=size)
            self._thread = threading.Thread(
                target=self._run, args=(self._queue,), name="capture", daemon=True
            )
            self._thread.start()
            atexit.register(self.close)  # a clean exit writes what is queued (close waits a bounded time)
        return self._queue

    def _run(self, q: queue.Queue[Item | None]) -> None:
        while True:
            item = q.get()
            try:
                if item is None:
                    return
                self.write(item)
            finally:
                q.task_done()

    def write(self, item: Item) -> None:
        """Build the record (redact or seal) and append it; failures are logged once and counted."""
        cfg = item.cfg
        assert cfg.dir is not None
        try:
            line = orjson.dumps(build_record(item))
            with self._lock:
                capture_store.append(Path(cfg.dir), line, int(cfg.segment_mb * 1024 * 1024))
                capture_store.prune(Path(cfg.dir), int(cfg.max_mb * 1024 * 1024), cfg.ttl_hours * 3600)
        except (ConfigError, OSError, ValueError) as exc:
            self.counts["failed"] += 1
            if str(exc) not in self._warned:
                self._warned.add(str(exc))
                log.error("capture: record not written: %s", exc)
            return
        self.counts["kept"] += 1

    def join(self) -> None:
        """Wait until every queued record is written (tests, shutdown)."""
        if self._queue is not None:
            self._queue.join()

    def close(self) -> None:
        """Stop the writer after what is queued (a bounded wait: exit must not hang on a disk)."""
        if self._queue is not None and self._thread is not None and self._thread.is_alive():
            try:
                self._queue.put(None, timeout=1)
            except queue.Full:
                return
            self._thread.join(timeout=5)

    @property
    def depth(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0


def _row(ctx: RequestContext, outcome: Outcome, p: float) -> dict[str, Any]:
    route = "chat.completions" if ctx.route.value == "messages" else ctx.route.value  # translated body
    return {
        "id": ctx.request_id,
        "ts": round(time.time(), 3),
        "route": route,
        "revision": ctx.revision,
        "tenant": ctx.tenant,
        "status": outcome.status,
        "headers": {"x-tenant-id": ctx.tenant} if ctx.tenant else {},
        "inclusion": round(p, 6),
        "weight": round(1.0 / p, 6),
        **_notes(ctx),
        "decisions": [
            {
                "plugin": d.plugin,
                "rule": d.rule,
                "action": d.action,
                "mode": d.mode,
                "score": d.score,
                "threshold": d.threshold,
            }
            for d in ctx.decisions
        ],
    }


def _notes(ctx: RequestContext) -> dict[str, Any]:
    """A streamed answer says so, and whether it was cut at ``max_response_kb`` or ended early;
    a pass-through request names its rule's path."""
    path = ctx.state.get(PATH_KEY)
    if isinstance(path, str):
        return {"path": path}
    notes = ctx.state.get(STREAM_KEY)
    if not isinstance(notes, dict):
        return {}
    return {
        "response_streamed": True,
        "response_truncated": bool(notes.get("truncated")),
        "response_completed": bool(notes.get("completed")),
    }


def build_record(item: Item) -> dict[str, Any]:
    """The JSON object of one capture line (writer thread)."""
    cfg, row = item.cfg, dict(item.row)
    payload: dict[str, Any] = {"request": orjson.loads(item.request)}
    if item.response is not None:
        try:
            answer = orjson.loads(item.response)
        except orjson.JSONDecodeError:
            answer = None
        if isinstance(answer, dict):
            payload["response"] = answer
    if cfg.text == "encrypted":
        key = capture_crypto.load_key(cfg.key_env)
        row["text"] = "encrypted"
        row["sealed"] = capture_crypto.seal(key, str(row["id"]), payload, cfg.key_env)
    else:
        engine, entities = item.engine or (_fallback_engine(), fallback_entities())
        row["text"] = "redacted"
        row.update(redact_tree(payload, engine, "", entities))
    return row


class CaptureMetrics(Collector):
    """``sidecar_capture_records_total{result}`` and ``sidecar_capture_queue_depth``, read at scrape."""

    def __init__(self, capture: Capture) -> None:
        self._capture = capture

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "sidecar_capture_records",
            "captured requests by result: kept (written), skipped (not sampled), dropped (queue full), "
            "failed (not written), opted_out (tenant excluded)",
            labels=["result"],
        )
        for result in ("kept", "skipped", "dropped", "failed", "opted_out"):
            family.add_metric([result], float(self._capture.counts[result]))
        yield family
        depth = GaugeMetricFamily("sidecar_capture_queue_depth", "records waiting for the capture writer")
        depth.add_metric([], float(self._capture.depth))
        yield depth
