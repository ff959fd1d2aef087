"""Upstream faults a real provider can produce, through a real sidecar (issue 16 items 4, 5, 8, 10).

The upstream is a raw socket server (``raw_upstream``) so it can misbehave exactly: close a
stream without its end event, send one 10 MB SSE line, send garbage, send a huge body. Clients
are the official SDKs (or httpx where the raw events are asserted).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import anthropic
import httpx
import openai
import orjson
import pytest

from proxy.chain.context import RequestContext
from proxy.chain.plugin import Plugin, PluginConfig, StreamFilter
from proxy.chain.registry import Registry, default_registry
from proxy.models.stream import StreamEvent
from tests.e2e.raw_upstream import SSE_HEAD, RawUpstream, Script, raw_upstream
from tests.harness import SidecarHarness, sidecar_harness

FILTER = "- type: blocklist\n  keywords: [forbidden]\n"
DONE = b"data: [DONE]\n\n"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def chunk(text: str, finish: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-raw",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def responses_event(kind: str, **fields: Any) -> bytes:
    return f"event: {kind}\n".encode() + b"data: " + orjson.dumps({"type": kind, **fields}) + b"\n\n"


def responses_stream(complete: bool) -> Script:
    resp = {"id": "resp_raw", "object": "response", "status": "in_progress", "model": "m", "output": []}
    parts: Script = [
        SSE_HEAD,
        responses_event("response.created", sequence_number=0, response=resp),
        responses_event(
            "response.output_text.delta",
            sequence_number=1,
            item_id="msg_1",
            output_index=0,
            content_index=0,
            delta="hello",
            logprobs=[],
        ),
    ]
    if complete:
        parts.append(
            responses_event("response.completed", sequence_number=2, response={**resp, "status": "completed"})
        )
    return parts


@pytest.fixture
def up() -> Iterator[RawUpstream]:
    with raw_upstream() as server:
        yield server


class PassConfig(PluginConfig):
    type: Literal["pass_stream"] = "pass_stream"


class PassFilter:
    """A stream filter that changes nothing: it makes the sidecar parse the stream, at no cost."""

    async def on_event(self, event: StreamEvent) -> Sequence[StreamEvent]:
        return [event]

    async def on_end(self) -> Sequence[StreamEvent]:
        return []


class PassPlugin(Plugin[PassConfig]):
    Config = PassConfig

    def open_stream(self, ctx: RequestContext) -> StreamFilter | None:
        return PassFilter()


def _registry() -> Registry:
    registry = default_registry()
    registry.register(PassPlugin)
    return registry


def harness(tmp_path: Path, up: RawUpstream, plugins: str = "", upstream_extra: str = "") -> Any:
    body = "plugins:\n" + "".join(f"  {line}\n" for line in plugins.strip().splitlines()) if plugins else ""
    policy = (
        f"version: 1\nupstreams:\n  default:\n    base_url: {up.url}\n    read_timeout: 30\n"
        f"{upstream_extra}" + (body or "plugins: []\n")
    )
    return sidecar_harness(tmp_path, policy=policy, registry=_registry())


def sse_events(text: str) -> list[dict[str, Any]]:
    out = []
    for block in text.split("\n\n"):
        data = [line[5:].strip() for line in block.splitlines() if line.startswith("data:")]
        if data and data[0] != "[DONE]":
            out.append(orjson.loads("\n".join(data)))
    return out


def post_stream(h: SidecarHarness, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{h.v1}{path}", json={**body, "stream": True}, timeout=60)


# -- item 4: a stream the upstream ends without its end event ------------------------------------


@pytest.mark.parametrize("plugins", ["", FILTER], ids=["piped", "parsed"])
def test_chat_stream_closed_without_done_ends_with_an_in_band_error(
    tmp_path: Path, up: RawUpstream, plugins: str
) -> None:
    up.answer([SSE_HEAD, chunk("hello"), chunk(" world")])  # then the connection closes
    with harness(tmp_path, up, plugins) as h:
        client = openai.OpenAI(base_url=h.v1, api_key="k", max_retries=0)
        stream = client.chat.completions.create(**CHAT, stream=True)  # type: ignore[call-overload]
        received = []
        with pytest.raises(openai.APIError) as info:
            for c in stream:
                received.extend(ch.delta.content or "" for ch in c.choices)
        assert "ended the stream before it was complete" in str(info.value)
        assert "".join(received) == "hello world"

        up.answer([SSE_HEAD, chunk("hello"), chunk(" world"), DONE])  # control: a proper end
        r = post_stream(h, "/chat/completions", CHAT)
        assert r.text.endswith("data: [DONE]\n\n")
        assert not any("error" in ev for ev in sse_events(r.text))


@pytest.mark.parametrize("plugins", ["", FILTER], ids=["piped", "parsed"])
def test_responses_stream_closed_without_completed_ends_with_an_in_band_error(
    tmp_path: Path, up: RawUpstream, plugins: str
) -> None:
    body = {"model": "m", "input": "hi"}
    up.answer(responses_stream(complete=False))
    up.answer(responses_stream(complete=True))
    with harness(tmp_path, up, plugins) as h:
        cut = sse_events(post_stream(h, "/responses", body).text)
        assert cut[-1]["type"] == "error" and cut[-1]["code"] == "upstream_stream_incomplete"
        whole = sse_events(post_stream(h, "/responses", body).text)
        assert whole[-1]["type"] == "response.completed"
        assert not any(ev["type"] == "error" for ev in whole)


def test_anthropic_client_stream_closed_without_done_raises(tmp_path: Path, up: RawUpstream) -> None:
    up.answer([SSE_HEAD, chunk("hello")])
    with harness(tmp_path, up) as h:
        client = anthropic.Anthropic(base_url=h.base_url, api_key="k", max_retries=0)
        with (
            pytest.raises(anthropic.APIError) as info,
            client.messages.stream(
                model="m", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
            ) as stream,
        ):
            for _ in stream:
                pass
        assert "ended the stream before it was complete" in str(info.value)


def test_an_upstream_error_event_is_not_doubled(tmp_path: Path, up: RawUpstream) -> None:
    error = (
        b'data: {"error": {"message": "overloaded", "type": "server_error", "param": null, "code": null}}\n\n'
    )
    up.answer([SSE_HEAD, chunk("hi"), error])
    with harness(tmp_path, up) as h:
        events = sse_events(post_stream(h, "/chat/completions", CHAT).text)
        assert [ev["error"]["message"] for ev in events if "error" in ev] == ["overloaded"]


# -- item 8: garbage never reaches a client whose stream is parsed -------------------------------


@pytest.mark.parametrize(
    ("garbage", "code"),
    [
        (b"data: this is not json\n\n", "upstream_malformed_event"),
        (b"data: 42\n\n", "upstream_malformed_event"),
        # Not an SSE field at all: ignored as the SSE spec says, and the stream never ends
        # properly (its [DONE] is swallowed into the garbage line).
        (b"\x00\xff raw bytes with no line end", "upstream_stream_incomplete"),
    ],
    ids=["text", "scalar", "raw"],
)
def test_garbage_in_a_filtered_stream_becomes_the_typed_error(
    tmp_path: Path, up: RawUpstream, garbage: bytes, code: str
) -> None:
    # The pause makes "hello" reach the client first, so the garbage arrives mid-stream.
    up.answer([SSE_HEAD, chunk("hello"), 0.3, garbage])
    with harness(tmp_path, up, FILTER) as h:
        r = post_stream(h, "/chat/completions", CHAT)
        assert b"not json" not in r.content and b"raw bytes" not in r.content and b"42" not in r.content
        events = sse_events(r.text)
        assert events[0]["choices"][0]["delta"]["content"] == "hello"
        assert events[-1]["error"]["code"] == code

        up.answer([SSE_HEAD, chunk("hello"), 0.3, garbage, DONE])  # and with the SDK
        client = openai.OpenAI(base_url=h.v1, api_key="k", max_retries=0)
        with pytest.raises(openai.APIError) as info:
            for _ in client.chat.completions.create(**CHAT, stream=True):  # type: ignore[call-overload]
                pass
        assert "malformed stream event" in str(info.value) or "ended the stream" in str(info.value)


# -- item 5: one huge SSE line, /healthz stays responsive -----------------------------------------


def _big_line_stream(size: int) -> Script:
    event = chunk("x" * size)
    parts: Script = [SSE_HEAD, chunk("start")]
    step = 64 * 1024
    for i in range(0, len(event), step):  # paced, so health checks overlap the parsing
        parts.extend([event[i : i + step], 0.005])
    parts.append(DONE)
    return parts


def _poll_health(base_url: str, stop: threading.Event, results: list[int]) -> None:
    with httpx.Client(timeout=5) as c:  # generous: the old parser blocked the loop for 14 s
        while not stop.is_set():
            try:
                results.append(c.get(f"{base_url}/healthz").status_code)
            except httpx.HTTPError:
                results.append(0)


@pytest.mark.parametrize("cap", ["default", "raised"])
def test_a_10_mb_line_is_parsed_in_linear_time_and_capped(tmp_path: Path, up: RawUpstream, cap: str) -> None:
    size = 10 * 1024 * 1024
    extra = "    max_event_bytes: 33554432\n" if cap == "raised" else ""
    up.answer(_big_line_stream(size))
    # A filter that costs nothing per character: this measures the parsing, not a filter's scan.
    with harness(tmp_path, up, "- type: pass_stream", extra) as h:
        stop, health = threading.Event(), []  # type: ignore[var-annotated]
        poller = threading.Thread(target=_poll_health, args=(h.base_url, stop, health))
        poller.start()
        try:
            while not health:
                stop.wait(0.01)
            before = len(health)
            r = post_stream(h, "/chat/completions", CHAT)
            during = len(health) - before
        finally:
            stop.set()
            poller.join()
        events = sse_events(r.text)
        assert during >= 2 and all(code == 200 for code in health), (during, health)
        if cap == "default":  # 4 MiB
            assert events[-1]["error"]["code"] == "upstream_event_too_large"
            assert len(r.content) < 1024 * 1024
        else:
            text = "".join(ev["choices"][0]["delta"].get("content") or "" for ev in events if "choices" in ev)
            assert text == "start" + "x" * size
            assert r.text.endswith("data: [DONE]\n\n")


# -- item 10: a buffered answer larger than max_response_bytes ----------------------------------


def _json_answer(size: int, with_length: bool) -> Script:
    body = orjson.dumps({"id": "x", "object": "chat.completion", "choices": [], "pad": "p" * size})
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    head += b"content-length: %d\r\n" % len(body) if with_length else b"connection: close\r\n"
    return [head + b"\r\n", *(body[i : i + 65536] for i in range(0, len(body), 65536))]


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "close-delimited"])
def test_a_buffered_answer_over_max_response_bytes_is_a_502(
    tmp_path: Path, up: RawUpstream, with_length: bool
) -> None:
    up.answer(_json_answer(3 * 1024 * 1024, with_length))
    up.answer(_json_answer(1000, with_length))
    with harness(tmp_path, up, upstream_extra="    max_response_bytes: 1048576\n") as h:
        client = openai.OpenAI(base_url=h.v1, api_key="k", max_retries=0)
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
        assert info.value.status_code == 502
        assert info.value.body["code"] == "upstream_response_too_large"  # type: ignore[index]
        assert httpx.post(f"{h.v1}/chat/completions", json=CHAT).status_code == 200


def test_streams_are_not_limited_by_max_response_bytes(tmp_path: Path, up: RawUpstream) -> None:
    piece = "y" * 1000
    up.answer([SSE_HEAD, *(chunk(piece) for _ in range(3000)), DONE])  # ~3.3 MB in small events
    with harness(tmp_path, up, upstream_extra="    max_response_bytes: 1048576\n") as h:
        r = post_stream(h, "/chat/completions", CHAT)
        assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
        assert len(sse_events(r.text)) == 3000


def _timed_health(base_url: str, stop: threading.Event, took: list[float]) -> None:
    with httpx.Client(timeout=30) as c:
        while not stop.is_set():
            started = time.perf_counter()
            c.get(f"{base_url}/healthz")
            took.append(time.perf_counter() - started)


def test_a_4_mb_text_through_the_blocklist_filter_does_not_stall_the_loop(
    tmp_path: Path, up: RawUpstream
) -> None:
    """One text event just under the default 4 MiB cap, scanned by the blocklist stream filter.

    Its rewriter used to walk the text one anchored match per character (~5 s of event loop
    for 4 MB); it now jumps with one search. No fixed time: the slowest health probe must stay
    well under the stream's own duration (the old code: about the whole of it).
    """
    size = 4 * 1024 * 1024 - 4096
    up.answer(_big_line_stream(size))
    with harness(tmp_path, up, FILTER) as h:
        stop, took = threading.Event(), []  # type: ignore[var-annotated]
        poller = threading.Thread(target=_timed_health, args=(h.base_url, stop, took))
        poller.start()
        try:
            while not took:
                stop.wait(0.01)
            started = time.perf_counter()
            r = post_stream(h, "/chat/completions", CHAT)
            duration = time.perf_counter() - started
            probes = took[-3:] if len(took) >= 3 else took
        finally:
            stop.set()
            poller.join()
        text = "".join(
            ev["choices"][0]["delta"].get("content") or "" for ev in sse_events(r.text) if "choices" in ev
        )
        assert text == "start" + "x" * size
        assert max(took) < 0.6 * duration, (max(took), duration, probes)
