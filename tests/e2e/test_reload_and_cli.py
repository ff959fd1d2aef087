"""Hot reload under traffic, and the CLI as a user runs it (real processes, real signals)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.harness import free_port, sidecar_harness, wait_ready

BLOCK = "- type: blocklist\n  id: kw\n  keywords: [{word}]\n"


def test_reload_under_traffic_has_no_failed_requests(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, BLOCK.format(word="w0")) as h:
        c = openai.OpenAI(base_url=h.v1, api_key="x", max_retries=0)
        failures: list[BaseException] = []
        revisions: set[str] = set()
        stop = threading.Event()

        def traffic(stream: bool) -> None:
            while not stop.is_set():
                try:
                    if stream:
                        with c.chat.completions.with_streaming_response.create(
                            model="m", messages=[{"role": "user", "content": "hello"}], stream=True
                        ) as r:
                            revisions.add(r.headers["x-sidecar-revision"])
                            text = "".join(
                                ch.choices[0].delta.content or "" for ch in r.parse() if ch.choices
                            )
                    else:
                        raw = c.chat.completions.with_raw_response.create(
                            model="m", messages=[{"role": "user", "content": "hello"}]
                        )
                        revisions.add(raw.headers["x-sidecar-revision"])
                        text = raw.parse().choices[0].message.content or ""
                    assert text.endswith("You said: hello")
                except BaseException as exc:
                    failures.append(exc)

        threads = [threading.Thread(target=traffic, args=(i % 2 == 0,)) for i in range(4)]
        for t in threads:
            t.start()
        try:
            for i in range(1, 6):
                time.sleep(0.3)
                h.write_policy(h.policy_path.read_text().replace(f"w{i - 1}", f"w{i}"))
                h.wait_for_revision(
                    lambda p, i=i: (
                        p["last_reload"]["result"] == "reloaded"
                        and h.sidecar.store.current.policy.plugins[0].keywords == (f"w{i}",)
                    )
                )
            time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        assert failures == []
        assert len(revisions) >= 4  # traffic really spanned several revisions
        assert h.sidecar.store.reloads_ok == 5


def test_in_flight_stream_finishes_on_the_revision_it_started_with(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, BLOCK.format(word="never")) as h:
        old = h.sidecar.store.current.revision
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
        scenario = {
            "content": "this answer mentions banana twice: banana",
            "chunk_size": 3,
            "chunk_delay": 0.05,
        }
        with httpx.stream(
            "POST", f"{h.v1}/chat/completions", json=body, headers={"x-fake-scenario": json.dumps(scenario)}
        ) as r:
            assert r.headers["x-sidecar-revision"] == old
            chunks = r.iter_bytes()
            first = next(chunks)
            h.write_policy(h.policy_path.read_text().replace("never", "banana"))
            h.wait_for_revision(lambda p: p["revision"] != old)
            rest = b"".join(chunks)
        events = [
            json.loads(line[6:])
            for line in (first + rest).decode().split("\n\n")
            if line.startswith("data: {")
        ]
        text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))
        assert not any("error" in e for e in events)  # old policy: not blocked
        assert text == scenario["content"]
        r2 = httpx.post(
            f"{h.v1}/chat/completions",
            json={**body, "stream": False},
            headers={"x-fake-scenario": json.dumps(scenario)},
        )
        assert r2.status_code == 400  # the new policy applies to the next request


# -- CLI ---------------------------------------------------------------------------------

GOOD = (
    "version: 1\nupstreams:\n  default:\n    base_url: builtin:demo\n"
    "plugins:\n  - type: blocklist\n    keywords: [a]\n"
)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy", *args], capture_output=True, text=True, timeout=60)


def test_check_and_schema(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    ok = _cli("check", str(good))
    assert ok.returncode == 0 and "revision" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("keywords: [a]", "keywords: [a]\n    typo_field: 1"))
    failed = _cli("check", str(bad))
    assert failed.returncode == 1
    assert f"{bad}:8:5: plugins[0].typo_field: Extra inputs are not permitted" in failed.stderr
    schema = json.loads(_cli("schema").stdout)
    assert schema["title"] == "Policy" and "plugins" in schema["properties"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_serve_reloads_on_sighup_and_stops_on_sigterm(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(GOOD)
    port, admin_port = free_port(), free_port()
    env = {**os.environ, "SIDECAR_LOG_LEVEL": "warning", "SIDECAR_ADMIN_TOKEN": "secret-token"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "proxy",
            "serve",
            "--policy",
            str(policy),
            "--port",
            str(port),
            "--admin-port",
            str(admin_port),
            "--no-watch",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    url, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
    try:
        wait_ready(url, proc)
        assert httpx.get(f"{url}/admin/policy").status_code == 404  # admin lives only on its own port
        first = httpx.get(f"{admin}/admin/policy").json()["revision"]
        policy.write_text(GOOD.replace("[a]", "[b]"))
        time.sleep(0.3)
        assert httpx.get(f"{admin}/admin/policy").json()["revision"] == first  # watching is off
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while httpx.get(f"{admin}/admin/policy").json()["revision"] == first and time.monotonic() < deadline:
            time.sleep(0.05)
        info = httpx.get(f"{admin}/admin/policy").json()
        assert info["revision"] != first and info["last_reload"]["trigger"] == "sighup"
        policy.write_text(GOOD.replace("[a]", "[c]"))
        auth = {"authorization": "Bearer secret-token"}
        assert httpx.post(f"{admin}/admin/reload").status_code == 401
        reloaded = httpx.post(f"{admin}/admin/reload", headers=auth).json()
        assert reloaded["result"] == "reloaded" and reloaded["trigger"] == "admin"
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        answer = c.chat.completions.create(model="demo-model", messages=[{"role": "user", "content": "ping"}])
        assert answer.choices[0].message.content == "Hello from the demo upstream. You said: ping"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_command_serves_the_embedded_default(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "demo", "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="anything", max_retries=0)
        stream = c.chat.completions.create(
            model="demo-model", stream=True, messages=[{"role": "user", "content": "key sk-" + "A" * 24}]
        )
        text = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
        assert text == "Hello from the demo upstream. You said: key [REDACTED_SECRET]"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_broken_policy_at_startup_fails_with_a_readable_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\n")
    result = _cli("serve", "--policy", str(bad), "--port", str(free_port()))
    assert result.returncode == 1
    assert f"{bad}:1:10: version:" in result.stderr
