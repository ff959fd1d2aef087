"""The process-wide objects every route needs, built once at startup."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.chain.decisions import DecisionSink
from proxy.policy.store import PolicyStore
from proxy.settings import Settings


@dataclass
class Sidecar:
    settings: Settings
    store: PolicyStore
    sink: DecisionSink
    draining: bool = False
