"""The policy's ``observability:`` section: tracing, metrics, logs and the decision-log sink.

Kept out of ``proxy/policy/schema.py`` so the telemetry code owns its own settings. Every
sub-section has safe defaults (no prompt text anywhere, bounded label cardinality), so a
policy without this section behaves exactly as before.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TracingConfig(BaseModel):
    """OpenTelemetry spans (exporter chosen by the standard ``OTEL_*`` environment variables)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0, description="share of requests traced")


class MetricsConfig(BaseModel):
    """Prometheus metrics on the admin port (``/metrics``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LogsConfig(BaseModel):
    """Structured JSON logs."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DecisionLogConfig(BaseModel):
    """A JSONL sink of decision records for shadow-mode calibration."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ObservabilityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tracing: TracingConfig = Field(default_factory=TracingConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    logs: LogsConfig = Field(default_factory=LogsConfig)
    decision_log: DecisionLogConfig = Field(default_factory=DecisionLogConfig)
