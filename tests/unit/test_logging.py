"""Logs are one JSON object per line, decisions carry their fields, and no prompt text."""

from __future__ import annotations

import json
import logging

import pytest

from proxy.chain.decisions import Decision, DecisionSink
from proxy.observability.logging import JsonFormatter


def test_decision_log_line_is_flat_json(caplog: pytest.LogCaptureFixture) -> None:
    sink = DecisionSink(keep=2)
    caplog.set_level(logging.INFO, logger="policy_sidecar.decisions")
    decisions = [
        Decision("r1", "rev", "secrets", "request_match", "redact", "shadow", detail={"count": 2})
    ] * 3
    sink.emit(decisions)
    line = json.loads(JsonFormatter().format(caplog.records[0]))
    assert line["msg"] == "decision"
    assert (line["plugin"], line["action"], line["mode"], line["detail"]) == (
        "secrets",
        "redact",
        "shadow",
        {"count": 2},
    )
    assert len(sink.recent) == 2  # bounded
    assert sink.snapshot() == [
        {"plugin": "secrets", "rule": "request_match", "action": "redact", "mode": "shadow", "count": 3}
    ]
