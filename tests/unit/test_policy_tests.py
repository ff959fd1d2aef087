"""``policy-sidecar test``: golden cases catch a broken policy, bad case files fail clearly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from proxy.__main__ import main
from proxy.policytest.cases import load_cases
from proxy.policytest.output import parse_answer
from proxy.policytest.runner import run

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"


def test_every_example_policy_has_golden_cases() -> None:
    tested = {(POLICIES / "tests" / load_cases(f).policy).resolve()  # type: ignore[operator]
              for f in (POLICIES / "tests").glob("*.yaml")}  # fmt: skip
    assert set(POLICIES.glob("*.yaml")) - tested == set()


def _cases(tmp_path: Path, policy: Path, cases: list[dict[str, object]]) -> Path:
    path = tmp_path / "cases.yaml"
    path.write_text(yaml.safe_dump({"policy": str(policy), "cases": cases}))
    return path


EMAIL_CASE = {
    "name": "email",
    "input": "Please write to bob@example.com today",
    "answer": "Will do: {last_user}",
    "expect": {"redacted": {"EMAIL_ADDRESS": ["bob@example.com"]}, "output_contains": ["bob@example.com"]},
}


def _pii_policy(tmp_path: Path, edit: tuple[str, str] | None = None) -> Path:
    text = (POLICIES / "pii.yaml").read_text()
    if edit is not None:
        assert edit[0] in text
        text = text.replace(*edit)
    path = tmp_path / "pii.yaml"
    path.write_text(text)
    return path


def test_the_shipped_policy_passes_in_every_run(tmp_path: Path) -> None:
    [result] = run(
        _pii_policy(tmp_path), load_cases(_cases(tmp_path, tmp_path / "pii.yaml", [EMAIL_CASE])).cases
    )
    assert result.failures == []
    # Non-stream, one chunk, one char per chunk, then a split at every offset of the answer.
    answer = "Will do: Please write to <EMAIL_ADDRESS_1> today"
    assert result.runs == 3 + len(answer) - 1


URL_CASE = {
    "name": "url",
    "input": "see https://wiki.acme.com/page/42 for details",
    "answer": "{last_user}",
    "expect": {"redacted": {"URL": ["https://wiki.acme.com/page/42"]}},
}


def test_a_raised_threshold_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = _pii_policy(tmp_path, ("threshold: 0.6}", "threshold: 0.95}"))
    cases = _cases(tmp_path, policy, [URL_CASE])
    assert [r.failures for r in run(POLICIES / "pii.yaml", load_cases(cases).cases)] == [[]]  # shipped: ok
    junit = tmp_path / "report.xml"
    assert main(["test", str(cases), "--junit", str(junit)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  url" in out
    assert "expected redacted URL" in out
    assert "the upstream received 'https://wiki.acme.com/page/42'" in out  # the leak is named
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1" and suite.get("tests") == "1"
    failure = suite.find("testcase/failure")
    assert failure is not None and "URL" in (failure.text or "")


def test_a_removed_rule_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # default.yaml without its secrets step: its shipped cases must fail.
    text = (POLICIES / "default.yaml").read_text()
    start = text.index("  - type: blocklist")
    policy = tmp_path / "default.yaml"
    policy.write_text(text[:start])
    code = main(["test", str(POLICIES / "tests" / "default.yaml"), "--policy", str(policy), "-q"])
    out = capsys.readouterr().out
    assert code == 1
    assert "the upstream received 'sk-proj-" in out
    assert "output contains 'sk-live-" in out  # the answer's key reached the client
    assert "1 passed, 3 failed" in out


def test_a_removed_block_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = _pii_policy(tmp_path, ("CREDIT_CARD: block", "CREDIT_CARD: redact"))
    case = {
        "name": "card",
        "input": "my card is 4111 1111 1111 1111",
        "expect": {"blocked": "pii", "status": 400},
    }
    assert main(["test", str(_cases(tmp_path, policy, [case]))]) == 1
    out = capsys.readouterr().out
    assert "expected blocked by pii, got no block" in out and "expected status 400, got 200" in out


@pytest.mark.parametrize(
    ("cases", "message"),
    [
        (
            "cases:\n  - name: x\n    input: hi\n    expect: {alowed: true}\n",
            ":4:14: cases[0].expect.alowed: Extra inputs",
        ),
        ("cases:\n  - name: x\n    expect: {}\n", ":2:5: cases[0]: Value error, give exactly one of input"),
        ("cases: []\n", ":1:8: cases: List should have at least 1 item"),
        ("cases:\n  - name: x\n    input: [unclosed\n", "invalid YAML"),
        ("cases:\n  - {name: x, input: hi, expect: {}}\n", "no policy: give --policy"),
    ],
)
def test_bad_case_files_fail_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cases: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(cases)
    assert main(["test", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err


def test_a_missing_policy_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = _cases(tmp_path, tmp_path / "nope.yaml", [EMAIL_CASE])
    assert main(["test", str(cases)]) == 2
    assert "policy file not found" in capsys.readouterr().err


def test_stream_answers_are_read_from_sse() -> None:
    raw = (
        b'data: {"choices": [{"index": 0, "delta": {"content": "Hel"}}]}\n\n'
        b'data: {"choices": [{"index": 1, "delta": {"content": "zzz"}}]}\n\n'
        b'data: {"choices": [{"index": 0, "delta": {"content": "lo"}}]}\n\n'
        b'data: {"error": {"message": "stop", "code": "content_blocked"}}\n\n'
        b"data: [DONE]\n\n"
    )
    assert parse_answer("chat.completions", raw, 200, True) == ("Hello", "content_blocked")
    body = b'{"error": {"message": "no", "type": "invalid_request_error", "code": "pii_blocked"}}'
    assert parse_answer("chat.completions", body, 400, True) == (None, "pii_blocked")


def test_the_cli_runs_the_shipped_cases_in_a_subprocess(tmp_path: Path) -> None:
    """What CI runs (scripts/check): the console entry on every shipped case file, JUnit written."""
    junit = tmp_path / "junit.xml"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    files = [str(POLICIES / "tests" / f) for f in ("default.yaml", "strict.yaml", "shadow.yaml")]
    proc = subprocess.run(
        [sys.executable, "-m", "proxy", "test", *files, "--junit", str(junit)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert len(suites) == 3 and all(s.get("failures") == "0" for s in suites)
    assert sum(int(s.get("tests") or 0) for s in suites) >= 10


def test_the_shipped_case_schema_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", "--schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(
        (POLICIES / "tests" / "cases.schema.json").read_text()
    ), "regenerate with: policy-sidecar test --schema > policies/tests/cases.schema.json"


def test_every_route_runs_and_its_answer_is_read(tmp_path: Path) -> None:
    secret = "sk-live-0123456789abcdefghijKLMN"
    cases = [
        {
            "name": "responses",
            "route": "responses",
            "input": f"key {secret} here",
            "answer": "Echo: {last_user}",
            "expect": {"redacted": ["request_match"], "output_contains": ["Echo: key [REDACTED_SECRET]"]},
        },
        {"name": "messages", "route": "messages", "input": "hi", "answer": "Hi", "expect": {"output": "Hi"}},
        {"name": "embeddings", "route": "embeddings", "input": "embed me", "expect": {"status": 200}},
        {"name": "wrong", "route": "messages", "input": "hi", "answer": "Hi", "expect": {"output": "Bye"}},
    ]
    results = run(
        POLICIES / "default.yaml", load_cases(_cases(tmp_path, POLICIES / "default.yaml", cases)).cases
    )
    assert [(r.name, r.runs, r.ok) for r in results] == [
        ("responses", 3, True),
        ("messages", 3, True),
        ("embeddings", 1, True),
        ("wrong", 3, False),
    ]
    assert "expected output 'Bye', got 'Hi'" in results[3].failures[0]
