"""The policy's ``observability:`` section: tracing, metrics, logs and the decision-log sink.

Its own module, apart from ``proxy/policy/schema.py``, so the telemetry settings read as one
unit; it lives in ``proxy.policy`` (the layer that validates policies) and ``proxy.observability``
reads it from here, never the other way round (``proxy.observability.config`` re-exports it). Every
sub-section has safe defaults (no prompt text anywhere, bounded label cardinality), so a
policy without this section behaves exactly as before.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from proxy.chain.decisions import ACTIONS
from proxy.chain.names import names_validator
from proxy.chain.secrets import Secret


class TracingConfig(BaseModel):
    """OpenTelemetry spans (exporter chosen by the standard ``OTEL_*`` environment variables)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0, description="share of requests traced")
    content: Literal["none", "redacted", "full"] = Field(
        default="none",
        description="prompt and completion text on the request span (gen_ai.input.messages / "
        "gen_ai.output.messages): none, redacted (emails, digits, key-like tokens masked) or full",
    )


class MetricsConfig(BaseModel):
    """Prometheus metrics on the admin port (``/metrics``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="update the per-request series")
    tenant_label: Literal["none", "hashed", "raw"] = Field(
        default="none",
        description="tenant label on token, cost and budget metrics: none (label is empty), hashed "
        "(8 hex chars of SHA-256) or raw; at most max_tenants values, the rest are 'other'",
    )
    max_tenants: int = Field(default=100, ge=1, le=10_000, description="distinct tenant label values")
    max_models: int = Field(
        default=50, ge=1, le=10_000, description="distinct model label values; the rest are 'other'"
    )


class LogsConfig(BaseModel):
    """Structured JSON logs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    content: Literal["none", "redacted"] = Field(
        default="none",
        description="access log content: none, or redacted prompt / completion text for debugging "
        "(emails, digits and key-like tokens masked; not a PII guarantee)",
    )


class DecisionLogConfig(BaseModel):
    """A JSONL sink of decision records for shadow-mode calibration (``proxy/observability/decision_log.py``).

    Off unless ``path`` is set. Records never carry raw prompt text: ``text`` can add a hash of
    the scanned text (to join or count repeats) or a cheap redaction of it (to eyeball why a rule
    fired), per policy, so a reload can switch it on for an investigation and off again.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = Field(
        default=None,
        description="JSONL file to append to (relative to the working directory), or stdout; "
        "unset: no decision log",
    )
    text: Literal["none", "hash", "redacted"] = Field(
        default="none",
        description="the scanned text beside a record: none, hash (text_hash: SHA-256, or HMAC-SHA256 "
        "with hash_key) or redacted (text_redacted: emails, digits, key-like tokens masked, "
        "truncated; not a PII guarantee)",
    )
    hash_key: Secret | None = Field(
        default=None, description="${ENV} allowed; keys the text hash so short prompts cannot be guessed"
    )
    redacted_chars: int = Field(default=200, ge=16, le=4000, description="longest text_redacted kept")
    actions: Annotated[
        tuple[str, ...] | None, AfterValidator(names_validator(ACTIONS, "decision action"))
    ] = Field(default=None, description="only these actions (any of: " + ", ".join(ACTIONS) + "); unset: all")
    flush_seconds: float = Field(
        default=1.0,
        ge=0.0,
        le=60.0,
        description="buffered lines reach the file at most this late; 0: per line",
    )


class CaptureConfig(BaseModel):
    """Sampled capture of requests for review and calibration (``proxy/observability/capture.py``).

    Off unless ``dir`` is set. A request is kept with a probability that peaks where a rule's
    score sits near its threshold (where labels teach the most) and falls to ``base_rate`` far
    from it; each record carries its inclusion probability so estimates can be re-weighted.
    Text is never stored in clear: ``redacted`` masks what the policy's PII engine finds,
    ``encrypted`` seals request and answer with AES-256-GCM under a key read from ``key_env``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dir: str | None = Field(
        default=None, description="directory of capture segments (JSONL) and labels; unset: no capture"
    )
    text: Literal["redacted", "encrypted"] = Field(
        default="redacted",
        description="redacted (PII found by the policy's pii engine replaced by <TYPE>) or encrypted "
        "(AES-256-GCM, key from key_env)",
    )
    key_env: str = Field(
        default="SIDECAR_CAPTURE_KEY",
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="environment variable holding the base64 32-byte key for text: encrypted",
    )
    responses: bool = Field(
        default=False,
        description="also keep the provider's answer; a streamed one is joined into the same JSON",
    )
    max_response_kb: float = Field(
        default=64.0,
        gt=0.0,
        le=4096.0,
        description="cap on a streamed answer's kept text and tool arguments; beyond it the record "
        "says response_truncated",
    )
    base_rate: float = Field(
        default=0.01, ge=0.0, le=1.0, description="keep probability far from any threshold (and unscored)"
    )
    peak_rate: float = Field(
        default=1.0, gt=0.0, le=1.0, description="keep probability of a score exactly at its threshold"
    )
    band: float = Field(
        default=0.1,
        gt=0.0,
        le=10.0,
        description="score distance from the threshold over which the keep probability falls off "
        "(Gaussian width); also the review page's score bands",
    )
    max_mb: float = Field(default=100.0, gt=0.0, description="total size cap; oldest segments deleted")
    segment_mb: float = Field(default=10.0, gt=0.0, description="rotate to a new segment at this size")
    ttl_hours: float = Field(default=168.0, gt=0.0, description="segments older than this are deleted")
    exclude_tenants: tuple[str, ...] = Field(
        default=(), description="tenants never captured (opt-out); also requests of these tenant ids"
    )
    queue: int = Field(
        default=1000, ge=1, le=100_000, description="records waiting for the writer; beyond it, dropped"
    )

    @property
    def enabled(self) -> bool:
        return self.dir is not None


class ObservabilityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tracing: TracingConfig = Field(default_factory=TracingConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    logs: LogsConfig = Field(default_factory=LogsConfig)
    decision_log: DecisionLogConfig = Field(default_factory=DecisionLogConfig)
    capture: CaptureConfig = Field(default_factory=CaptureConfig)
