"""Run golden cases through the real sidecar, in-process: ``policy-sidecar test``.

Why the whole app and not just ``Chain.run_request``: a policy's observable behaviour is the
HTTP answer (status, headers, error envelope, restored text, in-band stream errors), and the
wire-format parsing, stream encoding and hold-back all live below and above the chain. So each
run is one real request to the real Starlette app (through ``httpx.ASGITransport``, no socket),
with the policy's own plugins, modes, canaries and routes. Only the provider is replaced: every
upstream of the policy points at the built-in fake (``builtin:demo``), which answers with the
case's scripted ``answer`` and records what it received, so "no redacted value ever reaches the
upstream" is checked on the bytes the provider would have seen.

A case runs non-stream once; with an ``answer`` it also runs streamed: the answer in one piece,
one character per delta, and then split in two at every offset. A placeholder or a secret cut at
any position must still be restored or redacted (the property the design guide asks of streams).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from proxy.app import build_app
from proxy.chain.decisions import Decision, DecisionSink
from proxy.chain.registry import Registry, default_registry
from proxy.chain.secrets import placeholders_for_missing_env
from proxy.demo.fake_scenario import FakeState, Scenario, chat_last_user, render
from proxy.demo.fake_upstream import build_fake_upstream
from proxy.policy.compiler import CompiledPolicy, compile_policy, revision_of
from proxy.policy.loader import load_policy_checked
from proxy.policy.store import PolicyStore
from proxy.policytest.cases import Case, Expect
from proxy.policytest.output import parse_answer
from proxy.runtime import Sidecar
from proxy.settings import Settings

log = logging.getLogger("policy_sidecar.policytest")

#: Longer answers are split at this many offsets (evenly spread), to bound a case's runs.
MAX_SPLITS = 400
_PATHS = {
    "chat.completions": "/v1/chat/completions",
    "responses": "/v1/responses",
    "embeddings": "/v1/embeddings",
    "messages": "/v1/messages",
}
BLOCK_ACTIONS = ("block", "limit")
REDACT_ACTIONS = ("redact", "mask", "hash")


class _ScriptedStore(PolicyStore):
    """A policy store whose every upstream is the in-process fake (the only change to the policy)."""

    def compile_text(self, text: str, source: str) -> CompiledPolicy:
        from proxy.chain.plugin import Deps

        policy, warnings = load_policy_checked(text, source, self.model)
        upstreams = {
            name: cfg.model_copy(update={"base_url": "builtin:demo", "provider": "openai"})
            for name, cfg in policy.upstreams.items()
        }
        policy = policy.model_copy(update={"upstreams": upstreams})
        deps = Deps(self.resources, str(Path(source).parent), self.cpu_workers)
        # A fresh promotion book per run: promoted steps are tested as they start, in shadow.
        compiled = compile_policy(policy, revision_of(text), source, self.registry, deps)
        compiled.warnings = warnings
        return compiled


@dataclass
class Run:
    """One request of a case and what came back."""

    label: str
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    text: str | None = None
    error_code: str | None = None
    decisions: list[Decision] = field(default_factory=list)
    upstream: list[str] = field(default_factory=list)  # request bodies the provider received


@dataclass
class CaseResult:
    name: str
    runs: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures


class Harness:
    """The sidecar app on a policy, the fake provider behind it, and the decisions of each request."""

    def __init__(self, policy: Path, registry: Registry | None = None) -> None:
        self.fake = FakeState()
        settings = Settings(policy_path=policy, watch=False, log_requests=False)
        store = _ScriptedStore(policy, registry or default_registry(), cpu_workers=1)
        store.resources.get_or_create("builtin:demo", lambda: build_fake_upstream(self.fake, echo=False))
        # ``${ENV}`` secrets the policy needs are not needed here: no real provider is called.
        with placeholders_for_missing_env():
            self.compiled = store.load_initial()  # ConfigError for a broken policy: the caller reports it
        self.sidecar = Sidecar(settings=settings, store=store, sink=DecisionSink())
        self._decisions: dict[str, list[Decision]] = {}
        self.sidecar.observers.append(
            lambda _p, ctx, _o: self._decisions.__setitem__(ctx.request_id, list(ctx.decisions))
        )
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=build_app(self.sidecar, include_admin=False)),
            base_url="http://policy-test",
            timeout=60,
        )
        self._ids = itertools.count(1)

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.sidecar.store.aclose()

    async def send(self, case: Case, label: str, stream: bool, scenario: Scenario) -> Run:
        rid = f"policy-test-{next(self._ids)}"
        self.fake.reset()
        self.fake.push(scenario)
        body = case.request_body()
        if stream:
            body["stream"] = True
        headers = {"x-request-id": rid, **case.headers}
        resp = await self.client.post(_PATHS[case.route], content=orjson.dumps(body), headers=headers)
        run = Run(label, resp.status_code, {k.lower(): v for k, v in resp.headers.items()})
        run.text, run.error_code = parse_answer(case.route, resp.content, resp.status_code, stream)
        run.decisions = self._decisions.pop(rid, [])
        run.upstream = [r.body.decode("utf-8", "replace") for r in self.fake.requests]
        return run


def _split_points(length: int) -> list[int]:
    if length <= MAX_SPLITS + 1:
        return list(range(1, length))
    return sorted({1 + i * (length - 2) // (MAX_SPLITS - 1) for i in range(MAX_SPLITS)})


def _matches(d: Decision, name: str) -> bool:
    return name in (d.plugin, f"{d.plugin}/{d.rule}")


def _enforced(run: Run, actions: Sequence[str]) -> list[Decision]:
    return [d for d in run.decisions if d.mode == "enforce" and d.action in actions]


def _redacted_types(run: Run) -> set[str]:
    found: set[str] = set()
    for d in _enforced(run, REDACT_ACTIONS):
        found.add(d.rule)
        entities = d.detail.get("entities")
        if isinstance(entities, dict):
            found.update(str(k) for k in entities)
    return found


def check(expect: Expect, run: Run) -> list[str]:
    """Every expectation that does not hold for this run, as a readable line."""
    out: list[str] = []
    blocks = _enforced(run, BLOCK_ACTIONS)
    names = sorted({f"{d.plugin}/{d.rule}" for d in blocks})
    if expect.allowed is True and blocks:
        out.append(f"expected allowed, but blocked by {', '.join(names)}")
    if expect.allowed is False and not blocks:
        out.append("expected a block, but nothing blocked")
    if expect.blocked is not None and not any(_matches(d, expect.blocked) for d in blocks):
        out.append(f"expected blocked by {expect.blocked}, got {', '.join(names) or 'no block'}")
    missing = set(expect.redacted_types()) - _redacted_types(run)
    if missing:
        got = ", ".join(sorted(_redacted_types(run))) or "nothing"
        out.append(f"expected redacted {', '.join(sorted(missing))}; redacted: {got}")
    for name in expect.flagged or []:
        if not any(_matches(d, name) and d.action == "flag" for d in run.decisions):
            out.append(f"expected a flag by {name}")
    if expect.status is not None and run.status != expect.status:
        out.append(f"expected status {expect.status}, got {run.status}")
    for name, value in (expect.headers or {}).items():
        got_header = run.headers.get(name.lower())
        if got_header != value:
            out.append(f"expected header {name}: {value!r}, got {got_header!r}")
    if expect.error_code is not None and run.error_code != expect.error_code:
        out.append(f"expected error code {expect.error_code!r}, got {run.error_code!r}")
    text = run.text or ""
    if expect.output is not None and run.text != expect.output:
        out.append(f"expected output {expect.output!r}, got {run.text!r}")
    out += [f"output lacks {s!r}: {text!r}" for s in expect.output_contains if s not in text]
    out += [f"output contains {s!r}" for s in expect.output_not_contains if s in text]
    # The redacted values a case names must never leave for the provider, in any run.
    for secret in [*expect.upstream_not_contains, *expect.redacted_values()]:
        if any(secret in body for body in run.upstream):
            out.append(f"the upstream received {secret!r}")
    return out


async def run_case(harness: Harness, case: Case) -> CaseResult:
    started = time.perf_counter()
    result = CaseResult(case.name)
    scenario: dict[str, Any] = {"content": case.answer, "status": case.upstream_status}
    first = await harness.send(case, "non-stream", False, Scenario(**scenario))
    runs = [first]
    if case.answer is not None and case.stream and case.route != "embeddings":
        runs.append(
            await harness.send(case, "stream, one chunk", True, Scenario(**scenario, chunk_size=10**6))
        )
        runs.append(
            await harness.send(case, "stream, 1 char per chunk", True, Scenario(**scenario, chunk_size=1))
        )
        if case.route == "chat.completions" and first.upstream:
            sent = orjson.loads(first.upstream[0])
            text = render(case.answer, chat_last_user(sent.get("messages")), str(sent.get("model") or ""))
            for k in _split_points(len(text)):
                sc = Scenario(**scenario, split_at=[k])
                runs.append(await harness.send(case, f"stream split at {k}", True, sc))
    # One line per distinct failure, naming the runs it happened in (a restore bug shows up in
    # dozens of split runs; the reader needs the message once and where it happened).
    where: dict[str, list[str]] = {}
    for run in runs:
        for line in check(case.expect, run):
            where.setdefault(line, []).append(run.label)
    for line, labels in where.items():
        shown = ", ".join(labels[:5]) + (f" and {len(labels) - 5} more runs" if len(labels) > 5 else "")
        result.failures.append(f"[{shown}] {line}")
    result.runs = len(runs)
    result.seconds = time.perf_counter() - started
    return result


async def run_cases(
    policy: Path, cases: Sequence[Case], registry: Registry | None = None
) -> list[CaseResult]:
    harness = Harness(policy, registry)
    try:
        return [await run_case(harness, case) for case in cases]
    finally:
        await harness.aclose()


def run(policy: Path, cases: Sequence[Case], registry: Registry | None = None) -> list[CaseResult]:
    return asyncio.run(run_cases(policy, cases, registry))
