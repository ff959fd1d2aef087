"""End to end with the official openai SDK against a real sidecar and a real fake upstream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.harness import SidecarHarness, sidecar_harness

SECRET = "sk-abcdefghijklmnopqrstuvwxyz0123"

REDACT = """
- type: headers
  tenant_header: x-tenant-id
  set_response: {x-served-by: policy-sidecar}
- type: blocklist
  id: secrets
  patterns: ['sk-[A-Za-z0-9]{20,}']
  max_match_chars: 80
  action: redact
  replacement: '[SECRET]'
"""


@pytest.fixture
def h(tmp_path: Path) -> Iterator[SidecarHarness]:
    with sidecar_harness(tmp_path, REDACT) as harness:
        yield harness


def client(h: SidecarHarness, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=h.v1, api_key="sk-client", max_retries=0, **kw)  # type: ignore[arg-type]


def scenario(**fields: object) -> dict[str, str]:
    return {"x-fake-scenario": json.dumps(fields)}


def collect(stream: openai.Stream) -> tuple[str, object]:  # type: ignore[type-arg]
    text, usage = [], None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                text.append(choice.delta.content)
    return "".join(text), usage


def test_non_stream_redacts_prompt_and_answer_and_preserves_unknown_fields(h: SidecarHarness) -> None:
    c = client(h)
    raw = c.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": f"my key is {SECRET}"}],
        extra_body={"vendor_extension": {"keep": [1, 2]}},
        extra_headers={"x-tenant-id": "team-a"},
    )
    completion = raw.parse()
    assert (
        completion.choices[0].message.content == "Hello from the demo upstream. You said: my key is [SECRET]"
    )
    assert raw.headers["x-served-by"] == "policy-sidecar"
    assert raw.headers["x-sidecar-revision"] == h.sidecar.store.current.revision
    seen = h.fake.requests[-1].json
    assert seen is not None
    assert SECRET not in json.dumps(seen)  # the provider never saw it
    assert seen["vendor_extension"] == {"keep": [1, 2]}  # unknown fields preserved after an edit

    answer = c.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers=scenario(content=f"here: {SECRET} ok"),
    )
    assert answer.choices[0].message.content == "here: [SECRET] ok"
    assert answer.system_fingerprint  # a field the proxy does not interpret, preserved


def test_untouched_request_is_forwarded_byte_for_byte(h: SidecarHarness) -> None:
    body = b'{"model":"m","messages":[{"role":"user","content":"plain"}],"z_unknown":{"a":null},  "n":1}'
    r = httpx.post(f"{h.v1}/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200
    assert h.fake.requests[-1].body == body


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 50])
def test_stream_redacts_a_secret_split_across_chunks(h: SidecarHarness, chunk_size: int) -> None:
    c = client(h)
    stream = c.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=scenario(content=f"before {SECRET} after", chunk_size=chunk_size),
    )
    text, usage = collect(stream)
    assert text == "before [SECRET] after"
    assert usage is not None  # the usage chunk passed through the filters


def test_stream_without_filters_is_piped_and_tool_calls_pass(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path) as h:
        c = client(h)
        stream = c.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "weather?"}],
            stream=True,
            extra_headers=scenario(
                tool_calls=[{"name": "get_weather", "arguments": '{"city": "Paris"}'}], chunk_size=3
            ),
        )
        args, names = "", []
        finish = None
        for chunk in stream:
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or []:
                    if call.function and call.function.name:
                        names.append(call.function.name)
                    if call.function and call.function.arguments:
                        args += call.function.arguments
                finish = choice.finish_reason or finish
        assert names == ["get_weather"] and json.loads(args) == {"city": "Paris"} and finish == "tool_calls"


def test_tool_calls_pass_through_a_filtered_stream(h: SidecarHarness) -> None:
    stream = client(h).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "weather?"}],
        stream=True,
        n=2,
        extra_headers=scenario(
            content="it is sunny", tool_calls=[{"name": "f", "arguments": '{"a": 1}'}], chunk_size=2
        ),
    )
    per_choice: dict[int, str] = {}
    args: dict[int, str] = {}
    for chunk in stream:
        for choice in chunk.choices:
            per_choice[choice.index] = per_choice.get(choice.index, "") + (choice.delta.content or "")
            for call in choice.delta.tool_calls or []:
                args[choice.index] = args.get(choice.index, "") + (call.function.arguments or "")
    assert per_choice == {0: "it is sunny", 1: "it is sunny"}
    assert {i: json.loads(a) for i, a in args.items()} == {0: {"a": 1}, 1: {"a": 1}}


def test_responses_api_stream_and_non_stream(h: SidecarHarness) -> None:
    c = client(h)
    r = c.responses.create(model="m", input=f"key {SECRET}")
    assert r.output_text == "Hello from the demo upstream. You said: key [SECRET]"
    with c.responses.stream(
        model="m", input="hi", extra_headers=scenario(content=f"a {SECRET} b", chunk_size=5)
    ) as stream:
        deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert deltas == "a [SECRET] b"
    assert final.output_text == "a [SECRET] b"  # the summary event cannot leak the original


def test_embeddings_go_through_the_chain(h: SidecarHarness) -> None:
    result = client(h).embeddings.create(model="text-embedding-3-small", input=["one", f"two {SECRET}"])
    assert len(result.data) == 2
    seen = h.fake.requests[-1].json
    assert seen is not None and seen["input"] == ["one", "two [SECRET]"]


def test_models_list_and_upstream_errors_keep_their_class(h: SidecarHarness) -> None:
    c = client(h)
    assert "demo-model" in [m.id for m in c.models.list().data]
    with pytest.raises(openai.RateLimitError) as info:
        c.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "x"}],
            extra_headers=scenario(status=429, retry_after=3),
        )
    assert info.value.response.headers["retry-after"] == "3"


def test_enforce_blocks_and_shadow_records_without_blocking(tmp_path: Path) -> None:
    block = "- type: blocklist\n  id: kw\n  keywords: [forbidden]\n  mode: {mode}\n"
    with sidecar_harness(tmp_path, block.format(mode="enforce")) as h:
        c = client(h)
        with pytest.raises(openai.BadRequestError) as info:
            c.chat.completions.create(model="m", messages=[{"role": "user", "content": "a forbidden word"}])
        assert info.value.code == "content_blocked"
        assert "forbidden" not in str(info.value.body)  # generic public message
        assert len(h.fake.requests) == 0  # never reached the provider

        h.write_policy(h.policy_path.read_text().replace("mode: enforce", "mode: shadow"))
        h.wait_for_revision(lambda p: p["plugins"][0]["mode"] == "shadow")
        answer = c.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "a forbidden word"}]
        )
        assert "forbidden" in (answer.choices[0].message.content or "")
        assert len(h.fake.requests) == 1
        decisions = httpx.get(f"{h.base_url}/admin/decisions").json()
        modes = {(c["plugin"], c["action"], c["mode"]): c["count"] for c in decisions["counts"]}
        assert modes[("kw", "block", "enforce")] == 1
        assert modes[("kw", "block", "shadow")] == 1


def test_stream_rejection_after_first_byte_is_an_in_band_error(tmp_path: Path) -> None:
    block = "- type: blocklist\n  keywords: [forbidden]\n"
    with sidecar_harness(tmp_path, block) as h:
        stream = client(h).chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            extra_headers=scenario(
                content="a long harmless start and then forbidden", chunk_size=4, chunk_delay=0.02
            ),
        )
        received = []
        with pytest.raises(openai.APIError) as info:
            for chunk in stream:
                received.extend(c.delta.content or "" for c in chunk.choices)
        assert "blocked by policy" in str(info.value)
        assert "forbidden" not in "".join(received)
        assert "".join(received).startswith("a long harmless")


def test_upstream_drop_mid_stream_ends_with_an_error_event(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path) as h:
        stream = client(h).chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            extra_headers=scenario(content="x" * 40, chunk_size=4, drop_after_chunks=3),
        )
        with pytest.raises(openai.APIError) as info:
            collect(stream)
        assert "incomplete" in str(info.value) or "invalid" in str(info.value)


def test_client_disconnect_cancels_the_upstream_read(tmp_path: Path) -> None:
    with sidecar_harness(tmp_path, REDACT) as h:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        headers = scenario(content="y" * 400, chunk_size=2, chunk_delay=0.05)  # ~10 s in total
        with httpx.stream("POST", f"{h.v1}/chat/completions", json=body, headers=headers) as r:
            assert r.status_code == 200
            next(r.iter_bytes())
        h.wait_idle()
        assert h.sidecar.store.current.in_flight == 0  # released long before the upstream would end
