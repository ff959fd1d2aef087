"""Re-export of the ``observability:`` policy section, which lives in ``proxy.policy.observability``.

The settings are part of the validated policy (a lower layer than the telemetry code), so they
moved there; this name stays for existing imports.
"""

from proxy.policy.observability import (
    DecisionLogConfig,
    LogsConfig,
    MetricsConfig,
    ObservabilityConfig,
    TracingConfig,
)

__all__ = ["DecisionLogConfig", "LogsConfig", "MetricsConfig", "ObservabilityConfig", "TracingConfig"]
