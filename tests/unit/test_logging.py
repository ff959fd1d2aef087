"""Logs are one JSON object per line, decisions carry their fields, and no prompt text."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.chain.decisions import Decision, DecisionSink
from proxy.observability.logging import JsonFormatter
from tests.harness import SidecarHarness, sidecar_harness


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


def _access_lines(caplog: pytest.LogCaptureFixture, n: int) -> list[dict[str, Any]]:
    """The access log lines as the JSON formatter writes them (finished after the answer: wait)."""
    for _ in range(500):
        records = [r for r in caplog.records if r.name == "policy_sidecar.access" and r.msg == "request"]
        if len(records) >= n:
            return [json.loads(JsonFormatter().format(r)) for r in records]
        time.sleep(0.01)
    raise AssertionError("no access log line")


SECRET_PROMPT = "mail bob@example.org, call 555 0100, key sk-" + "B" * 30
ACCESS_PLUGINS = """
- type: headers
  tenant_header: x-tenant-id
- type: blocklist
  id: secrets
  patterns: ['sk-[A-Za-z0-9]{20,}']
  action: redact
"""


def _chat(h: SidecarHarness) -> httpx.Response:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": SECRET_PROMPT}]}
    return httpx.post(f"{h.v1}/chat/completions", json=body, headers={"x-tenant-id": "acme"}, timeout=20)


def test_access_log_has_ids_target_latency_and_decisions_but_no_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="policy_sidecar.access")
    with sidecar_harness(tmp_path, ACCESS_PLUGINS, log_requests=True) as h:
        r = _chat(h)
        [line] = _access_lines(caplog, 1)
    assert line["request_id"] == r.headers["x-request-id"]
    assert line["revision"] == r.headers["x-sidecar-revision"]
    assert (line["tenant"], line["target"], line["status"], line["attempts"]) == ("acme", "default", 200, 1)
    assert line["latency_ms"] >= line["upstream_ms"] > 0
    assert line["decisions"] == [
        {"plugin": "secrets", "rule": "request_match", "action": "redact", "mode": "enforce"}
    ]
    text = json.dumps(line)
    for leaked in ("bob@example.org", "555 0100", "sk-BBBB", "You said"):
        assert leaked not in text
    assert "content_input" not in line


def test_redacted_content_logging_is_a_policy_switch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="policy_sidecar.access")
    extra = "observability:\n  logs:\n    content: redacted\n"
    with sidecar_harness(tmp_path, ACCESS_PLUGINS, extra, log_requests=True) as h:
        assert _chat(h).status_code == 200
        [line] = _access_lines(caplog, 1)
    sent = json.loads(line["content_input"])
    assert sent == [{"role": "user", "content": "mail [EMAIL], call ### ####, key [REDACTED]"}]
    assert "You said" in line["content_output"] and "bob@example.org" not in line["content_output"]


def test_redact_masks_emails_digits_and_key_like_tokens() -> None:
    from proxy.observability.content import redact

    assert redact("a@b.io 12-34 ghp_abcdefghijklmnop token abcdefghijklmnopqrstuvwx1") == (
        "[EMAIL] ##-## [TOKEN] token [TOKEN]"
    )
    assert redact("x" * 5000) == "x" * 2000
