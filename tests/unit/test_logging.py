"""Logs are one JSON object per line, decisions carry their fields, and no prompt text."""

from __future__ import annotations

import json
import logging
import random
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.chain.decisions import Decision, DecisionSink
from proxy.observability import content
from proxy.observability.logging import JsonFormatter
from tests.harness import SidecarHarness, sidecar_harness


def test_decision_log_line_is_flat_json_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    sink = DecisionSink(keep=2)
    decisions = [
        Decision("r1", "rev", "secrets", "request_match", "redact", "shadow", detail={"count": 2})
    ] * 3
    caplog.set_level(logging.INFO, logger="policy_sidecar.decisions")
    sink.emit(decisions[:1])
    assert not caplog.records  # at INFO the access log and the decision log carry decisions
    sink.recent.clear()
    sink.counts.clear()
    caplog.set_level(logging.DEBUG, logger="policy_sidecar.decisions")
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


# The masking as first specified: three regexes over the whole text (quadratic on long runs).
_SPEC_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_SPEC_TOKEN = re.compile(
    r"\b(?:sk|pk|rk|ghp|xox[abp]|AKIA)[-_A-Za-z0-9]{8,}|\b(?=[A-Za-z_-]*\d)[A-Za-z0-9_-]{24,}\b"
)


def _spec_redact(text: str) -> str:
    text = _SPEC_EMAIL.sub("[EMAIL]", text)
    text = _SPEC_TOKEN.sub("[TOKEN]", text)
    return re.sub(r"\d", "#", text)[: content.MAX_CHARS]


@pytest.mark.parametrize(
    "text",
    [
        "a@b.com.x@c.com",  # a second email right after the first one's match
        "bob@example.org, alice.b+tag@mail.example.co.uk; x@y.z @nobody.com me@",
        "@@a@@b@c.de@",
        "éa@b.com é-sk_abcdefghijk é" + "a" * 30 + "1é",  # \b next to non-ASCII word characters
        "--" + "ab-" * 12 + "1--",
        "sk-12345678 pk_abcdefgh rk-abcdefg AKIAABCDEFGH xoxb-abcdefgh1 ghp_" + "Z" * 40,
        "a" * 23 + "1 " + "a" * 24 + "1 " + "_" * 30 + "9",
        "x" * 3000,  # past MAX_CHARS
    ],
    ids=lambda text: f"{text[:12]!r}..{len(text)}",
)
def test_redact_finds_exactly_what_the_specification_regexes_find(text: str) -> None:
    assert content.redact(text) == _spec_redact(text)


def test_redact_matches_the_specification_on_random_hostile_text() -> None:
    rng = random.Random(20261123)
    alphabet = "aZx19_-.@%+ é\nskpghAKI"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        assert content.redact(text) == _spec_redact(text), text


class _Counting:
    """Wraps a compiled pattern and adds up the characters each call lets the engine look at."""

    def __init__(self, pattern: re.Pattern[str], lookahead: bool = False) -> None:
        self.pattern = pattern
        self.chars = 0
        # The digit lookahead rescans a digitless run from every word boundary (n² steps): it
        # may only be given pieces with a digit, where the first match takes the whole run.
        self.lookahead = lookahead

    def match(self, text: str, pos: int = 0) -> re.Match[str] | None:
        # Unbounded to the right: the engine can only walk the domain-character run from pos.
        self.chars += len(re.compile(r"[A-Za-z0-9.-]*").match(text, pos)[0]) + 1  # type: ignore[index]
        return self.pattern.match(text, pos)

    def finditer(self, text: str, pos: int = 0, endpos: int = sys.maxsize) -> Iterator[re.Match[str]]:
        self.chars += min(endpos, len(text)) - pos
        assert not self.lookahead or re.search(r"\d", text[pos:endpos])
        return self.pattern.finditer(text, pos, endpos)

    def search(self, text: str, pos: int = 0, endpos: int = sys.maxsize) -> re.Match[str] | None:
        self.chars += min(endpos, len(text)) - pos
        return self.pattern.search(text, pos, endpos)

    def sub(self, repl: str, text: str) -> str:
        self.chars += len(text)
        return self.pattern.sub(repl, text)


@pytest.mark.parametrize(
    "text",
    [
        "x" * 200_000,  # no "@": the specification's email regex retried from every position
        "-" * 200_000,
        "1a" * 100_000,
        "a." * 100_000,
        "a@" * 100_000,
        "a" * 100_000 + "@" + "b." * 50_000,
        "x-" * 100_000,  # a word boundary every 2 characters and no digit: the token lookahead
        "x-" * 100_000 + "1",
        "1" + "x-" * 100_000,
        ("ab@cd-" * 5 + "é") * 10_000,
    ],
    ids=lambda text: f"{text[:12]!r}..{len(text)}",
)
def test_redact_hands_the_regex_engine_linear_work_on_adversarial_text(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counts work, not time: the text the regexes may scan adds up to a few times its length.

    Each bounded piece is matched by a regex that is linear in its piece (no nested or
    overlapping quantifiers on it), so ``redact`` is linear; the specification regexes on the
    same inputs would need on the order of n² steps (minutes at 200 KB).
    """
    counters = {
        name: _Counting(getattr(content, name), lookahead=name == "_TOKEN")
        for name in ("_DOMAIN", "_TOKEN", "_PREFIXED_TOKEN")
    }
    digit = _Counting(content._DIGIT)
    for name, counter in counters.items():
        monkeypatch.setattr(content, name, counter)
    monkeypatch.setattr(content, "_DIGIT", digit)
    monkeypatch.setattr(content, "_TOKEN_RUN", _Counting(content._TOKEN_RUN))
    result = content.redact(text)
    scanned = sum(c.chars for c in counters.values()) + digit.chars + content._TOKEN_RUN.chars  # type: ignore[attr-defined]
    assert scanned <= 4 * len(text) + 16
    assert len(result) <= content.MAX_CHARS
    short = text[:3000]  # small enough for the quadratic specification: the same answer
    monkeypatch.undo()
    assert content.redact(short) == _spec_redact(short)
