"""The decision-log sink: one JSON line per decision, never raw text, per-policy destination."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.chain.context import ActiveStep, RequestContext
from proxy.chain.plugin import Outcome
from proxy.chain.registry import default_registry
from proxy.models.chat import Route
from proxy.observability.decision_log import DecisionLog, redact, text_hash
from proxy.policy.compiler import CompiledPolicy
from proxy.policy.store import PolicyStore
from tests.harness import sidecar_harness

PROMPT = "Mail jane.doe@example.com the key sk-abcdefghijklmnopqrstuvwxyz0123 and 4111 1111 1111 1111"


def _policy(tmp_path: Path, decision_log: str) -> CompiledPolicy:
    text = (
        "version: 1\nupstreams: {default: {base_url: 'builtin:demo'}}\nplugins: []\n"
        f"observability:\n  decision_log: {decision_log}\n"
    )
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return PolicyStore(path, default_registry()).compile_text(text, str(path))


def _ctx(text: str | None = PROMPT) -> RequestContext:
    ctx = RequestContext("req-1", Route.CHAT, {}, "rev1", "gpt-4o")
    ctx.active = ActiveStep("injection", "shadow")
    ctx.record("prompt_injection", "block", score=0.91, threshold=0.5, detail={"rules": ["r1"]}, text=text)
    ctx.record("prompt_injection", "allow", score=0.1, threshold=0.5)
    return ctx


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_redact_masks_emails_keys_and_digits_and_truncates() -> None:
    out = redact(PROMPT)
    for secret in ("jane.doe", "example.com", "sk-abc", "4111"):
        assert secret not in out
    assert out.startswith("Mail ")
    assert len(redact("word " * 100, max_chars=40)) == 40
    # A long text is cut before masking, never inside an address the mask would then miss.
    cut = redact("x " * 12 + "jane.doe@example.com " * 10, max_chars=40)
    assert "jane" not in cut and "[EMAIL]" in cut


def test_text_hash_is_sha256_or_keyed_hmac() -> None:
    assert text_hash("hi", None) == "sha256:" + hashlib.sha256(b"hi").hexdigest()
    keyed = text_hash("hi", b"k")
    assert keyed == "hmac-sha256:" + hmac.new(b"k", b"hi", hashlib.sha256).hexdigest()
    assert keyed != text_hash("hi", b"other")


def test_one_line_per_decision_with_the_record_fields_and_no_text_by_default(tmp_path: Path) -> None:
    out = tmp_path / "d.jsonl"
    sink = DecisionLog()
    sink(_policy(tmp_path, f"{{path: '{out}'}}"), _ctx(), Outcome(200))
    first, second = _lines(out)
    assert {k: first[k] for k in ("request_id", "revision", "plugin", "rule", "action", "mode")} == {
        "request_id": "req-1",
        "revision": "rev1",
        "plugin": "injection",
        "rule": "prompt_injection",
        "action": "block",
        "mode": "shadow",
    }
    assert (first["score"], first["threshold"], first["status"], first["route"]) == (
        0.91,
        0.5,
        200,
        "chat.completions",
    )
    assert second["action"] == "allow"
    assert "text_hash" not in first and "text_redacted" not in first
    assert "jane" not in out.read_text() and "4111" not in out.read_text()


def test_text_hash_and_redacted_modes(tmp_path: Path) -> None:
    out = tmp_path / "d.jsonl"
    DecisionLog()(_policy(tmp_path, f"{{path: '{out}', text: hash}}"), _ctx(), Outcome(400))
    hashed, no_text = _lines(out)
    assert hashed["text_hash"] == text_hash(PROMPT, None)
    assert "text_hash" not in no_text  # the plugin reported no text for this one
    out.unlink()
    DecisionLog()(
        _policy(tmp_path, f"{{path: '{out}', text: redacted, redacted_chars: 30}}"), _ctx(), Outcome(400)
    )
    redacted = _lines(out)[0]["text_redacted"]
    assert redacted == redact(PROMPT, 30) and len(redacted) <= 30
    assert "jane" not in out.read_text()


def test_action_filter_and_moving_the_log_on_reload(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    sink = DecisionLog()
    sink(_policy(tmp_path, f"{{path: '{a}', actions: [block]}}"), _ctx(), Outcome(400))
    assert [line["action"] for line in _lines(a)] == ["block"]
    sink(_policy(tmp_path, f"{{path: '{b}'}}"), _ctx(), Outcome(400))
    assert len(_lines(b)) == 2 and len(_lines(a)) == 1
    sink(_policy(tmp_path, "{}"), _ctx(), Outcome(400))  # log switched off: nothing more anywhere
    assert len(_lines(b)) == 2 and sink.lines == 3


def test_stdout(tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    DecisionLog()(_policy(tmp_path, "{path: stdout}"), _ctx(), Outcome(200))
    lines = capfdbinary.readouterr().out.decode().splitlines()
    assert [json.loads(line)["action"] for line in lines] == ["block", "allow"]


def test_an_unwritable_path_drops_lines_and_never_raises(tmp_path: Path) -> None:
    sink = DecisionLog()
    sink(_policy(tmp_path, f"{{path: '{tmp_path}/missing/dir/d.jsonl'}}"), _ctx(), Outcome(200))
    assert sink.dropped == 2 and sink.lines == 0


def test_a_running_sidecar_logs_shadow_decisions_per_its_policy(tmp_path: Path) -> None:
    out = tmp_path / "decisions.jsonl"
    extra = f"observability:\n  decision_log: {{path: '{out}', text: hash, flush_seconds: 0.05}}"
    plugins = "- type: blocklist\n  id: words\n  mode: shadow\n  keywords: [forbidden]\n"
    with sidecar_harness(tmp_path, plugins, extra=extra) as h:
        body = {"model": "m", "messages": [{"role": "user", "content": "a forbidden word"}]}
        assert httpx.post(f"{h.v1}/chat/completions", json=body).status_code == 200
        deadline = time.monotonic() + 10
        while not (out.exists() and len(out.read_text().splitlines()) >= 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = _lines(out)
    # The request, and the fake upstream's echo of it in the answer.
    assert sorted((d["plugin"], d["rule"], d["action"], d["mode"]) for d in lines) == [
        ("words", "request_match", "block", "shadow"),
        ("words", "response_match", "block", "shadow"),
    ]
    assert "forbidden" not in out.read_text()
