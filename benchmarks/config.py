"""Benchmark settings: targets, row names, run modes and measuring order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CHAT = "/v1/chat/completions"
BASELINE = "pt-aiohttp"
TARGET_CPU_RATIO = 1.25
TARGET_ADDED_MS = 1.0
TARGET_RSS_MB = 100.0
PACED_HOLD_MS = 10.0  # half a paced event (20 ms): more added TTFT than this means text was held back
#: Resilience wrappers on the happy path: their CPU overhead over the pass-through at most this
#: many times the empty policy's.
TARGET_RESILIENCE_OVERHEAD = 1.05
#: Plugin rows: added p50 at 1 connection vs. the empty policy (the one with the same body), in ms.
TARGET_BUDGET_ADDED_MS = {
    "sidecar-budget-mem": 0.3,
    "sidecar-budget-redis": 1.0,
    "sidecar-inj-mod": 1.0,  # injection + moderation, default offline layers, 2 KB prompt
    "sidecar-pii": 2.0,  # pii, default engine, 2 KB prompt (for information: its issue's target)
    "sidecar-telemetry": 0.3,  # tracing (ratio 1.0, in-memory exporter) + metrics vs the same policy without
}
#: How the target lines name the content-scanning rows.
TARGET_TEXT = {
    "sidecar-inj-mod": "both plugins (default offline layers) add < 1 ms p50 per request for a 2 KB prompt "
    "vs the empty policy",
    "sidecar-pii": "pii (default engine, for information) adds < 2 ms p50 per request for a 2 KB prompt "
    "vs the empty policy",
    "sidecar-telemetry": "tracing (sample ratio 1.0, in-memory exporter) + metrics add < 0.3 ms p50 per "
    "request vs the same policy without them",
}
#: Rows compared with another row than the empty policy: row -> its reference row.
REFERENCE_ROWS = {"sidecar-telemetry": "sidecar-default-notel"}
#: Rows driven with the ~2 KB prose body (``payload.PROSE_2K``), compared with ``sidecar-empty-2k``.
PROSE_ROWS = ("sidecar-injection", "sidecar-moderation", "sidecar-inj-mod", "sidecar-pii")
STORM_CONNECTIONS = 8
STORM_FAIL_RATIO = 0.5
STORM_SEED = 20240601
#: Limits the budget rows never reach (the plugin still counts, reserves and corrects).
BUDGET_LIMITS = [
    {"name": "rpm", "requests": 100_000_000, "window": "minute"},
    {"name": "tpm", "tokens": 100_000_000_000, "window": "minute"},
]
RESILIENCE_PLUGINS: list[Any] = [
    {"type": "fallback"},
    {"type": "retry", "max_attempts": 3, "base_delay": 0.05},
    {"type": "circuit_breaker"},
    {"type": "bulkhead", "max_concurrent": 64},
]
#: Rows whose cost is judged against the empty policy (their profiles are diffed against it).
PLUGIN_ROWS = (
    "sidecar-resilience",
    "sidecar-budget-mem",
    "sidecar-budget-redis",
    *PROSE_ROWS,
    "sidecar-telemetry",
)
#: ``--profile auto`` profiles the rows that failed a target while the run stays within this
#: many seconds, in this order (the two references first: the others are diffed against them).
AUTO_PROFILE_BUDGET_S = 285
PROFILE_PRIORITY = (BASELINE, "sidecar-empty", "sidecar-empty-2k", *PLUGIN_ROWS, "sidecar-default")


@dataclass
class Mode:
    rounds: int
    d16: int  # seconds of load at 16 connections, per row and round
    d1: int  # seconds of load at 1 connection, per row and round
    ttft: int  # streamed requests per row (all rows interleaved)
    warmup: int  # seconds at 16 connections before a row's first round
    paced: int  # paced streamed requests per row (pipe, hold back or buffer?)
    profile_s: int  # py-spy seconds per profiled row
    storm: int  # seconds of fault storm


FULL = Mode(rounds=6, d16=2, d1=1, ttft=100, warmup=1, paced=5, profile_s=8, storm=30)
QUICK = Mode(rounds=2, d16=1, d1=1, ttft=40, warmup=1, paced=2, profile_s=5, storm=8)
#: Measuring order within a round (reversed every other round): the baseline and the sidecar
#: rows sit next to each other, so each round's ratio compares measurements seconds apart; the
#: plugin rows follow the empty policy they are compared with.
MEASURE_ORDER = [
    "direct",
    "pt-aiohttp",
    "sidecar-empty",
    "sidecar-resilience",
    "sidecar-budget-mem",
    "sidecar-budget-redis",
    "sidecar-empty-2k",
    "sidecar-injection",
    "sidecar-moderation",
    "sidecar-inj-mod",
    "sidecar-pii",
    "sidecar-default",
    "sidecar-default-notel",
    "sidecar-telemetry",
    "pt-httpx-aiohttp",
    "pt-httpx",
]

#: The guarded policy of issue 17: the full guard stack a cautious deployment runs. Order as a
#: policy would list it: wrappers outermost, then the cheap literal guard, then the content scans.
GUARDED_PLUGINS: list[Any] = [
    {"type": "timeout", "total": 30},
    {"type": "retry", "max_attempts": 3, "base_delay": 0.05},
    {"type": "circuit_breaker"},
    {
        "type": "blocklist",
        "id": "secrets",
        "patterns": ["sk-[A-Za-z0-9_-]{20,}", "-----BEGIN [A-Z ]*PRIVATE KEY-----"],
        "action": "redact",
        "replacement": "[REDACTED_SECRET]",
        "max_match_chars": 200,
    },
    {"type": "injection"},
    {"type": "pii", "ner": "off"},
    {"type": "moderation"},
    {"type": "budget", "limits": BUDGET_LIMITS},
]
#: The guarded policy's steps one at a time (per-plugin rows): row suffix -> plugins.
GUARD_PARTS: dict[str, list[Any]] = {
    "secrets": [GUARDED_PLUGINS[3]],
    "injection": [GUARDED_PLUGINS[4]],
    "pii": [GUARDED_PLUGINS[5]],
    "moderation": [GUARDED_PLUGINS[6]],
    "budget": [GUARDED_PLUGINS[7]],
    "wrappers": GUARDED_PLUGINS[:3],
}
#: Prompt sizes (characters of support ticket) of the guarded rows.
GUARD_SIZES = (2048, 16384, 65536)
