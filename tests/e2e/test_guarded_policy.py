"""The guarded policy of issue 17 through a real sidecar, with and without the one-pass pre-scan.

A support ticket (the benchmark's ``payload.ticket``, plus an API key) goes through the whole
guard stack (secrets blocklist, injection, pii with ``ner: off``, moderation on input and
output, budget) with the official ``openai`` SDK against a uvicorn-served sidecar and the
recording fake upstream. The upstream must see the ticket with its email addresses and phone
numbers replaced by placeholders and the key redacted, the client must get the addresses back,
and a second sidecar built without Hyperscan (the fallback path) must send the upstream
byte-for-byte the same request: the pre-scan changes the cost of detection, not its result.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import openai
import pytest

from proxy.detectors import multiscan
from tests.harness import sidecar_harness

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import payload

PLUGINS = """
- type: blocklist
  id: secrets
  patterns: ['sk-[A-Za-z0-9_-]{20,}']
  action: redact
- type: injection
- type: pii
  ner: "off"
- type: moderation
- type: budget
  limits:
    - {name: rpm, requests: 100000, window: minute}
"""
EMAIL = re.compile(r"[\w.]+@[\w.-]+\.\w+")


def _through_sidecar(tmp_path: Path, text: str) -> tuple[Any, str]:
    """(what the upstream received as JSON, what the client got back) for one chat request."""
    with sidecar_harness(tmp_path, PLUGINS) as h:
        client = openai.OpenAI(base_url=h.v1, api_key="sk-client-not-a-secret", max_retries=0)
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
        )
        return h.fake.requests[-1].json, reply.choices[0].message.content or ""


@pytest.mark.parametrize("size", [2048, 20000])  # inline, and offloaded to the CPU pool
def test_the_guarded_policy_redacts_and_restores_the_same_with_and_without_the_prescan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, size: int
) -> None:
    assert multiscan.available()  # the first sidecar runs the fast path
    secret = "sk-" + "Ab3" * 9  # the secrets blocklist (pre-scanned too) must redact it
    text = payload.ticket(size) + f"\nMy old key was {secret}, please revoke it."
    emails = set(EMAIL.findall(text))
    assert len(emails) >= 2
    (tmp_path / "fast").mkdir()
    sent, answer = _through_sidecar(tmp_path / "fast", text)
    upstream_text = sent["messages"][-1]["content"]
    assert not emails & set(EMAIL.findall(upstream_text))  # no address reached the model
    assert "<EMAIL_ADDRESS_1>" in upstream_text and "<PHONE_NUMBER_1>" in upstream_text
    assert secret not in upstream_text and "was [REDACTED], please" in upstream_text
    assert emails <= set(EMAIL.findall(answer))  # the echoed answer got them back

    monkeypatch.setattr(multiscan, "_hs", None)  # no Hyperscan: the plain path
    monkeypatch.setattr(multiscan, "_built", {})
    monkeypatch.setattr(multiscan, "_warned", False)
    (tmp_path / "plain").mkdir()
    with caplog.at_level("WARNING", logger="policy_sidecar"):
        plain_sent, plain_answer = _through_sidecar(tmp_path / "plain", text)
    assert "hyperscan is not installed" in caplog.text  # this sidecar built its engine without it
    assert plain_sent["messages"] == sent["messages"]
    assert plain_answer.split("You said:")[-1] == answer.split("You said:")[-1]
