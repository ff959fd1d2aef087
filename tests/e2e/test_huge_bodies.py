"""Huge and many-item requests: the event loop stays responsive, the work is bounded (issue 16).

Why relative timings: on a shared 2-core machine an absolute latency threshold is noise. What a
stalled event loop does is make a health probe wait as long as the stall, i.e. for most of the
big request's own duration; a loop that stays free answers probes in a small fraction of it. So
the test compares the slowest probe with the time the big requests took, and also asks that
probes kept being answered while they were in flight.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.harness import free_port, policy_text, sidecar_harness

BUDGET = """
- type: budget
  limits:
    - {name: tpm, tokens: 1000000000, window: minute}
"""
QUIET = {"x-fake-scenario": json.dumps({"content": "ok"})}  # no 8 MB echo in the answer
REPEAT = 2


def _prose(chars: int, seed: int) -> str:
    """Word salad of ``chars`` characters: real BPE work (not one repeated character)."""
    rnd = random.Random(seed)
    words = ["policy", "sidecar", "token", "budget", "stream", "loop", "latency", "model", "prompt"]
    out: list[str] = []
    size = 0
    while size < chars:
        w = rnd.choice(words) + rnd.choice(["", "s", "ed", "ing"]) + rnd.choice([" ", ", ", ". "])
        out.append(w)
        size += len(w)
    return "".join(out)[:chars]


@contextlib.contextmanager
def _process(args: list[str], ready: str) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "SIDECAR_LOG_LEVEL": "warning", "SIDECAR_LOG_REQUESTS": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited"
            assert time.monotonic() < deadline, f"{args[0]} not ready"
            try:
                if httpx.get(ready, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def _sidecar_process(tmp_path: Path, plugins: str) -> Iterator[str]:
    """The sidecar and the fake upstream each in their own process, so the probes measure the
    sidecar's event loop, not the GIL of this process (where the fake would parse 8 MB)."""
    up_port, port = free_port(), free_port()
    with _process(["fake-upstream", "--port", str(up_port)], f"http://127.0.0.1:{up_port}/_fake/requests"):
        policy = tmp_path / "policy.yaml"
        policy.write_text(policy_text(f"http://127.0.0.1:{up_port}/v1", plugins))
        serve = ["serve", "--policy", str(policy), "--port", str(port), "--no-watch"]
        with _process(serve, f"http://127.0.0.1:{port}/readyz"):
            yield f"http://127.0.0.1:{port}"


def test_healthz_stays_responsive_while_8_mb_prompts_are_counted(tmp_path: Path) -> None:
    # Serialised once, sent as bytes: no 8 MB json.dumps in this process while probes run.
    raw = json.dumps(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": _prose(8_000_000, 1)}]}
    ).encode()
    with _sidecar_process(tmp_path, BUDGET) as url:
        probes: list[tuple[float, float]] = []  # (start, latency)
        done = threading.Event()

        def probe() -> None:
            with httpx.Client(timeout=60) as http:
                while not done.is_set():
                    started = time.perf_counter()
                    assert http.get(f"{url}/healthz").status_code == 200
                    probes.append((started, time.perf_counter() - started))
                    time.sleep(0.005)

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        time.sleep(0.2)  # the prober is warm (connection open) before the big requests start
        headers = {"content-type": "application/json", **QUIET}
        began = time.perf_counter()
        with httpx.Client(timeout=120) as client:
            for _ in range(REPEAT):
                r = client.post(f"{url}/v1/chat/completions", content=raw, headers=headers)
                assert r.status_code == 200, r.text
                assert r.json()["choices"][0]["message"]["content"] == "ok"
        took = time.perf_counter() - began
        done.set()
        prober.join(timeout=60)
    during = [lat for start, lat in probes if began <= start <= began + took]
    worst = max(lat for _, lat in probes)
    # A stalled loop holds one probe for about the whole count, i.e. about one request's duration
    # (measured before the fix: worst probe 1.1 s, 1.06 s per request); a free loop answers each
    # probe in a small fraction of it (measured after, on a loaded 2-core machine: worst probe
    # 25-35 ms, p99 ~24 ms, 0.28-0.30 s per request), and many while the requests are in flight.
    assert worst < 0.6 * took / REPEAT, (worst, took, len(during))
    assert len(during) >= 5, (len(during), took)


USER = {"role": "user", "content": "a"}
TOOLS = [{"type": "function", "function": {"name": f"t{i}"}} for i in range(129)]
PARTS = {"role": "user", "content": [{"type": "text", "text": "a"}] * 2049}
OVER_THE_LIMITS = [
    ("/v1/embeddings", {"model": "m", "input": ["a"] * 2049}, "too_many_inputs"),
    ("/v1/chat/completions", {"model": "m", "messages": [USER] * 2049}, "too_many_messages"),
    ("/v1/responses", {"model": "m", "input": [USER] * 2049}, "too_many_messages"),
    ("/v1/chat/completions", {"model": "m", "messages": [USER], "tools": TOOLS}, "too_many_tools"),
    ("/v1/chat/completions", {"model": "m", "messages": [PARTS]}, "too_many_content_parts"),
]


@pytest.mark.parametrize(("route", "body", "code"), OVER_THE_LIMITS)
def test_default_item_limits_refuse_before_any_plugin_runs(
    tmp_path: Path, route: str, body: dict[str, object], code: str
) -> None:
    guards = "- type: injection\n- type: pii\n- type: moderation\n"
    with sidecar_harness(tmp_path, guards) as h:
        r = httpx.post(h.base_url + route, json=body, headers=QUIET, timeout=60)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == code
        assert list(h.fake.requests) == []  # never reached the upstream
        # One below the limit passes.
        key = "input" if "input" in body else "messages"
        ok = dict(body)
        if code == "too_many_tools":
            ok["tools"] = ok["tools"][:128]  # type: ignore[index]
        elif code == "too_many_content_parts":
            ok["messages"] = [{"role": "user", "content": [{"type": "text", "text": "a"}] * 2048}]
        else:
            ok[key] = ok[key][:2048]  # type: ignore[index]
        assert httpx.post(h.base_url + route, json=ok, headers=QUIET, timeout=120).status_code == 200


def test_item_limits_are_configurable_and_apply_to_anthropic_clients(tmp_path: Path) -> None:
    import anthropic

    with sidecar_harness(tmp_path, "", "limits: {max_messages: 3, max_tools: 1}") as h:
        client = anthropic.Anthropic(base_url=h.base_url, api_key="sk-ant", max_retries=0)
        msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": "hi"} for i in range(5)]
        with pytest.raises(anthropic.BadRequestError) as err:
            client.messages.create(model="m", max_tokens=10, messages=msgs)  # type: ignore[arg-type]
        assert err.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
        assert "at most 3" in err.value.body["error"]["message"]  # type: ignore[index]
        oai = openai.OpenAI(base_url=h.v1, api_key="sk", max_retries=0)
        tools = [{"type": "function", "function": {"name": n}} for n in ("a", "b")]
        with pytest.raises(openai.BadRequestError) as oerr:
            oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], tools=tools)  # type: ignore[arg-type]
        assert oerr.value.code == "too_many_tools"
        assert list(h.fake.requests) == []


def test_deeply_nested_bodies_are_a_400_not_a_500(tmp_path: Path) -> None:
    deep: object = {}
    for _ in range(300):
        deep = {"type": "object", "properties": {"a": deep}}
    tool = {"type": "function", "function": {"name": "f", "parameters": deep}}
    with sidecar_harness(tmp_path, "- type: schema\n  stream: buffer\n") as h:
        client = openai.OpenAI(base_url=h.v1, api_key="sk", max_retries=0)
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model="m", messages=[USER], tools=[tool])  # type: ignore[list-item]
        assert err.value.code == "json_too_deep"
        assert list(h.fake.requests) == []
