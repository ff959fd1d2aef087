"""What the chain routes record about a request, in one place: span, captured text, access log,
decision records and metrics (through ``Sidecar.publish``), and the end of every request.

Why one place: the exchange (``proxy.routes.exchange``) and its stream relay only say *when*
a request starts, what text passed and how it ended (an ``Outcome``); everything observability
does with that lives here, so a new signal is added once, not in each response path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from proxy.chain.context import RequestContext, StateKey
from proxy.chain.plugin import Outcome
from proxy.observability import content as content_capture
from proxy.policy.compiler import CompiledPolicy
from proxy.runtime import Sidecar

log = logging.getLogger("policy_sidecar.access")

#: The prompt / completion messages kept for the access log (``observability.logs.content``).
INPUT_MESSAGES: StateKey[list[dict[str, str]]] = StateKey("observability.input", shared=True)
OUTPUT_MESSAGES: StateKey[list[dict[str, str]]] = StateKey("observability.output", shared=True)


def elapsed_ms(ctx: RequestContext | None) -> float:
    """Milliseconds since the request started (0 before a context exists)."""
    return (time.perf_counter() - ctx.started) * 1000 if ctx else 0.0


class Records:
    """One per process (held by ``ChainRoute``); every method takes the request's policy + ctx."""

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        telemetry = sidecar.telemetry
        self._tracing = telemetry.tracing if telemetry is not None and telemetry.tracing.enabled else None

    def begin(
        self, ctx: RequestContext, headers: Mapping[str, str], policy: CompiledPolicy, body: dict[str, Any]
    ) -> None:
        """Open the request span (when tracing is on) before the chain runs."""
        if self._tracing is not None:
            self._tracing.begin(ctx, headers, policy, body)

    @property
    def access_log(self) -> bool:
        return self.sidecar.settings.log_requests and log.isEnabledFor(logging.INFO)

    def needs_finish(self, policy: CompiledPolicy, ctx: RequestContext) -> bool:
        """Anything to run after the answer; if not, the hot path skips the background task."""
        return bool(policy.chain.complete_steps or ctx.decisions or self.sidecar.observers or self.access_log)

    @staticmethod
    def capture(
        policy: CompiledPolicy, ctx: RequestContext, messages: list[dict[str, str]], *, output: bool
    ) -> None:
        """Keep prompt / completion text for the span and the access log, only as the policy asks."""
        trace = ctx.trace
        if trace is not None and policy.trace_content != "none":
            if output:
                trace.output_messages = messages
            else:
                trace.input_messages = messages
        if policy.log_content != "none":
            ctx.set(OUTPUT_MESSAGES if output else INPUT_MESSAGES, messages)

    async def finish(self, policy: CompiledPolicy, ctx: RequestContext | None, outcome: Outcome) -> None:
        """Complete hooks, decision records, access log, unpin the revision. Never raises."""
        try:
            if ctx is not None:
                if policy.chain.complete_steps:
                    await policy.chain.run_complete(outcome, ctx)
                self.sidecar.publish(policy, ctx, outcome)
                if self.access_log:
                    log.info("request", extra=self._access_fields(policy, ctx, outcome))
        except Exception:
            log.exception("error while finishing a request")
        finally:
            self.sidecar.store.release(policy)

    @staticmethod
    def _access_fields(policy: CompiledPolicy, ctx: RequestContext, outcome: Outcome) -> dict[str, Any]:
        """The access log line: ids, revision, target, timings and a decision summary; never text.

        Prompt and completion text appear only with ``observability.logs.content: redacted``,
        and then only after ``content.redact`` masked emails, digits and key-like tokens.
        """
        fields: dict[str, Any] = {
            "request_id": ctx.request_id,
            "route": ctx.route.value,
            "status": outcome.status,
            "model": ctx.model,
            "response_model": ctx.response_model or None,
            "tenant": ctx.tenant,
            "target": ctx.target,
            "revision": ctx.revision,
            "stream": ctx.stream,
            "latency_ms": round(elapsed_ms(ctx), 2),
            "upstream_ms": round(ctx.upstream_s * 1000, 2),
            "attempts": ctx.attempts,
            "decisions": [
                {"plugin": d.plugin, "rule": d.rule, "action": d.action, "mode": d.mode}
                for d in ctx.decisions
            ],
            "usage": ctx.usage or outcome.usage or None,
            "cost_usd": ctx.cost_usd,
        }
        if ctx.identity is not None:  # clients: the verified key (its id, never the key) and user
            fields["client"], fields["user"] = ctx.identity.key_id, ctx.identity.user
        if ctx.first_token_at is not None:
            fields["ttft_ms"] = round((ctx.first_token_at - ctx.started) * 1000, 2)
        if ctx.trace is not None:
            fields["trace_id"] = ctx.trace.trace_id
        if policy.log_content == "redacted":
            for key, slot in (("input", INPUT_MESSAGES), ("output", OUTPUT_MESSAGES)):
                messages = ctx.get(slot)
                if messages is not None:
                    fields[f"content_{key}"] = content_capture.render(messages, "redacted")
        return fields
