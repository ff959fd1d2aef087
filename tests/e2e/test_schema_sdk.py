"""Schema enforcement end to end: real sidecar (uvicorn, aiohttp pool), real fake upstream, the
official ``openai`` SDK with its structured-output helpers (``parse``, ``stream``,
``pydantic_function_tool``, ``responses.parse``).

Every case asserts what the client got, how many requests reached the upstream, and the
decision records the sidecar kept.
"""

from __future__ import annotations

import json
import runpy
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel, ValidationError

from tests.harness import SidecarHarness, sidecar_harness

REPAIR = """
- type: schema
  stream: buffer
  on_failure: repair
  max_repairs: 2
"""

VALID = '{"name": "Ada", "age": 36}'
WRONG_TYPE = '{"name": "Ada", "age": "thirty-six"}'


class Person(BaseModel):
    name: str
    age: int


class GetWeather(BaseModel):
    city: str


def _client(h: SidecarHarness) -> openai.OpenAI:
    return openai.OpenAI(base_url=h.v1, api_key="sk-test", max_retries=0)


def _decisions(h: SidecarHarness) -> list[tuple[str, str, str]]:
    recent: list[dict[str, Any]] = httpx.get(f"{h.base_url}/admin/decisions").json()["recent"]
    return [(d["rule"], d["action"], d["mode"]) for d in recent if d["plugin"] == "schema"]


@pytest.fixture
def repairing(tmp_path: Path) -> Iterator[SidecarHarness]:
    with sidecar_harness(tmp_path, REPAIR) as h:
        yield h


MESSAGES: Any = [{"role": "user", "content": "Who wrote the first program?"}]
VALID_ONLY = [("output_valid", "allow", "enforce")]
REPAIRED = [("invalid_attempt", "repair", "enforce"), ("output_valid", "allow", "enforce")]
EXHAUSTED = [
    ("invalid_attempt", "repair", "enforce"),
    ("invalid_attempt", "repair", "enforce"),
    ("invalid_attempt", "stop", "enforce"),
    ("output_invalid", "block", "enforce"),
]
TOOL = {"name": "GetWeather"}

# (scripted answers, kind, success?, upstream calls, decisions)
CASES: dict[str, tuple[list[dict[str, Any]], str, bool, int, list[tuple[str, str, str]]]] = {
    "valid-json": ([{"content": VALID}], "content", True, 1, VALID_ONLY),
    "code-fences": (
        [{"content": f"```json\n{VALID}\n```"}, {"content": VALID}],
        "content",
        True,
        2,
        REPAIRED,
    ),
    "truncated": ([{"content": VALID[:-5]}, {"content": VALID}], "content", True, 2, REPAIRED),
    "wrong-types": ([{"content": WRONG_TYPE}, {"content": VALID}], "content", True, 2, REPAIRED),
    "extra-properties": (
        [{"content": '{"name": "Ada", "age": 36, "x": 1}'}, {"content": VALID}],
        "content",
        True,
        2,
        REPAIRED,
    ),
    "wrong-tool-name": (
        [
            {"tool_calls": [{"name": "rm_rf", "arguments": "{}"}]},
            {"tool_calls": [{**TOOL, "arguments": '{"city": "Paris"}'}]},
        ],
        "tool",
        True,
        2,
        REPAIRED,
    ),
    "invalid-tool-arguments": (
        [{"tool_calls": [{**TOOL, "arguments": '{"town": "Paris"}'}]}] * 3,
        "tool",
        False,
        3,
        EXHAUSTED,
    ),
    "invalid-then-valid": ([{"content": "{}"}, {"content": VALID}], "content", True, 2, REPAIRED),
    "always-invalid": ([{"content": WRONG_TYPE}] * 3, "content", False, 3, EXHAUSTED),
}


def _call(h: SidecarHarness, kind: str, stream: bool) -> Any:
    """One structured call the way applications write it; returns the parsed object."""
    c = _client(h)
    if kind == "content":
        if stream:
            with c.chat.completions.stream(model="m", messages=MESSAGES, response_format=Person) as s:
                return s.get_final_completion().choices[0].message.parsed
        return (
            c.chat.completions.parse(model="m", messages=MESSAGES, response_format=Person)
            .choices[0]
            .message.parsed
        )
    tools = [openai.pydantic_function_tool(GetWeather)]
    if stream:
        with c.chat.completions.stream(model="m", messages=MESSAGES, tools=tools) as s:
            calls = s.get_final_completion().choices[0].message.tool_calls
    else:
        calls = (
            c.chat.completions.parse(model="m", messages=MESSAGES, tools=tools).choices[0].message.tool_calls
        )
    assert calls is not None
    return calls[0].function.parsed_arguments


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
@pytest.mark.parametrize("case", list(CASES))
def test_scripted_answers_through_the_sdk(repairing: SidecarHarness, case: str, stream: bool) -> None:
    answers, kind, success, calls, decisions = CASES[case]
    repairing.fake.push(*[{**a, "chunk_size": 5} for a in answers])
    if success:
        parsed = _call(repairing, kind, stream)
        assert parsed == (Person(name="Ada", age=36) if kind == "content" else GetWeather(city="Paris"))
    else:
        with pytest.raises(openai.InternalServerError) as info:
            _call(repairing, kind, stream)
        assert info.value.status_code == 502 and info.value.code == "output_schema_violation"
        assert "Ada" not in str(info.value)  # the generic public message, never the output
    assert len(repairing.fake.requests) == calls
    assert repairing.fake.pending == 0
    assert _decisions(repairing) == decisions


def test_beta_parse_and_the_demo_answer_with_a_valid_instance(repairing: SidecarHarness) -> None:
    c = _client(repairing)
    beta = getattr(getattr(c, "beta", None), "chat", None)
    parse = beta.completions.parse if beta is not None else c.chat.completions.parse
    result = parse(model="m", messages=MESSAGES, response_format=Person)
    assert result.choices[0].message.parsed == Person(name="", age=0)  # the demo's minimal instance
    assert len(repairing.fake.requests) == 1


def test_validate_at_end_streams_then_ends_with_an_in_band_error(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, "- type: schema\n  stream: validate_at_end\n") as h:
        h.fake.push({"content": WRONG_TYPE, "chunk_size": 4})
        seen = ""
        with pytest.raises(openai.APIError) as info:
            for chunk in _client(h).chat.completions.create(
                model="m", messages=MESSAGES, stream=True, response_format=_person_format()
            ):
                seen += "".join(ch.delta.content or "" for ch in chunk.choices)
        assert seen == WRONG_TYPE  # no hold-back: the text streamed as it came
        assert "did not match" in str(info.value)
        assert len(h.fake.requests) == 1


def test_validate_at_end_with_the_sdk_stream_helper_still_fails_loudly(tmp_path: Path) -> None:
    """The helper parses the content when the choice finishes, just before the sidecar's in-band
    error arrives: either way the application gets an exception, never a parsed wrong object
    (``buffer`` is the mode that gives ``.stream()`` users the typed 502)."""
    with sidecar_harness(tmp_path, "- type: schema\n  stream: validate_at_end\n") as h:
        h.fake.push({"content": WRONG_TYPE, "chunk_size": 4})
        c = _client(h)
        with (
            pytest.raises((openai.APIError, ValidationError)),
            c.chat.completions.stream(model="m", messages=MESSAGES, response_format=Person) as s,
        ):
            for _ in s:
                pass
        assert len(h.fake.requests) == 1


def test_shadow_records_without_blocking_or_repairing(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, REPAIR + "  mode: shadow\n") as h:
        h.fake.push({"content": '{"name": "Ada"}'}, {"content": '{"name": "Ada"}', "chunk_size": 3})
        c = _client(h)
        raw = c.chat.completions.with_raw_response.create(
            model="m", messages=MESSAGES, response_format=_person_format()
        )
        assert raw.parse().choices[0].message.content == '{"name": "Ada"}'
        text = "".join(
            ch.choices[0].delta.content or ""
            for ch in c.chat.completions.create(
                model="m", messages=MESSAGES, response_format=_person_format(), stream=True
            )
            if ch.choices
        )
        assert text == '{"name": "Ada"}'
        assert len(h.fake.requests) == 2
        assert _decisions(h) == [("output_invalid", "block", "shadow")] * 2


def _person_format() -> Any:
    return {
        "type": "json_schema",
        "json_schema": {"name": "Person", "schema": Person.model_json_schema(), "strict": True},
    }


def test_flag_passes_with_a_header(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, "- type: schema\n  stream: buffer\n  on_failure: flag\n") as h:
        h.fake.push({"content": "not json"})
        raw = _client(h).chat.completions.with_raw_response.create(
            model="m", messages=MESSAGES, response_format=_person_format()
        )
        assert raw.headers["x-sidecar-flags"] == "schema"
        assert raw.parse().choices[0].message.content == "not json"
        h.fake.push({"content": "not json either", "chunk_size": 3})
        streamed = _client(h).chat.completions.with_raw_response.create(
            model="m", messages=MESSAGES, response_format=_person_format(), stream=True
        )
        assert streamed.headers["x-sidecar-flags"] == "schema"  # buffer: decided before the first byte
        text = "".join(ch.choices[0].delta.content or "" for ch in streamed.parse() if ch.choices)
        assert text == "not json either"
        assert _decisions(h) == [("output_invalid", "flag", "enforce")] * 2


def test_request_faults_are_400_and_422(tmp_path: Path) -> None:
    limits = "- type: schema\n  stream: buffer\n  request: {allowed_models: ['demo-*'], max_tokens: 64}\n"
    with sidecar_harness(tmp_path, limits) as h:
        c = _client(h)
        with pytest.raises(openai.BadRequestError) as info:
            c.chat.completions.create(model="gpt-5", messages=MESSAGES)
        assert info.value.code == "model_not_allowed"
        with pytest.raises(openai.BadRequestError) as info:
            c.chat.completions.create(model="demo-model", messages=MESSAGES, max_tokens=65)
        assert info.value.code == "max_tokens_exceeded"
        bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}}
        with pytest.raises(openai.UnprocessableEntityError) as unprocessable:
            c.chat.completions.create(model="demo-model", messages=MESSAGES, response_format=bad)  # type: ignore[arg-type]
        assert unprocessable.value.code == "invalid_request_schema"
        assert len(h.fake.requests) == 0


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_responses_parse_is_enforced_and_repaired(repairing: SidecarHarness, stream: bool) -> None:
    repairing.fake.push({"content": WRONG_TYPE}, {"content": VALID})
    c = _client(repairing)
    if stream:
        with c.responses.stream(model="m", input="Who?", text_format=Person) as s:
            parsed = s.get_final_response().output_parsed
    else:
        parsed = c.responses.parse(model="m", input="Who?", text_format=Person).output_parsed
    assert parsed == Person(name="Ada", age=36)
    assert len(repairing.fake.requests) == 2
    assert _decisions(repairing) == REPAIRED


def test_the_structured_output_example_runs_against_the_demo_upstream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = Path(__file__).resolve().parents[2] / "policies" / "schema.yaml"
    text = policy.read_text().replace("builtin:demo", "{upstream}")
    shutil.copytree(policy.parent / "contracts", tmp_path / "contracts")
    with sidecar_harness(tmp_path, policy=text) as h:
        monkeypatch.setenv("SIDECAR_URL", h.v1)
        example = Path(__file__).resolve().parents[2] / "examples" / "structured_output.py"
        runpy.run_path(str(example), run_name="__main__")
    out = capsys.readouterr().out
    assert "parsed:" in out and "typed error: 502 output_schema_violation" in out
    assert json.loads(out.split("stream parsed:", 1)[1].splitlines()[0].strip()) is not None


def test_anthropic_tool_use_is_validated_and_repaired(repairing: SidecarHarness) -> None:
    import anthropic

    repairing.fake.push(
        {"tool_calls": [{"name": "get_weather", "arguments": '{"town": "Paris"}'}]},
        {"tool_calls": [{"name": "get_weather", "arguments": '{"city": "Paris"}'}]},
    )
    client = anthropic.Anthropic(base_url=repairing.base_url, api_key="sk-test", max_retries=0)
    tool = {
        "name": "get_weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
    message = client.messages.create(
        model="m", max_tokens=100, messages=[{"role": "user", "content": "Weather?"}], tools=[tool]
    )
    uses = [block for block in message.content if block.type == "tool_use"]
    assert [u.input for u in uses] == [{"city": "Paris"}]
    assert len(repairing.fake.requests) == 2
    assert _decisions(repairing) == REPAIRED


SELF_REF: dict[str, Any] = {"$ref": "#"}
CYCLE: dict[str, Any] = {
    "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
    "$ref": "#/$defs/a",
}
REMOTE: dict[str, Any] = {"$ref": "https://example.com/schema.json"}


@pytest.mark.parametrize("schema", [SELF_REF, CYCLE, REMOTE], ids=["self-ref", "defs-cycle", "remote"])
@pytest.mark.parametrize("where", ["response_format", "tool"])
def test_unusable_request_schemas_are_refused_before_the_upstream_is_called(
    repairing: SidecarHarness, schema: dict[str, Any], where: str
) -> None:
    """Issue 16: these crashed validation (RecursionError / unresolvable ref: a 500) *after* the
    upstream was called and billed; now a 422 before any upstream call."""
    client = openai.OpenAI(base_url=repairing.v1, api_key="sk-test", max_retries=0)
    kwargs: dict[str, Any] = (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}
        if where == "response_format"
        else {"tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}]}
    )
    with pytest.raises(openai.UnprocessableEntityError) as err:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], **kwargs)
    assert err.value.code == "invalid_request_schema"
    assert list(repairing.fake.requests) == []


def test_a_recursive_request_schema_is_enforced(repairing: SidecarHarness) -> None:
    tree = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
                "required": ["name", "kids"],
                "additionalProperties": False,
            }
        },
        "$ref": "#/$defs/node",
    }
    client = openai.OpenAI(base_url=repairing.v1, api_key="sk-test", max_retries=0)
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "tree", "schema": tree}}
    good = '{"name": "a", "kids": [{"name": "b", "kids": []}]}'
    bad = '{"name": "a", "kids": [{"kids": []}]}'
    r = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "tree"}],
        response_format=fmt,
        extra_headers={"x-fake-scenario": json.dumps({"content": good})},
    )
    assert json.loads(r.choices[0].message.content or "") == json.loads(good)
    repairing.fake.push({"content": bad}, {"content": bad}, {"content": bad})
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "tree"}], response_format=fmt
        )
    assert err.value.status_code == 502
    assert err.value.code == "output_schema_violation"
