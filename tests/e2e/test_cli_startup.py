"""What an operator sees when the command line goes wrong (issue 22, item 6): a busy port is one
line naming the port and the flag, before anything claims to listen; a closed pipe is not a
traceback; ``check`` works without the policy's secrets and says which ones ``serve`` needs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.chain.secrets import expand_env, placeholders_for_missing_env

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "REDIS_URL")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, **extra}


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=_env(**env),
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port some other process is listening on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_api_port_in_use_is_one_clear_line(busy_port: int) -> None:
    r = _cli("demo", "--port", str(busy_port))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr + r.stdout
    assert "listening" not in r.stderr + r.stdout, "nothing may claim to listen before the bind"
    assert r.stderr.strip() == (
        f"error: cannot listen on 127.0.0.1:{busy_port} (API port): address already in use; "
        "another process (another policy-sidecar?) listens there; choose another port with --port N"
    )


def test_admin_port_in_use_names_the_admin_flag(busy_port: int) -> None:
    r = _cli("demo", "--port", str(_free_port()), "--admin-port", str(busy_port))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr + r.stdout
    assert "listening" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert f"127.0.0.1:{busy_port} (admin port)" in lines[0]
    assert "choose another port with --admin-port N" in lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["schema"],
        ["--help"],
        [
            "replay",
            "--json",
            "--policy",
            "examples/calibration/candidate.yaml",
            "--baseline",
            "examples/calibration/baseline.yaml",
            "examples/calibration/traffic.jsonl",
        ],
    ],
    ids=["schema", "help", "replay"],
)
def test_a_reader_closing_the_pipe_early_is_not_a_traceback(args: list[str]) -> None:
    """`policy-sidecar schema | head -1`: the reader takes one line and closes its end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    # Output that fitted in the pipe's buffer before it closed ends normally; otherwise 128+SIGPIPE.
    assert code in (0, 141), (code, err)


def test_schema_into_a_closed_pipe_exits_with_the_sigpipe_status() -> None:
    r = subprocess.run(
        f'{sys.executable} -m proxy schema | head -c 10 >/dev/null; echo "${{PIPESTATUS[0]}}"',
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=_env(),
    )
    assert r.stdout.strip() == "141", r.stderr
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


def test_check_validates_with_placeholders_and_names_the_needed_variables() -> None:
    r = _cli("check", "policies/openai.yaml")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("ok: policies/openai.yaml revision ")
    assert lines[1].startswith("needs: OPENAI_API_KEY (not set here")
    # The revision is the file's: the same with the variable set, so check and serve agree.
    with_key = _cli("check", "policies/openai.yaml", OPENAI_API_KEY="sk-test")
    assert with_key.stdout.strip().splitlines() == [lines[0]]


def test_check_placeholder_for_a_url_secret_still_compiles(tmp_path: Path) -> None:
    policy = tmp_path / "budget.yaml"
    policy.write_text(
        "version: 1\nupstreams:\n  default:\n    base_url: builtin:demo\n"
        "plugins:\n  - type: budget\n    backend: redis\n    redis_url: ${REDIS_URL}\n"
        "    limits:\n      - {name: rpm, requests: 10, window: minute}\n"
        "  - type: injection\n"
        "    judge: {base_url: 'http://127.0.0.1:1/v1', model: m, api_key: '${JUDGE_KEY}'}\n"
    )
    r = _cli("check", str(policy))
    assert r.returncode == 0, r.stderr
    assert "needs: REDIS_URL, JUDGE_KEY (" in r.stdout


def test_serve_still_refuses_a_missing_secret() -> None:
    r = _cli("serve", "--policy", "policies/openai.yaml", "--port", str(_free_port()), "--no-watch")
    assert r.returncode == 1
    assert "environment variable OPENAI_API_KEY is not set" in r.stderr
    assert "Traceback" not in r.stderr


def test_placeholders_only_inside_the_check_block() -> None:
    name = "POLICY_SIDECAR_TEST_SURELY_UNSET"
    assert name not in os.environ
    with placeholders_for_missing_env() as missing:
        assert expand_env(f"${{{name}}}") == f"placeholder-for-{name}"
        assert expand_env(f"${{{name}:-fallback}}") == "fallback"
    assert missing == [name]
    with pytest.raises(ValueError, match=f"environment variable {name} is not set"):
        expand_env(f"${{{name}}}")
