"""Streams still running at the end of the SIGTERM grace period end with an in-band error.

Issue 16 item 4: uvicorn cancels what is left at the grace deadline, and the client saw a body
that just stopped (no error event; httpx raised "incomplete chunked read"). A real
``python -m proxy serve`` process, piped (no stream filters) and parsed (a filter).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.deploy.test_shutdown import CONTENT, _free_port, _stream

POLICY = "version: 1\nupstreams:\n  default:\n    base_url: builtin:demo\n"
FILTER = "plugins:\n  - type: blocklist\n    keywords: [forbidden]\n"


@pytest.mark.parametrize("plugins", ["plugins: []\n", FILTER], ids=["piped", "parsed"])
def test_a_stream_cut_at_the_grace_deadline_ends_with_an_error_event(tmp_path: Path, plugins: str) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY + plugins)
    port = _free_port()
    env = {
        **os.environ,
        "SIDECAR_POLICY": str(policy),
        "SIDECAR_PORT": str(port),
        "SIDECAR_LOG_REQUESTS": "0",
        "SIDECAR_WATCH": "0",
        "SIDECAR_GRACE_SECONDS": "2",
        "TIKTOKEN_CACHE_DIR": "",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        import httpx

        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "sidecar did not become ready"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        out: dict[str, object] = {}
        started = threading.Event()
        scenario = {"content": CONTENT, "chunk_size": 1, "chunk_delay": 0.1}  # ~20 s: longer than grace
        reader = threading.Thread(target=_stream, args=(port, scenario, out, started))
        reader.start()
        assert started.wait(10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        log = proc.communicate(timeout=10)[0]
    assert "error" not in out, f"the stream broke instead of ending: {out.get('error')!r}\n{log}"
    assert out["text"] != CONTENT and out["text"]
    events = out["events"]
    assert isinstance(events, list)
    last = json.loads(events[-1])
    assert last["error"]["code"] == "server_shutting_down", events[-3:]
    assert "[DONE]" not in events
