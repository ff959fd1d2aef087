"""``policy-sidecar replay``: what a candidate policy would do to recorded traffic, offline.

Each recorded request goes through the compiled chain's own ``run_request`` (and, when the
record has the provider's answer, ``run_response`` and then ``run_complete``): the plugins'
real code, with the chain applying mode and ``on_error`` as it does live. There is no upstream
at all: the recorded answer stands in for the provider, and upstream wrappers (retry,
fallback, …) are not exercised, because they act on calls that do not happen here. A streamed
chat request's recorded answer goes through the stream filters, cut into small text deltas,
as it would have live; other answers go through the response hooks.

By default every step is forced to ``shadow``, so each rule sees every request and its counts
do not depend on which earlier rule would have refused first; ``--as-configured`` keeps the
policy's own modes (an enforcing block then stops later request steps, as live).

Traffic file: JSONL, one object per line::

    {"id": "r1", "route": "chat.completions", "headers": {"x-tenant-id": "acme"},
     "request": {"model": "gpt-4o", "messages": [...]},
     "response": {"choices": [{"message": {"role": "assistant", "content": "..."}}]},
     "label": "injection", "labels": {"moderation/input_violence": false}}

Only ``request`` is required. ``label`` / ``labels`` are for ``calibrate`` and ignored here.
``weight`` (a captured record's 1 / inclusion probability) only weights ``calibrate``'s rates.

A capture store directory (``observability.capture``) reads as traffic too: its records with
their review labels merged; sealed (``text: encrypted``) records are opened with the key in the
environment variable they name (``SIDECAR_CAPTURE_KEY`` by default).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from proxy.chain.chain import Chain
from proxy.chain.context import ActiveStep, RequestContext
from proxy.chain.decisions import Decision
from proxy.chain.plugin import Outcome
from proxy.chain.registry import Registry
from proxy.errors import ConfigError, ProxyError, Rejected
from proxy.models.chat import ChatRequest, ChatResponse, Route
from proxy.models.stream import Finish, TextDelta
from proxy.models.validate import validate_body
from proxy.observability import capture_store
from proxy.policy.compiler import CompiledPolicy

REPLAYABLE = (Route.CHAT, Route.RESPONSES, Route.EMBEDDINGS)
MAIN_ACTIONS = ("block", "redact", "flag")
STREAM_CHUNK = 16  # small enough that a rule's match usually spans two deltas (hold-back is exercised)


@dataclass(frozen=True)
class TrafficRecord:
    id: str
    route: Route
    request: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    response: dict[str, Any] | None = None
    status: int = 200
    label: tuple[str, ...] | None = None
    labels: dict[str, bool] = field(default_factory=dict)
    weight: float = 1.0


def _parse(raw: dict[str, Any], where: str, n: int) -> TrafficRecord:
    request = raw.get("request")
    if not isinstance(request, dict):
        raise ConfigError("'request' must be an object (the client's JSON body)", location=where)
    try:
        route = Route(raw.get("route", Route.CHAT.value))
    except ValueError:
        raise ConfigError(f"unknown route {raw.get('route')!r}", location=where) from None
    if route not in REPLAYABLE:
        raise ConfigError(f"route {route.value} cannot be replayed", location=where)
    response = raw.get("response")
    if response is not None and not isinstance(response, dict):
        raise ConfigError("'response' must be an object (the provider's JSON body)", location=where)
    label = raw.get("label")
    if isinstance(label, str):
        label = (label,)
    elif isinstance(label, list) and all(isinstance(x, str) for x in label):
        label = tuple(label)
    elif label is not None:
        raise ConfigError("'label' must be a string or a list of strings", location=where)
    labels = raw.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, bool | int) for v in labels.values()):
        raise ConfigError("'labels' must map a rule to true / false", location=where)
    headers = {str(k).lower(): str(v) for k, v in (raw.get("headers") or {}).items()}
    weight = raw.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
        raise ConfigError("'weight' must be a positive number (1 / inclusion probability)", location=where)
    return TrafficRecord(
        id=str(raw.get("id", f"line-{n}")),
        route=route,
        request=request,
        headers=headers,
        response=response,
        status=int(raw.get("status", 200)),
        label=label,
        labels={str(k): bool(v) for k, v in labels.items()},
        weight=float(weight),
    )


def load_traffic(path: Path) -> list[TrafficRecord]:
    """Parse a traffic JSONL file; errors name ``file:line``. Blank lines and ``#`` lines are skipped."""
    if path.is_dir():
        return load_capture(path)
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read traffic file: {exc}", location=str(path)) from exc
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{n}"
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"not JSON: {exc}", location=where) from None
        if not isinstance(raw, dict):
            raise ConfigError("each line must be a JSON object", location=where)
        records.append(_parse(capture_store.opened(raw, None), where, n))
    return records


def load_capture(root: Path, key: bytes | None = None) -> list[TrafficRecord]:
    """A capture store's records, labels merged, sealed ones opened (``key`` or the environment).

    Pass-through records (``route: passthrough``, kept for review and the promotion labels) are
    left out: their guards run on a rule's fields, not through the chain ``replay`` drives."""
    replayable = {r.value for r in REPLAYABLE}
    return [
        _parse(capture_store.opened(raw, key), f"{root}:{raw.get('id')}", n)
        for n, raw in enumerate(capture_store.labelled_records(root), 1)
        if raw.get("route", Route.CHAT.value) in replayable
    ]


def forced(chain: Chain, mode: str) -> Chain:
    """The same steps (same plugin instances) with every mode set to ``mode``."""
    steps = [dataclasses.replace(s, mode=mode, active=ActiveStep(s.id, mode)) for s in chain.steps]
    return Chain(steps, chain.upstream)


@dataclass
class RecordRun:
    """What one replayed record produced."""

    record: TrafficRecord
    decisions: list[Decision]
    outcome: str  # passed | refused | replied | invalid | error
    answer_path: str | None = None  # "response" hooks, "stream" filters, or None (not checked)
    scanned: dict[int, str] | None = None


async def replay_record(
    chain: Chain, revision: str, record: TrafficRecord, *, record_scores: bool = False
) -> RecordRun:
    """One record through the chain's hooks; never raises for what a plugin does."""
    body = orjson.loads(orjson.dumps(record.request))  # plugins may edit: never touch the record
    try:
        validate_body(record.route, body)
    except ProxyError:
        return RecordRun(record, [], "invalid")
    ctx = RequestContext(
        record.id, record.route, record.headers, revision, body["model"], stream=bool(body.get("stream"))
    )
    ctx.record_scores = record_scores
    outcome, status, path = "passed", record.status, None
    try:
        reply = await chain.run_request(ChatRequest(body, record.route), ctx)
        if reply is not None:
            outcome = "replied"
        elif record.response is not None and record.status < 400:
            answer = orjson.loads(orjson.dumps(record.response))
            if ctx.stream and record.route is Route.CHAT and chain.stream_steps:
                path = "stream"
                await _stream_answer(chain, ctx, answer)
            elif chain.response_steps:
                path = "response"
                await chain.run_response(ChatResponse(answer, record.route, None, record.status), ctx)
    except Rejected as exc:
        outcome, status = "refused", exc.status
    except ProxyError as exc:
        outcome, status = "error", exc.status
    if chain.complete_steps:
        done = Outcome(status, streamed=path == "stream", completed=outcome != "error")
        await chain.run_complete(done, ctx)
    return RecordRun(record, ctx.decisions, outcome, path, ctx.scanned)


async def _stream_answer(chain: Chain, ctx: RequestContext, answer: dict[str, Any]) -> None:
    """A recorded chat answer as the stream a streamed request would have seen: per choice, text in
    ``STREAM_CHUNK``-character deltas, then its finish; through the chain's stream filters."""
    pipeline = chain.open_stream(ctx)
    if pipeline is None:
        return
    for n, choice in enumerate(answer.get("choices") or []):
        index = int(choice.get("index", n))
        text = (choice.get("message") or {}).get("content")
        if isinstance(text, str):
            for i in range(0, len(text), STREAM_CHUNK):
                await pipeline.push(TextDelta(index, text[i : i + STREAM_CHUNK]))
        await pipeline.push(Finish(index, choice.get("finish_reason") or "stop"))
    await pipeline.end()


async def replay_all(
    compiled: CompiledPolicy,
    records: Iterable[TrafficRecord],
    *,
    mode: str | None = "shadow",
    record_scores: bool = False,
) -> list[RecordRun]:
    """Replay in order, one at a time (stateful steps such as budgets see a realistic sequence)."""
    chain = forced(compiled.chain, mode) if mode is not None else compiled.chain
    return [await replay_record(chain, compiled.revision, r, record_scores=record_scores) for r in records]


RuleKey = tuple[str, str]


def rule_counts(runs: Sequence[RecordRun]) -> dict[RuleKey, Counter[str]]:
    """Per (plugin, rule): how many *requests* got each action (several texts count once)."""
    out: dict[RuleKey, Counter[str]] = {}
    for run in runs:
        seen = {(d.plugin, d.rule, d.action) for d in run.decisions if d.action != "allow"}
        for plugin, rule, action in seen:
            out.setdefault((plugin, rule), Counter())[action] += 1
    return out


def requests_with(runs: Sequence[RecordRun], action: str) -> int:
    return sum(1 for run in runs if any(d.action == action for d in run.decisions))


@dataclass
class ReplayReport:
    records: int
    with_response: int
    streamed: int
    invalid: int
    mode: str
    candidate: dict[str, Any]
    baseline: dict[str, Any] | None
    rules: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _summary(compiled: CompiledPolicy, runs: Sequence[RecordRun]) -> dict[str, Any]:
    return {
        "source": compiled.source,
        "revision": compiled.revision,
        "requests": {a: requests_with(runs, a) for a in MAIN_ACTIONS},
        "outcomes": dict(Counter(run.outcome for run in runs)),
    }


def build_report(
    records: Sequence[TrafficRecord],
    candidate: CompiledPolicy,
    cand_runs: Sequence[RecordRun],
    baseline: CompiledPolicy | None,
    base_runs: Sequence[RecordRun] | None,
    mode: str,
) -> ReplayReport:
    cand = rule_counts(cand_runs)
    base = rule_counts(base_runs or [])
    rows = []
    for key in sorted(set(cand) | set(base)):
        c, b = cand.get(key, Counter()), base.get(key, Counter())
        row: dict[str, Any] = {"plugin": key[0], "rule": key[1]}
        for action in sorted(set(MAIN_ACTIONS) | set(c) | set(b)):
            row[action] = {"candidate": c[action], "baseline": b[action], "delta": c[action] - b[action]}
        rows.append(row)
    return ReplayReport(
        records=len(records),
        with_response=sum(1 for r in records if r.response is not None),
        streamed=sum(1 for run in cand_runs if run.answer_path == "stream"),
        invalid=sum(1 for run in cand_runs if run.outcome == "invalid"),
        mode=mode,
        candidate=_summary(candidate, cand_runs),
        baseline=_summary(baseline, base_runs or []) if baseline is not None else None,
        rules=rows,
    )


def _cell(counts: dict[str, int], with_base: bool) -> str:
    if not with_base:
        return str(counts["candidate"])
    return f"{counts['candidate']} / {counts['baseline']} / {counts['delta']:+d}"


def format_report(report: ReplayReport) -> str:
    with_base = report.baseline is not None
    forced_note = (
        "every step forced to shadow: each rule sees every request"
        if report.mode == "shadow"
        else "modes as configured: an enforcing refusal stops later request steps"
    )
    lines = [
        f"replay: {report.records} records, {report.with_response} with a recorded response "
        f"({report.streamed} replayed as streams); {forced_note}",
        f"candidate: {report.candidate['source']} (revision {report.candidate['revision']})",
    ]
    if report.baseline is not None:
        lines.append(f"baseline:  {report.baseline['source']} (revision {report.baseline['revision']})")
    if report.invalid:
        lines.append(f"skipped {report.invalid} invalid request bodies")
    lines.append("")
    for action in MAIN_ACTIONS:
        c = report.candidate["requests"][action]
        text = f"requests with a {action} decision: candidate {c}"
        if report.baseline is not None:
            b = report.baseline["requests"][action]
            text += f", baseline {b} ({c - b:+d})"
        lines.append(text)
    lines.append("")
    extra = sorted({a for row in report.rules for a in row} - {"plugin", "rule", *MAIN_ACTIONS})
    columns = [*MAIN_ACTIONS, *extra]
    header = ["rule", *(f"{a} (cand / base / Δ)" if with_base else a for a in columns)]
    table = [header]
    for row in report.rules:
        zero = {"candidate": 0, "baseline": 0, "delta": 0}
        table.append(
            [f"{row['plugin']} / {row['rule']}", *(_cell(row.get(a, zero), with_base) for a in columns)]
        )
    if len(table) == 1:
        lines.append("no rule would block, redact or flag anything in this traffic")
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, r in enumerate(table):
        lines.append(
            "  ".join(cell.ljust(widths[j]) if j == 0 else cell.rjust(widths[j]) for j, cell in enumerate(r))
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


class Compiled:
    """Policies compiled for offline use, sharing one resource pool (detector models load once)."""

    def __init__(self, first: Path, registry: Registry | None = None) -> None:
        from proxy.chain.registry import default_registry
        from proxy.policy.store import PolicyStore

        self.store = PolicyStore(first, registry or default_registry())
        self.policies: list[CompiledPolicy] = []

    def compile(self, path: Path) -> CompiledPolicy:
        from proxy.policy.loader import read_policy_file

        compiled = self.store.compile_text(read_policy_file(path), str(path))
        self.policies.append(compiled)
        return compiled

    async def aclose(self) -> None:
        for policy in self.policies:
            await policy.aclose()
        await self.store.resources.close_unused(set())


def run(
    policy: Path,
    traffic: Path,
    baseline: Path | None = None,
    *,
    as_configured: bool = False,
    registry: Registry | None = None,
) -> ReplayReport:
    """The CLI's work, returned as a report (tests call this)."""
    records = load_traffic(traffic)
    compiled = Compiled(policy, registry)
    candidate = compiled.compile(policy)
    base = compiled.compile(baseline) if baseline is not None else None
    mode = None if as_configured else "shadow"

    async def go() -> ReplayReport:
        try:
            cand_runs = await replay_all(candidate, records, mode=mode)
            base_runs = await replay_all(base, records, mode=mode) if base is not None else None
        finally:
            await compiled.aclose()
        return build_report(records, candidate, cand_runs, base, base_runs, mode or "configured")

    return asyncio.run(go())
