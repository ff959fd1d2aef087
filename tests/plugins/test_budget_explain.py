"""Budgets explain themselves (issue 22 item 1): messages, shadow headers, reset, fresh counters.

Real sidecar on loopback, the official ``openai`` SDK as the client, a recording fake upstream.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import openai
import pytest

from proxy.budget.explain import Demand, headers_for, refusal_message
from proxy.budget.windows import WindowState
from tests.harness import policy_text, sidecar_harness
from tests.plugins.test_budget import BODY, _budget, _sdk


def _seconds(duration: str) -> float:
    """Parse OpenAI's reset format (``1h2m3s``, ``6m0s``, ``120ms``)."""
    if duration.endswith("ms"):
        return int(duration[:-2]) / 1000
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts is not None and duration, duration
    h, m, s = (int(x or 0) for x in parts.groups())
    return h * 3600 + m * 60 + s


def test_default_max_tokens_reservation_is_explained(tmp_path: Path) -> None:
    limits = "    - {name: per-user-tokens, tokens: 300, window: minute}\n"
    with sidecar_harness(tmp_path, _budget(limits)) as h:
        with pytest.raises(openai.RateLimitError) as info:
            _sdk(h).chat.completions.create(**BODY)  # type: ignore[call-overload]
        message = info.value.message
        assert info.value.code == "request_exceeds_limit"
        assert "'per-user-tokens'" in message and "300 tokens per minute" in message
        assert "default_max_tokens (4,096) was reserved" in message
        assert "set max_tokens or max_completion_tokens" in message
        assert "lower default_max_tokens in the budget step" in message
        # The same request with a cap that fits goes through.
        ok = _sdk(h).chat.completions.create(**BODY, max_tokens=50)  # type: ignore[call-overload]
        assert ok.choices[0].message.content
        assert len(h.fake.requests) == 1


def test_an_explicit_max_tokens_is_named_not_the_default(tmp_path: Path) -> None:
    limits = "    - {name: tpm, tokens: 300, window: minute}\n"
    with sidecar_harness(tmp_path, _budget(limits, "  default_max_tokens: 100\n")) as h:
        with pytest.raises(openai.RateLimitError) as info:
            _sdk(h).chat.completions.create(**BODY, max_completion_tokens=1000)  # type: ignore[call-overload]
        assert "1,000 tokens are reserved for the answer" in info.value.message
        assert "default_max_tokens" not in info.value.message


def test_shadow_budget_sets_no_ratelimit_headers(tmp_path: Path) -> None:
    limits = "    - {name: rpm, requests: 1, window: minute}\n    - {name: tpm, tokens: 10, window: minute}\n"
    with sidecar_harness(tmp_path, _budget(limits, "  mode: shadow\n")) as h:
        for _ in range(2):  # the second one would be refused: still no header, still 200
            raw = _sdk(h).chat.completions.with_raw_response.create(**BODY)  # type: ignore[call-overload]
            assert raw.http_response.status_code == 200
            assert not [k for k in raw.headers if k.lower().startswith("x-ratelimit")]
        # Streams too.
        with httpx.stream(
            "POST", f"{h.v1}/chat/completions", json={**BODY, "stream": True}, headers={"x-tenant-id": "t1"}
        ) as r:
            r.read()
            assert r.status_code == 200
            assert not [k for k in r.headers if k.lower().startswith("x-ratelimit")]


def test_enforced_budget_still_sets_headers(tmp_path: Path) -> None:
    limits = "    - {name: rpm, requests: 5, window: minute}\n"
    with sidecar_harness(tmp_path, _budget(limits)) as h:
        raw = _sdk(h).chat.completions.with_raw_response.create(**BODY)  # type: ignore[call-overload]
        assert raw.headers["x-ratelimit-remaining-requests"] == "4"


@pytest.mark.parametrize(("window", "seconds"), [("minute", 60), ("hour", 3600), ("month", 30 * 86400)])
def test_reset_never_exceeds_the_window(tmp_path: Path, window: str, seconds: int) -> None:
    limits = (
        f"    - {{name: r, requests: 5, window: {window}}}\n"
        f"    - {{name: t, tokens: 100000, window: {window}}}\n"
    )
    with sidecar_harness(tmp_path, _budget(limits)) as h:
        raw = _sdk(h).chat.completions.with_raw_response.create(**BODY, max_tokens=20)  # type: ignore[call-overload]
        for kind in ("requests", "tokens"):
            reset = _seconds(raw.headers[f"x-ratelimit-reset-{kind}"])
            assert 0 < reset <= seconds, (kind, raw.headers[f"x-ratelimit-reset-{kind}"])


def test_a_refusal_reports_the_refusing_limit_consistently(tmp_path: Path) -> None:
    limits = (
        "    - {name: tpm, tokens: 300, window: minute}\n    - {name: rpm, requests: 50, window: minute}\n"
    )
    with sidecar_harness(tmp_path, _budget(limits)) as h:
        _sdk(h).chat.completions.create(**BODY, max_tokens=10)  # type: ignore[call-overload]
        time.sleep(0.2)  # on_complete corrects the charge to the reported usage after the answer
        with pytest.raises(openai.RateLimitError) as info:
            # fits the limit alone (~10 prompt + 285), not on top of what the first one used
            _sdk(h).chat.completions.create(**BODY, max_tokens=285)  # type: ignore[call-overload]
        headers = info.value.response.headers
        message = info.value.message
        assert info.value.code == "rate_limit_exceeded"
        needs = re.search(r"it needs ([\d,]+) tokens, ([\d,]+) tokens remain", message)
        assert needs is not None, message
        needed, remain = (int(x.replace(",", "")) for x in needs.groups())
        assert headers["x-ratelimit-limit-tokens"] == "300"
        assert int(headers["x-ratelimit-remaining-tokens"]) == remain < needed
        # Retry-After and reset say the same thing, and neither goes past the window.
        retry = int(headers["retry-after"])
        assert 1 <= retry <= 60
        assert abs(_seconds(headers["x-ratelimit-reset-tokens"]) - retry) <= 1
        assert "x-ratelimit-limit-requests" not in headers  # only the refusing limit is described


def test_message_and_header_agree_on_a_fractional_remainder() -> None:
    """A sliding window leaves fractions (here 289.5 tokens): both say 289, never 290 vs 289."""
    state = WindowState(prev=21, cur=0, now=30, window=60, limit=300)  # 10.5 still counted
    assert state.remaining == 289.5
    message = refusal_message("tpm", "tokens", "minute", state, Demand(295, 10, 285, False, 0), False)
    assert "it needs 295 tokens, 289 tokens remain" in message
    assert headers_for([("tokens", state)])["x-ratelimit-remaining-tokens"] == "289"


def test_headers_cap_reset_at_one_window() -> None:
    # 1 counted at second 30 of a minute: the estimator needs 90 s to forget it; the header says 60.
    state = WindowState(prev=0, cur=1, now=630, window=60, limit=10)
    assert state.reset_after() == 90
    assert headers_for([("requests", state)])["x-ratelimit-reset-requests"] == "1m0s"
    monthly = WindowState(prev=0, cur=1, now=100, window=30 * 86400, limit=10)
    assert headers_for([("tokens", monthly)])["x-ratelimit-reset-tokens"] == "720h0m0s"


def _shadow_then_enforce(tmp_path: Path, namespace: str) -> int:
    """Two requests in shadow against 1/hour, then enforce (maybe with a namespace): the status."""
    step = (
        "- type: headers\n  tenant_header: x-tenant-id\n- type: budget\n  id: budget\n{extra}  limits:\n"
        "    - {{name: rph, requests: 1, window: hour}}\n"
    )
    with sidecar_harness(tmp_path, step.format(extra="  mode: shadow\n")) as h:
        for _ in range(2):
            r = httpx.post(f"{h.v1}/chat/completions", json=BODY, headers={"x-tenant-id": "t"})
            assert r.status_code == 200
        first = httpx.get(f"{h.base_url}/admin/policy").json()["revision"]
        extra = f"  namespace: {namespace}\n" if namespace else ""
        h.write_policy(policy_text(h.upstream_url, step.format(extra=extra)))
        h.wait_for_revision(lambda info: info["revision"] != first)
        return httpx.post(f"{h.v1}/chat/completions", json=BODY, headers={"x-tenant-id": "t"}).status_code


def test_shadow_counts_carry_into_enforce(tmp_path: Path) -> None:
    assert _shadow_then_enforce(tmp_path, "") == 429


def test_a_new_namespace_starts_enforce_with_fresh_counters(tmp_path: Path) -> None:
    assert _shadow_then_enforce(tmp_path, "enforce-2026-12") == 200


def test_namespace_is_validated() -> None:
    from proxy.chain.registry import default_registry
    from proxy.errors import ConfigError
    from proxy.policy.loader import load_policy_text
    from proxy.policy.schema import build_policy_model

    text = policy_text(
        "http://127.0.0.1:1/v1",
        "- type: budget\n  namespace: 'a b'\n  limits: [{name: r, requests: 1, window: minute}]\n",
    )
    with pytest.raises(ConfigError, match="namespace"):
        load_policy_text(text, "p.yaml", build_policy_model(default_registry()))
