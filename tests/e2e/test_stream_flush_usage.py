"""A usage event that only comes out at the SSE parser's flush still reaches budgets (issue 24, bug 2).

Some upstreams end the stream without the blank line after the last event (and without
``[DONE]``): the parser yields that event only on flush. The flush path must account it exactly
like the main decode loop does, or budgets fall back to counting the streamed text. (Without
``[DONE]`` the stream is also incomplete: the client gets what arrived, then the in-band
``upstream_stream_incomplete`` error; the usage still counts.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.harness import SidecarHarness, sidecar_harness

POLICY = (
    "- type: headers\n  tenant_header: x-tenant-id\n"
    "- type: budget\n  id: budget\n  limits:\n"
    "    - {name: out, output_tokens: 1000000, window: hour}\n"
)

REPORTED = {"prompt_tokens": 7, "completion_tokens": 1234, "total_tokens": 1241}


def _chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> str:
    choices = [{"index": 0, "delta": delta, "finish_reason": finish}] if delta or finish else []
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": choices,
        **({"usage": usage} if usage else {}),
    }
    return "data: " + json.dumps(body)


RAW = (
    "\n\n".join(
        [
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"content": "hello world"}),
            _chunk({}, finish="stop"),
        ]
    )
    + "\n\n"
    + _chunk({}, usage=REPORTED)  # the last event: no blank line after it, no [DONE]
)


def _out_used(h: SidecarHarness) -> float:
    report = httpx.get(f"{h.base_url}/admin/plugins/budget", params={"tenant": "t1"}).json()
    return float({lim["name"]: lim["used"] for lim in report["limits"]}["out"])


def test_usage_event_released_only_at_parser_flush_reaches_the_budget(tmp_path: Path) -> None:
    scenario = {"raw_body": RAW, "content_type": "text/event-stream"}
    with sidecar_harness(tmp_path, POLICY) as h:
        client = openai.OpenAI(
            base_url=h.v1, api_key="sk-client", max_retries=0, default_headers={"x-tenant-id": "t1"}
        )
        stream = client.chat.completions.create(  # type: ignore[call-overload]
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-fake-scenario": json.dumps(scenario)},
        )
        chunks = []
        with pytest.raises(openai.APIError, match="ended the stream before it was complete"):
            for chunk in stream:
                chunks.append(chunk)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "hello world"
        assert [c.usage.completion_tokens for c in chunks if c.usage] == [1234]  # the client got it too
        for _ in range(100):  # on_complete runs after the stream ended: poll, no fixed delay
            if _out_used(h) != 0:
                break
            time.sleep(0.05)
        # The provider's count, not the two tokens of "hello world" counted as a fallback.
        assert _out_used(h) == REPORTED["completion_tokens"]
