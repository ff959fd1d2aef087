"""Through a real sidecar: a shadow step's headers, flags, state and edits never reach anyone (24.2).

A ``leaky`` test plugin writes response and upstream headers, flags, state and request fields
and edits texts in every hook; a shadow budget would send ``x-ratelimit-*`` headers. In shadow
the client (official openai SDK) and the provider (recording fake) see none of it, streamed or
not, while the decisions are recorded with ``mode: shadow``. The same plugin enforced is the
control that shows the assertions can fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai

from proxy.chain.registry import Registry, default_registry
from tests.harness import SidecarHarness, sidecar_harness
from tests.shadow_support import Leaky

BODY: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}
ECHO = "Hello from the demo upstream. You said: hello there"


def _registry() -> Registry:
    registry = default_registry()
    registry.register(Leaky)
    return registry


def _policy(mode: str) -> str:
    return (
        f"- type: leaky\n  mode: {mode}\n"
        f"- type: budget\n  id: candidate\n  mode: {mode}\n  limits:\n"
        "    - {name: rpm, requests: 100, window: hour}\n"
    )


def _client(h: SidecarHarness) -> openai.OpenAI:
    return openai.OpenAI(base_url=h.v1, api_key="sk-client", max_retries=0)


def _leaked(headers: httpx.Headers) -> list[str]:
    return sorted(k for k in headers if k.startswith(("x-leak", "x-ratelimit")) or k == "x-sidecar-flags")


def _exchange(h: SidecarHarness) -> tuple[list[str], str, list[str], str]:
    """One non-streamed and one streamed call: leaked headers and texts of each."""
    raw = _client(h).chat.completions.with_raw_response.create(**BODY)
    text = raw.parse().choices[0].message.content or ""
    with _client(h).chat.completions.with_streaming_response.create(**BODY, stream=True) as stream:
        stream_headers = stream.headers
        streamed = "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)
    return _leaked(raw.headers), text, _leaked(stream_headers), streamed


def _upstream_saw(h: SidecarHarness) -> list[tuple[list[str], str]]:
    return [
        (sorted(k for k in r.headers if k.startswith("x-leak")), r.json["messages"][0]["content"])
        for r in h.fake.requests
    ]


def test_nothing_a_shadow_step_does_escapes_streamed_or_not(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, _policy("shadow"), registry=_registry()) as h:
        headers, text, stream_headers, streamed = _exchange(h)
        assert headers == [] and stream_headers == []
        assert text == ECHO and streamed == ECHO
        assert _upstream_saw(h) == [([], "hello there")] * 2
        counts = httpx.get(f"{h.base_url}/admin/decisions").json()["counts"]
        leaky = {(c["rule"], c["mode"]) for c in counts if c["plugin"] == "leaky"}
        assert ("leak_request", "shadow") in leaky and ("leak_stream", "shadow") in leaky
        assert {mode for _, mode in leaky} == {"shadow"}


def test_control_the_same_steps_enforced_do_change_the_exchange(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, _policy("enforce"), registry=_registry()) as h:
        headers, text, stream_headers, streamed = _exchange(h)
        assert {"x-leak-request", "x-sidecar-flags", "x-ratelimit-limit-requests"} <= set(headers)
        assert {"x-leak-request", "x-leak-open_stream", "x-ratelimit-limit-requests"} <= set(stream_headers)
        assert "LEAKED" in text and "LEAKED" in streamed
        assert _upstream_saw(h) == [(["x-leak-up-request"], "LEAKED")] * 2
