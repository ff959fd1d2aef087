"""Two steps of one plugin type keep separate per-request state (issue 24, bug 1).

The calibration use case puts a shadow candidate budget next to the enforced one. Both steps
book a reservation on the request; each must release its own concurrency slots and correct its
own token charges exactly once, however many steps of the type the policy holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai

from tests.harness import SidecarHarness, sidecar_harness

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 500}

POLICY = (
    "- type: headers\n  tenant_header: x-tenant-id\n"
    "- type: budget\n  id: enforced\n  limits:\n"
    "    - {name: one-at-a-time, concurrent: 1}\n"
    "    - {name: tpm, tokens: 100000, window: hour}\n"
    "- type: budget\n  id: candidate\n  mode: shadow\n  limits:\n"
    "    - {name: tpm, tokens: 100000, window: hour}\n"
)


def _used(h: SidecarHarness, step: str) -> dict[str, float]:
    report: dict[str, Any] = httpx.get(f"{h.base_url}/admin/plugins/{step}", params={"tenant": "t1"}).json()
    return {lim["name"]: lim["used"] for lim in report["limits"]}


def _eventually(check: Callable[[], bool]) -> bool:
    """``on_complete`` runs after the answer is sent: poll instead of guessing a delay."""
    for _ in range(100):
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_two_budget_steps_release_their_own_slots_and_correct_charges_once(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, POLICY) as h:
        client = openai.OpenAI(
            base_url=h.v1, api_key="sk-client", max_retries=0, default_headers={"x-tenant-id": "t1"}
        )
        total = 0
        for _ in range(2):  # the second would get 429 if the first kept its slot
            answer = client.chat.completions.create(**BODY)  # type: ignore[call-overload]
            assert answer.usage is not None
            total += answer.usage.total_tokens
            assert _eventually(lambda: _used(h, "enforced")["one-at-a-time"] == 0)
        # Each step charged the real usage once: not the 500-token reserve, not twice the correction.
        assert _eventually(lambda: _used(h, "enforced")["tpm"] == total), _used(h, "enforced")
        assert _used(h, "candidate")["tpm"] == total
