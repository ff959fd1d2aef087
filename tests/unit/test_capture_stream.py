"""``StreamCapture``: stream events joined into the JSON a whole answer is captured in, capped.

The e2e tests (tests/e2e/test_capture_streams.py) check the plain text path through a running
sidecar; these cover what the fake upstream does not script there: tool calls, several choices,
the Responses API's final event, the cap on each kind of content, and the on/off switch.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson

from proxy.chain.context import RequestContext
from proxy.contracts.assemble import output_from_body
from proxy.models.chat import Route
from proxy.models.stream import Finish, RawEvent, TextDelta, ToolCallDelta, Usage
from proxy.observability.capture import REQUEST_KEY, RESPONSE_KEY, STREAM_KEY
from proxy.observability.capture_stream import StreamCapture, keep_stream, open_capture
from proxy.policy.observability import CaptureConfig
from proxy.upstream.sse import encode_event


def _body(cap: StreamCapture, model: str = "m") -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(cap.body(model))
    return out


def test_text_tool_calls_and_usage_of_several_choices_make_one_chat_completion() -> None:
    cap = StreamCapture(Route.CHAT, 1000)
    for ev in (
        TextDelta(0, "Hel"),
        TextDelta(1, "Other"),
        TextDelta(0, "lo"),
        ToolCallDelta(0, 0, '{"a":', id="call_1", name="lookup"),
        ToolCallDelta(0, 0, " 1}"),
        Finish(0, "tool_calls"),
        Finish(1, "stop"),
        Usage({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}),
    ):
        cap.feed(ev)
    body = _body(cap, "gpt-x")
    assert body["object"] == "chat.completion" and body["model"] == "gpt-x"
    first, second = body["choices"]
    assert first["message"]["content"] == "Hello" and first["finish_reason"] == "tool_calls"
    (call,) = first["message"]["tool_calls"]
    assert call == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"a": 1}'},
    }
    assert second == {
        "index": 1,
        "message": {"role": "assistant", "content": "Other"},
        "finish_reason": "stop",
    }
    assert body["usage"]["total_tokens"] == 7
    assert not cap.truncated


def test_text_and_arguments_beyond_the_cap_are_cut_off_and_noted() -> None:
    cap = StreamCapture(Route.CHAT, 8)
    for ev in (TextDelta(0, "12345"), ToolCallDelta(0, 0, "xy", name="f"), TextDelta(0, "6789")):
        cap.feed(ev)
    cap.feed(ToolCallDelta(0, 0, "z"))
    cap.feed(Finish(0, "stop"))
    choice = _body(cap)["choices"][0]
    assert choice["message"]["content"] == "12345" + "6"  # 5 + 2 + 1 = the cap of 8
    assert choice["message"]["tool_calls"][0]["function"]["arguments"] == "xy"
    assert choice["finish_reason"] == "stop" and cap.truncated


def _completed(text: str) -> RawEvent:
    response = {
        "object": "response",
        "status": "completed",
        "output": [
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
        ],
    }
    data = orjson.dumps({"type": "response.completed", "response": response})
    return RawEvent(encode_event(data, "response.completed"), "response.completed")


def test_the_responses_final_event_is_kept_as_the_response_object() -> None:
    cap = StreamCapture(Route.RESPONSES, 10_000)
    cap.feed(TextDelta(0, "Hi there"))
    cap.feed(_completed("Hi there"))
    body = _body(cap)
    assert body["status"] == "completed"
    assert output_from_body(body, Route.RESPONSES).choices[0].content == "Hi there"


def test_a_responses_stream_without_its_final_event_or_too_big_for_it_keeps_the_deltas() -> None:
    cap = StreamCapture(Route.RESPONSES, 40)
    cap.feed(TextDelta(0, "partial answer"))
    cap.feed(_completed("partial answer" * 20))  # does not fit in what is left
    body = _body(cap)
    assert cap.truncated and body["status"] == "incomplete"
    assert output_from_body(body, Route.RESPONSES).choices[0].content == "partial answer"


def _policy(**capture: Any) -> Any:
    cfg = CaptureConfig(**capture)
    observability = SimpleNamespace(capture=cfg)
    return SimpleNamespace(capture_on=cfg.enabled, policy=SimpleNamespace(observability=observability))


def test_open_only_when_answers_are_kept_for_a_kept_request() -> None:
    ctx = RequestContext("r1", Route.CHAT, {}, "rev", "m")
    assert open_capture(_policy(dir="d", responses=True), ctx, Route.CHAT) is None  # no kept body
    ctx.state[REQUEST_KEY] = b"{}"
    assert open_capture(_policy(), ctx, Route.CHAT) is None  # capture off
    assert open_capture(_policy(dir="d"), ctx, Route.CHAT) is None  # responses: false
    cap = open_capture(_policy(dir="d", responses=True, max_response_kb=1), ctx, Route.CHAT)
    assert cap is not None
    cap.feed(TextDelta(0, "x" * 1500))  # over 1 KB
    keep_stream(ctx, cap, completed=False)
    assert orjson.loads(ctx.state[RESPONSE_KEY])["choices"][0]["message"]["content"] == "x" * 1024
    assert ctx.state[STREAM_KEY] == {"truncated": True, "completed": False}
