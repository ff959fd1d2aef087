"""The ``schema`` plugin through the compiled chain (no sockets): contracts, repair, streams, shadow.

A policy is compiled with the real compiler against the built-in demo upstream, whose
``FakeState`` scripts the answers; ``_drive`` runs one request the way the route does (request
hooks, wrapped upstream, response hooks or stream filters). The pieces of ``proxy.contracts``
are tested directly where that is clearer.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import plugins.schema as schema_module
import plugins.schema.repair as schema_repair
from proxy.chain.context import RequestContext
from proxy.chain.plugin import PluginConfig
from proxy.chain.registry import Registry, default_registry
from proxy.contracts import SchemaCache, SchemaInvalid, compile_schema, extract_json
from proxy.contracts.extract import ExtractError
from proxy.demo.fake_scenario import FakeState
from proxy.errors import ConfigError, ProxyError
from proxy.models import (
    ChatRequest,
    ChatResponse,
    ErrorEvent,
    RawEvent,
    Route,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
)
from proxy.models.upstream import UpstreamRequest
from proxy.policy.compiler import CompiledPolicy
from proxy.policy.store import PolicyStore
from proxy.upstream.providers.openai import ChatStreamCodec, ResponsesStreamCodec
from proxy.upstream.sse import SSEParser

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
VALID = '{"name": "Ada", "age": 36}'
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


# -- harness ---------------------------------------------------------------------------------


@dataclass
class Result:
    status: int
    body: dict[str, Any] | None = None
    text: str = ""
    events: list[StreamEvent] = field(default_factory=list)
    error: ProxyError | None = None
    in_band: dict[str, Any] | None = None
    ctx: RequestContext | None = None

    def decisions(self) -> list[tuple[str, str, str]]:
        assert self.ctx is not None
        return [(d.rule, d.action, d.mode) for d in self.ctx.decisions if d.plugin == "schema"]

    def detail(self, rule: str) -> dict[str, Any]:
        assert self.ctx is not None
        return next(d.detail for d in self.ctx.decisions if d.rule == rule)


def _compile(tmp_path: Path, plugin_yaml: str, extra: str = "") -> tuple[CompiledPolicy, FakeState]:
    text = (
        "version: 1\nupstreams:\n  default: {base_url: 'builtin:demo'}\n"
        + textwrap.dedent(extra)
        + "plugins:\n"
        + textwrap.indent(textwrap.dedent(plugin_yaml).strip(), "  ")
        + "\n"
    )
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    store = PolicyStore(path, default_registry())
    compiled = store.compile_text(text, str(path))
    app = store.resources.get_or_create("builtin:demo", lambda: None)
    fake: FakeState = app.state.fake
    return compiled, fake


def _body(stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "model": "demo-model",
        "messages": [{"role": "user", "content": "who?"}],
        "stream": stream,
        **extra,
    }


def _person_format(strict: bool = True) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": strict}}


async def _drive(policy: CompiledPolicy, body: dict[str, Any], route: Route = Route.CHAT) -> Result:
    """One request through the chain as ``routes/pipeline.py`` runs it (minus HTTP)."""
    chain = policy.chain
    ctx = RequestContext("rid", route, {}, policy.revision, body["model"], stream=bool(body.get("stream")))
    req = ChatRequest(orjson.loads(orjson.dumps(body)), route)
    try:
        await chain.run_request(req, ctx)
        path = "/responses" if route is Route.RESPONSES else "/chat/completions"
        up = UpstreamRequest(
            "POST", path, [], req.encode(), "", route, req.stream, req.model,
            candidates=policy.routes.plan(req.model), deadline=ctx.deadline,
        )  # fmt: skip
        up.target = up.candidates[0]
        resp = await chain.send(up, ctx)
        data = await resp.read()
        await resp.aclose()
    except ProxyError as exc:
        return Result(exc.status, error=exc, ctx=ctx)
    if resp.status >= 400:
        return Result(resp.status, orjson.loads(data), ctx=ctx)
    if not req.stream:
        wrapped = ChatResponse(orjson.loads(data), route, data, resp.status)
        try:
            await chain.run_response(wrapped, ctx)
        except ProxyError as exc:
            return Result(exc.status, error=exc, ctx=ctx)
        out = orjson.loads(wrapped.encode())
        if route is Route.RESPONSES:
            text = "".join(p["text"] for item in out["output"] for p in item.get("content") or ())
        else:
            text = out["choices"][0]["message"]["content"] or ""
        return Result(resp.status, out, text, ctx=ctx)
    pipeline = chain.open_stream(ctx)
    codec = ResponsesStreamCodec() if route is Route.RESPONSES else ChatStreamCodec()
    parser = SSEParser()
    events: list[StreamEvent] = []
    result = Result(resp.status, ctx=ctx)
    try:
        for sse in [*parser.feed(data), *parser.flush()]:
            for ev in codec.decode(sse):
                events.extend(await pipeline.push(ev) if pipeline else [ev])
        if pipeline:
            events.extend(await pipeline.end())
    except ProxyError as exc:
        if not events:  # nothing reached the client yet: a proper HTTP error
            return Result(exc.status, error=exc, ctx=ctx)
        result.in_band = exc.envelope()["error"]
    result.events = events
    result.text = "".join(e.text for e in events if isinstance(e, TextDelta))
    result.in_band = result.in_band or next(
        (dict(e.error) for e in events if isinstance(e, ErrorEvent)), None
    )
    return result


def _calls(fake: FakeState) -> int:
    return len(fake.requests)


# -- the library pieces ----------------------------------------------------------------------


def test_extraction_is_strict_unless_the_policy_allows_more() -> None:
    assert extract_json(f"  {VALID}\n").value == {"name": "Ada", "age": 36}
    fenced = f"Here you go:\n```json\n{VALID}\n```\nAnything else?"
    with pytest.raises(ExtractError):
        extract_json(fenced)
    found = extract_json(fenced, lenient=True)
    assert found.value["age"] == 36 and found.text == VALID and found.how == "fence"
    braces = 'Sure! The answer is {"note": "a } inside a string", "n": [1, {"x": 2}]} as asked.'
    assert extract_json(braces, lenient=True).value == {"note": "a } inside a string", "n": [1, {"x": 2}]}
    with pytest.raises(ExtractError, match="truncated"):
        extract_json('{"name": "Ada", "age": ', lenient=True)
    with pytest.raises(ExtractError, match="not valid JSON"):
        extract_json("no json here at all", lenient=True)


def test_strict_closes_objects_and_requires_every_property() -> None:
    loose = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}}
    assert compile_schema(loose).problems({"a": 1, "zzz": 2}) == []
    strict = compile_schema(loose, strict=True)
    keywords = {p.keyword for p in strict.problems({"a": 1, "zzz": 2})}
    assert keywords == {"additionalProperties", "required"}
    problem = strict.problems({"a": "x", "b": "y"})[0]
    assert (problem.path, problem.keyword) == ("$.a", "type")


def test_request_schemas_are_compiled_once_and_the_cache_is_bounded() -> None:
    cache = SchemaCache(size=2)
    first = cache.get(PERSON)
    same_but_reordered = dict(reversed(list(PERSON.items())))
    assert cache.get(same_but_reordered) is first and (cache.hits, cache.misses) == (1, 1)
    assert cache.get(PERSON, strict=True) is not first  # strict is part of the key
    cache.get({"type": "string"})
    assert len(cache) == 2 and cache.get(PERSON) is not first  # evicted (LRU), compiled again
    with pytest.raises(SchemaInvalid):
        cache.get({"type": "no-such-type"})
    assert cache.misses == 4  # the invalid schema was not cached


def test_a_full_body_plugin_must_say_what_happens_on_streams() -> None:
    class NoStreamConfig(PluginConfig):
        type: str = "greedy"

    class Greedy(schema_module.SchemaPlugin):
        Config = NoStreamConfig  # type: ignore[assignment]

    with pytest.raises(TypeError, match="stream"):
        Registry().register(Greedy)
    assert schema_module.SchemaConfig.model_fields["stream"].is_required()


def test_the_stream_field_is_required_in_the_policy(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="stream"):
        _compile(tmp_path, "- type: schema\n")


# -- non-streamed answers ----------------------------------------------------------------------

REJECT = "- type: schema\n  stream: buffer\n  on_failure: reject\n"
REPAIR = "- type: schema\n  stream: buffer\n  on_failure: repair\n  max_repairs: 2\n"


async def test_valid_json_passes_with_one_call_and_an_allow_record(tmp_path: Path) -> None:
    policy, fake = _compile(tmp_path, REJECT)
    fake.push({"content": VALID})
    r = await _drive(policy, _body(response_format=_person_format()))
    assert r.status == 200 and orjson.loads(r.text) == {"name": "Ada", "age": 36}
    assert _calls(fake) == 1
    assert r.decisions() == [("output_valid", "allow", "enforce")]
    assert r.detail("output_valid")["sources"] == ["response_format"]


@pytest.mark.parametrize(
    ("content", "violation"),
    [
        (f"```json\n{VALID}\n```", "content:parse"),
        ('{"name": "Ada", "age": 3', "content:truncated"),
        ('{"name": "Ada", "age": "thirty-six"}', "content.age:type"),
        ('{"name": "Ada", "age": 36, "email": "a@b.c"}', "content:additionalProperties"),
        ('["Ada", 36]', "content:not_object"),
    ],
    ids=["code-fences", "truncated", "wrong-type", "extra-property", "not-an-object"],
)
async def test_invalid_output_is_rejected_with_a_typed_502(
    tmp_path: Path, content: str, violation: str
) -> None:
    policy, fake = _compile(tmp_path, REJECT)
    fake.push({"content": content})
    r = await _drive(policy, _body(response_format=_person_format()))
    assert r.status == 502 and r.error is not None and r.error.code == "output_schema_violation"
    assert _calls(fake) == 1  # reject never re-asks
    assert r.decisions() == [("output_invalid", "block", "enforce")]
    assert violation in r.detail("output_invalid")["violations"]
    assert "Ada" not in orjson.dumps([d.detail for d in r.ctx.decisions]).decode()  # type: ignore[union-attr]


async def test_lenient_extraction_hands_the_application_clean_json(tmp_path: Path) -> None:
    policy, fake = _compile(tmp_path, REJECT + "  extraction: lenient\n")
    fake.push({"content": f"Sure, here it is:\n```json\n{VALID}\n```"})
    r = await _drive(policy, _body(response_format=_person_format()))
    assert r.status == 200 and r.text == VALID


async def test_json_object_mode_needs_an_object(tmp_path: Path) -> None:
    policy, fake = _compile(tmp_path, REJECT)
    fake.push({"content": "just words"}, {"content": '{"any": "object"}'})
    fmt = {"type": "json_object"}
    assert (await _drive(policy, _body(response_format=fmt))).status == 502
    assert (await _drive(policy, _body(response_format=fmt))).status == 200


async def test_tool_calls_must_name_a_declared_tool_with_valid_arguments(tmp_path: Path) -> None:
    policy, fake = _compile(tmp_path, REJECT)
    fake.push(
        {"tool_calls": [{"name": "get_weather", "arguments": '{"city": "Paris"}'}]},
        {"tool_calls": [{"name": "delete_everything", "arguments": "{}"}]},
        {"tool_calls": [{"name": "get_weather", "arguments": '{"town": "Paris"}'}]},
        {"tool_calls": [{"name": "get_weather", "arguments": '{"city": "Par'}]},
    )
    body = _body(tools=[WEATHER_TOOL])
    ok = await _drive(policy, body)
    assert ok.status == 200 and ok.decisions() == [("output_valid", "allow", "enforce")]
    wrong_name = await _drive(policy, body)
    assert wrong_name.status == 502 and wrong_name.detail("output_invalid")["violations"] == [
        "tool_call:unknown_tool"
    ]
    bad_args = await _drive(policy, body)
    assert set(bad_args.detail("output_invalid")["violations"]) == {
        "tool_call(get_weather):additionalProperties",
        "tool_call(get_weather):required",
    }
    broken = await _drive(policy, body)
    assert broken.detail("output_invalid")["violations"] == ["tool_call(get_weather):truncated"]
    assert _calls(fake) == 4


async def test_invalid_then_valid_is_repaired_with_the_errors_appended(tmp_path: Path) -> None:
    policy, fake = _compile(tmp_path, REPAIR)
    fake.push({"content": '{"name": "Ada", "age": "x"}'}, {"content": VALID})
    r = await _drive(policy, _body(response_format=_person_format()))
    assert r.status == 200 and orjson.loads(r.text)["age"] == 36
    assert _calls(fake) == 2
    assert r.decisions() == [("invalid_attempt", "repair", "enforce"), ("output_valid", "allow", "enforce")]
    assert r.detail("output_valid")["attempts"] == 2
    repair = fake.requests[1].json["messages"]
    assert repair[:-2] == fake.requests[0].json["messages"]
    assert repair[-2] == {"role": "assistant", "content": '{"name": "Ada", "age": "x"}'}
    assert "$.age" in repair[-1]["content"] and "integer" in repair[-1]["content"]
    assert fake.requests[1].json["response_format"] == _person_format()  # same contract
    # Usage covers every attempt, so budgets charge what the repair really cost.
    first, _second = (q.json for q in fake.requests)
    single = len(str(first["messages"]).split())
    assert r.body is not None and r.body["usage"]["prompt_tokens"] > single  # both prompts counted


async def test_always_invalid_stops_after_max_repairs_with_a_502(tmp_path: Path) -> None:
    policy, fake = _compile(tmp_path, REPAIR)
    fake.push(*[{"content": '{"name": 1, "age": 2}'}] * 3)
    r = await _drive(policy, _body(response_format=_person_format()))
    assert r.status == 502 and r.error is not None and r.error.code == "output_schema_violation"
    assert _calls(fake) == 3  # the first attempt and two repairs
    assert r.decisions() == [
        ("invalid_attempt", "repair", "enforce"),
        ("invalid_attempt", "repair", "enforce"),
        ("invalid_attempt", "stop", "enforce"),
        ("output_invalid", "block", "enforce"),
    ]
    assert r.detail("output_invalid")["attempts"] == 3
    assert [d.detail.get("reason") for d in r.ctx.decisions][2] == "max_repairs"  # type: ignore[union-attr]


async def test_repair_stops_at_the_deadline_and_the_token_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy, fake = _compile(tmp_path, REPAIR + "  repair_token_budget: 5\n")
    fake.push({"content": '{"name": "a long answer that costs more than five tokens", "age": "x"}'})
    r = await _drive(policy, _body(response_format=_person_format()))
    assert r.status == 502 and _calls(fake) == 1
    assert r.detail("invalid_attempt")["reason"] == "token_budget"

    policy, fake = _compile(tmp_path, REPAIR + "- type: timeout\n  total: 30\n")
    monkeypatch.setattr(schema_repair, "_now", lambda: float("inf"))  # the deadline has passed
    fake.push({"content": '{"age": "x"}'})
    r = await _drive(policy, _body(response_format=_person_format()))
    assert r.status == 502 and _calls(fake) == 1
    assert r.detail("invalid_attempt")["reason"] == "deadline"


async def test_repair_may_go_to_the_next_fallback_target(tmp_path: Path) -> None:
    extra = """\
      b: {base_url: 'builtin:demo'}
    routes:
      - match: smart
        targets: ['default:model-a', 'b:model-b']
    """
    plugin = REPAIR + "  repair_target: next\n"
    policy, fake = _compile(tmp_path, plugin, textwrap.dedent(extra))
    fake.push({"content": "{}"}, {"content": VALID})
    r = await _drive(policy, {**_body(response_format=_person_format()), "model": "smart"})
    assert r.status == 200
    assert [q.json["model"] for q in fake.requests] == ["model-a", "model-b"]
    assert r.detail("invalid_attempt")["target"] == "default"


async def test_flag_passes_with_a_header_and_a_record(tmp_path: Path) -> None:
    policy, fake = _compile(tmp_path, "- type: schema\n  stream: buffer\n  on_failure: flag\n")
    fake.push({"content": "not json"})
    r = await _drive(policy, _body(response_format=_person_format()))
    assert r.status == 200 and r.text == "not json"
    assert r.decisions() == [("output_invalid", "flag", "enforce")]
    assert r.ctx is not None and r.ctx.response_headers["x-sidecar-flags"] == "schema"


async def test_shadow_records_but_never_blocks_or_repairs(tmp_path: Path) -> None:
    policy, fake = _compile(tmp_path, REPAIR + "  mode: shadow\n")
    fake.push({"content": '{"name": "Ada"}'})
    r = await _drive(policy, _body(response_format=_person_format()))
    assert r.status == 200 and r.text == '{"name": "Ada"}'
    assert _calls(fake) == 1
    assert r.decisions() == [("output_invalid", "block", "shadow")]
    assert r.ctx is not None and "x-sidecar-flags" not in r.ctx.response_headers


async def test_policy_contract_from_a_file_with_a_tool_allow_list(tmp_path: Path) -> None:
    (tmp_path / "invoice.yaml").write_text(
        "type: object\nproperties: {total: {type: number}}\nrequired: [total]\n"
    )
    policy, fake = _compile(
        tmp_path,
        """\
        - type: schema
          stream: buffer
          contracts:
            - match: {models: ['billing-*']}
              json_schema_file: invoice.yaml
              allowed_tools: [get_weather]
        """,
    )
    fake.push({"content": '{"total": "12"}'}, {"content": '{"total": 12.5}'}, {"content": "free text"})
    billing = {**_body(), "model": "billing-1"}
    bad = await _drive(policy, billing)
    assert bad.status == 502 and bad.detail("output_invalid")["sources"] == ["policy", "allowed_tools"]
    assert (await _drive(policy, billing)).status == 200
    assert (await _drive(policy, _body())).status == 200  # other models: no contract
    other_tool = {**WEATHER_TOOL, "function": {**WEATHER_TOOL["function"], "name": "send_email"}}
    refused = await _drive(policy, {**billing, "tools": [WEATHER_TOOL, other_tool]})
    assert refused.status == 400 and refused.error is not None and refused.error.code == "tool_not_allowed"
    assert _calls(fake) == 3


def test_an_invalid_policy_schema_fails_the_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid JSON Schema"):
        _compile(tmp_path, "- type: schema\n  stream: skip\n  contracts: [{json_schema: {type: 12}}]\n")
    with pytest.raises(ConfigError, match="cannot read"):
        _compile(tmp_path, "- type: schema\n  stream: skip\n  contracts: [{json_schema_file: nope.json}]\n")


# -- request-side contracts --------------------------------------------------------------------

LIMITS = """\
- type: schema
  stream: buffer
  request:
    allowed_models: ['demo-*']
    max_tokens: 100
    max_messages: 2
    max_tools: 1
    required_fields: [user]
"""


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"model": "gpt-5"}, "model_not_allowed"),
        ({"max_tokens": 500}, "max_tokens_exceeded"),
        ({"max_completion_tokens": 101}, "max_tokens_exceeded"),
        ({"messages": [{"role": "user", "content": "x"}] * 3}, "too_many_messages"),
        ({"tools": [WEATHER_TOOL, WEATHER_TOOL]}, "too_many_tools"),
        ({"user": None}, "missing_required_field"),
    ],
)
async def test_request_contracts_are_a_clear_400(tmp_path: Path, change: dict[str, Any], code: str) -> None:
    policy, fake = _compile(tmp_path, LIMITS)
    r = await _drive(policy, {**_body(user="u1", max_tokens=50), **change})
    assert r.status == 400 and r.error is not None and r.error.code == code
    assert _calls(fake) == 0
    ok = await _drive(policy, _body(user="u1", max_tokens=50))
    assert ok.status == 200


async def test_an_invalid_request_schema_is_a_422(tmp_path: Path) -> None:
    policy, fake = _compile(tmp_path, REJECT)
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}}
    r = await _drive(policy, _body(response_format=bad))
    assert r.status == 422 and r.error is not None and r.error.code == "invalid_request_schema"
    assert r.error.param == "response_format.json_schema.schema"
    assert _calls(fake) == 0


# -- streams -----------------------------------------------------------------------------------


async def test_buffer_repairs_a_stream_then_streams_the_valid_attempt(tmp_path: Path) -> None:
    policy, fake = _compile(tmp_path, REPAIR)
    fake.push(
        {"content": '{"name": "Ada", "age": "x"}', "chunk_size": 3}, {"content": VALID, "chunk_size": 3}
    )
    r = await _drive(policy, _body(stream=True, response_format=_person_format()))
    assert r.status == 200 and r.in_band is None and orjson.loads(r.text)["age"] == 36
    assert sum(isinstance(e, TextDelta) and bool(e.text) for e in r.events) > 3  # still chunked
    assert _calls(fake) == 2
    assert r.decisions() == [("invalid_attempt", "repair", "enforce"), ("output_valid", "allow", "enforce")]


async def test_buffer_rejects_before_the_first_byte(tmp_path: Path) -> None:
    policy, fake = _compile(tmp_path, REJECT)
    fake.push({"content": "nope"})
    r = await _drive(policy, _body(stream=True, response_format=_person_format()))
    assert r.status == 502 and r.error is not None and not r.events


async def test_buffer_normalizes_fenced_json_in_a_stream(tmp_path: Path) -> None:
    policy, fake = _compile(tmp_path, REJECT + "  extraction: lenient\n")
    fake.push({"content": f"```json\n{VALID}\n```"})
    r = await _drive(policy, _body(stream=True, response_format=_person_format()))
    assert r.status == 200 and r.text == VALID


async def test_validate_at_end_streams_then_ends_with_an_in_band_error(tmp_path: Path) -> None:
    policy, fake = _compile(tmp_path, "- type: schema\n  stream: validate_at_end\n  on_failure: repair\n")
    fake.push({"content": '{"name": "Ada", "age": "x"}'}, {"content": VALID})
    bad = await _drive(policy, _body(stream=True, response_format=_person_format()))
    assert bad.text == '{"name": "Ada", "age": "x"}'  # the client saw it as it came
    assert bad.in_band is not None and bad.in_band["code"] == "output_schema_violation"
    good = await _drive(policy, _body(stream=True, response_format=_person_format()))
    assert good.in_band is None and good.text == VALID
    assert _calls(fake) == 2  # no repair once bytes were sent


async def test_streamed_tool_arguments_are_assembled_and_validated_per_call(tmp_path: Path) -> None:
    policy, fake = _compile(tmp_path, "- type: schema\n  stream: validate_at_end\n")
    calls = [
        {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"name": "get_weather", "arguments": '{"city": 7}'},
    ]
    fake.push({"tool_calls": calls, "chunk_size": 2}, {"tool_calls": calls[:1], "chunk_size": 2})
    r = await _drive(policy, _body(stream=True, tools=[WEATHER_TOOL]))
    assert r.in_band is not None and r.detail("output_invalid")["violations"] == [
        "tool_call(get_weather).city:type"
    ]
    assert sum(isinstance(e, ToolCallDelta) for e in r.events) > 4
    ok = await _drive(policy, _body(stream=True, tools=[WEATHER_TOOL]))
    assert ok.in_band is None and ok.decisions() == [("output_valid", "allow", "enforce")]


async def test_skip_and_reject_stream_modes(tmp_path: Path) -> None:
    policy, fake = _compile(tmp_path, "- type: schema\n  stream: skip\n")
    fake.push({"content": "not json"})
    r = await _drive(policy, _body(stream=True, response_format=_person_format()))
    assert r.status == 200 and r.in_band is None and r.decisions() == [("stream_skipped", "allow", "enforce")]
    policy, fake = _compile(tmp_path, "- type: schema\n  stream: reject\n")
    r = await _drive(policy, _body(stream=True, response_format=_person_format()))
    assert r.status == 400 and r.error is not None and r.error.code == "stream_not_allowed"
    assert _calls(fake) == 0


async def test_shadow_stream_records_at_the_end_without_touching_the_stream(tmp_path: Path) -> None:
    policy, fake = _compile(tmp_path, REPAIR + "  mode: shadow\n")
    fake.push({"content": "not json"})
    r = await _drive(policy, _body(stream=True, response_format=_person_format()))
    assert r.in_band is None and r.text == "not json" and _calls(fake) == 1
    assert r.decisions() == [("output_invalid", "block", "shadow")]


# -- the Responses API -------------------------------------------------------------------------


def _responses_body(stream: bool = False) -> dict[str, Any]:
    fmt = {"type": "json_schema", "name": "person", "schema": PERSON, "strict": True}
    return {"model": "demo-model", "input": "who?", "text": {"format": fmt}, "stream": stream}


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
async def test_responses_text_format_is_enforced_and_repaired(tmp_path: Path, stream: bool) -> None:
    policy, fake = _compile(tmp_path, REPAIR)
    fake.push({"content": '{"name": "Ada"}'}, {"content": VALID})
    r = await _drive(policy, _responses_body(stream), Route.RESPONSES)
    assert r.status == 200 and orjson.loads(r.text) == {"name": "Ada", "age": 36}
    assert _calls(fake) == 2
    repair_input: Sequence[Any] = fake.requests[1].json["input"]
    assert repair_input[0] == {"role": "user", "content": "who?"} and repair_input[-2]["role"] == "assistant"


async def test_demo_upstream_answers_a_schema_with_a_valid_instance(tmp_path: Path) -> None:
    policy, _fake = _compile(tmp_path, REJECT)
    nested = {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 1},
            "when": {"type": "string", "format": "date"},
            "kind": {"enum": ["a", "b"]},
        },
        "required": ["items", "when", "kind"],
        "$defs": {"item": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}}},
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": nested, "strict": True}}
    r = await _drive(policy, _body(response_format=fmt))
    assert r.status == 200 and orjson.loads(r.text) == {
        "items": [{"n": 3}],
        "when": "2024-01-01",
        "kind": "a",
    }


# -- the fast path agrees with jsonschema --------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(-5, 5, allow_nan=False),
    st.sampled_from([1.0, 2.0, "", "a", "ABC-1234", "x" * 12]),
)
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "n"]), inner, max_size=3)
    ),
    max_leaves=6,
)
FAST_SCHEMAS = {
    "person-strict": (PERSON, True),
    "bounds-enum-anyof": (
        {
            "type": "object",
            "properties": {
                "a": {"anyOf": [{"type": "integer", "minimum": 0, "exclusiveMaximum": 3}, {"type": "null"}]},
                "b": {"enum": ["a", "", None, True]},
                "n": {"type": ["number", "string"], "maxLength": 3, "maximum": 2},
            },
            "required": ["a"],
            "maxProperties": 2,
        },
        False,
    ),
    "recursive-ref": (
        {
            "$defs": {"node": {"type": "object", "properties": {"n": {"$ref": "#/$defs/node"}, "a": {}}}},
            "oneOf": [{"$ref": "#/$defs/node"}, {"type": "array", "items": {"const": "a"}, "minItems": 1}],
        },
        True,
    ),
    "strings": ({"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$", "minLength": 2}, False),
}


@pytest.mark.parametrize("name", list(FAST_SCHEMAS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_fast_path_agrees_with_jsonschema(name: str, data: st.DataObject) -> None:
    schema, strict = FAST_SCHEMAS[name]
    compiled = compile_schema(schema, strict=strict)
    assert compiled.fast is not None, "this schema should take the fast path"
    keys = list(schema.get("properties", {})) or ["a", "n"]
    shaped = st.dictionaries(st.sampled_from([*keys, "zzz"]), ANY_JSON, max_size=4)
    instance = data.draw(st.one_of(ANY_JSON, shaped))
    assert compiled.fast(instance) == compiled.validator.is_valid(instance), instance


def test_schemas_the_fast_path_does_not_cover_fall_back_to_jsonschema() -> None:
    for schema in ({"not": {"type": "string"}}, {"enum": [1, 2.5]}, {"prefixItems": [{"type": "string"}]}):
        compiled = compile_schema(schema)
        assert compiled.fast is None
    assert compile_schema({"not": {"type": "string"}}).problems("x")[0].keyword == "not"
    assert compile_schema({"enum": [1, 2.5]}).problems(1.0) == []  # JSON Schema: 1 == 1.0


async def test_lenient_extraction_normalizes_a_responses_stream(tmp_path: Path) -> None:
    policy, fake = _compile(tmp_path, REJECT + "  extraction: lenient\n")
    fake.push({"content": f"Here:\n```json\n{VALID}\n```", "chunk_size": 4})
    r = await _drive(policy, _responses_body(stream=True), Route.RESPONSES)
    assert r.status == 200 and r.text == VALID
    clean = next(i for i, e in enumerate(r.events) if isinstance(e, TextDelta) and e.text == VALID)
    done = next(i for i, e in enumerate(r.events) if isinstance(e, RawEvent) and "done" in (e.event or ""))
    assert clean < done  # the clean JSON precedes the done events (which the codec patches to it)


async def test_flag_on_a_buffered_stream_sets_the_header(tmp_path: Path) -> None:
    policy, fake = _compile(tmp_path, "- type: schema\n  stream: buffer\n  on_failure: flag\n")
    fake.push({"content": "not json"})
    r = await _drive(policy, _body(stream=True, response_format=_person_format()))
    assert r.ctx is not None and r.ctx.response_headers["x-sidecar-flags"] == "schema"
    assert r.status == 200 and r.text == "not json"
    assert r.decisions() == [("output_invalid", "flag", "enforce")]
