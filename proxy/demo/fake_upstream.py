"""A scriptable fake OpenAI-compatible upstream.

Three users: the sidecar's built-in demo upstream (answers like a model, streaming included),
the test suite and benchmarks (fault injection: errors, hangs, slow or dropped streams, broken
JSON), and ``policy-sidecar fake-upstream`` (``serve_fake_upstream``).

How an answer is chosen for a model endpoint (chat, responses, embeddings): the next queued
``Scenario`` (``FakeState.push`` or ``POST /_fake/script``), else the JSON ``Scenario`` in the
``x-fake-scenario`` request header, else the default reply. Wire formats follow what the
official ``openai`` SDK parses. Any other ``/v1/...`` path echoes the request back, for
pass-through tests, except on the embedded demo (``build_demo_upstream``), which answers 404 like
a provider. The last ``DEFAULT_MAX_RECORDED`` ``/v1`` requests are recorded
(``FakeState.requests``, ``GET /_fake/requests``), credential headers (Authorization, api-key,
x-api-key, Cookie) only as a digest: the fake never stores or echoes a key.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import uvicorn
from pydantic import TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from proxy.demo.fake_instance import structured_reply
from proxy.demo.fake_scenario import (
    DEFAULT_REPLY,
    MODEL_IDS,
    DroppedConnection,
    FakeState,
    RecordedRequest,
    Scenario,
    all_text,
    approx_tokens,
    chat_last_user,
    encode_embedding,
    error_envelope,
    install_log_filter,
    new_id,
    pieces,
    pieces_at,
    render,
    responses_last_user,
    safe_headers,
)

__all__ = [
    "DroppedConnection",
    "FakeState",
    "RecordedRequest",
    "Scenario",
    "build_demo_upstream",
    "build_fake_upstream",
    "fake_upstream_in_thread",
    "serve_fake_upstream",
]

_SCENARIO_LIST = TypeAdapter(list[Scenario])
_FINGERPRINT = "fp_fake_upstream"
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_JSON = "application/json"


class _DropBeforeBody(Response):
    """Sends the headers (with the real Content-Length) and then dies: a truncated non-stream reply."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        raise DroppedConnection("scripted drop before the body")


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=_JSON, headers=headers)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json(error_envelope(status, message), status, headers)


def _sse(payload: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


async def _paced(events: list[bytes], sc: Scenario, broken: bytes) -> AsyncIterator[bytes]:
    """Yield SSE events with the scenario's timing and faults applied."""
    if sc.first_token_delay:
        await asyncio.sleep(sc.first_token_delay)
    broken_at = len(events) // 2 if sc.malformed else -1
    for i, event in enumerate(events):
        if sc.drop_after_chunks is not None and i >= sc.drop_after_chunks:
            raise DroppedConnection(f"scripted drop after {i} events")
        if i and sc.chunk_delay:
            await asyncio.sleep(sc.chunk_delay)
        if i == broken_at:
            yield broken
        yield event


def _stream(events: list[bytes], sc: Scenario, broken: bytes, status: int) -> StreamingResponse:
    headers = {"cache-control": "no-cache", **sc.extra_headers()}
    return StreamingResponse(
        _paced(events, sc, broken), status_code=status, media_type="text/event-stream", headers=headers
    )


def _finish(payload: dict[str, Any], sc: Scenario, status: int) -> Response:
    """A non-stream model reply, possibly dropped or truncated as scripted."""
    data = orjson.dumps(payload)
    headers = sc.extra_headers()
    if sc.drop_after_chunks is not None:
        return _DropBeforeBody(data, status_code=status, media_type=_JSON, headers=headers)
    if sc.malformed:
        data = data[: max(1, len(data) // 2)]
    return Response(data, status_code=status, media_type=_JSON, headers=headers)


def _reply_parts(
    sc: Scenario, last_user: str, model: str, structured: str | None = None
) -> tuple[str | None, list[dict[str, str]]]:
    """Reply text (None for a tool-calls-only turn) and the tool calls with fresh call ids.

    ``structured``: the default reply of a structured-output request (a minimal valid instance
    of its schema), used when nothing else is scripted.
    """
    calls = [
        {"id": new_id("call_fake"), "name": t.name, "arguments": t.arguments} for t in sc.tool_calls or []
    ]
    if sc.content is None and not calls and structured is not None:
        return structured, calls
    template = sc.content if sc.content is not None else (None if calls else DEFAULT_REPLY)
    return (render(template, last_user, model) if template is not None else None), calls


# -- chat completions ---------------------------------------------------------------------------


def _chat(body: dict[str, Any], sc: Scenario, status: int) -> Response:
    model = str(body.get("model") or MODEL_IDS[0])
    text, calls = _reply_parts(sc, chat_last_user(body.get("messages")), model, structured_reply(body, False))
    finish = sc.finish_reason or ("tool_calls" if calls else "stop")
    raw_n = body.get("n")
    n = min(max(raw_n, 1), 4) if isinstance(raw_n, int) else 1
    prompt = approx_tokens(all_text(body.get("messages")))
    completion = approx_tokens(" ".join([text or "", *(c["arguments"] for c in calls)])) * n
    usage = sc.usage or {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    base = {"id": new_id("chatcmpl-fake-"), "created": int(time.time()), "model": model}
    base["system_fingerprint"] = _FINGERPRINT
    if not body.get("stream"):
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if calls:
            functions = [{"name": c["name"], "arguments": c["arguments"]} for c in calls]
            ids = [c["id"] for c in calls]
            message["tool_calls"] = [
                {"id": i, "type": "function", "function": f} for i, f in zip(ids, functions, strict=True)
            ]
        choices = [
            {"index": i, "message": message, "logprobs": None, "finish_reason": finish} for i in range(n)
        ]
        return _finish({**base, "object": "chat.completion", "choices": choices, "usage": usage}, sc, status)

    def chunk(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _sse({**base, "object": "chat.completion.chunk", "choices": [choice]})

    # Role chunk: content "" as OpenAI sends it, None for a tool-calls-only turn.
    events = [chunk(i, {"role": "assistant", "content": "" if text is not None else None}) for i in range(n)]
    parts = (
        pieces_at(text or "", sc.split_at) if sc.split_at is not None else pieces(text or "", sc.chunk_size)
    )
    for piece in parts:
        events += [chunk(i, {"content": piece}) for i in range(n)]
    for k, call in enumerate(calls):
        head = {"index": k, "id": call["id"], "type": "function"}
        head["function"] = {"name": call["name"], "arguments": ""}
        events += [chunk(i, {"tool_calls": [head]}) for i in range(n)]
        for frag in pieces(call["arguments"], sc.chunk_size):
            events += [
                chunk(i, {"tool_calls": [{"index": k, "function": {"arguments": frag}}]}) for i in range(n)
            ]
    events += [chunk(i, {}, finish) for i in range(n)]
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        events.append(_sse({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}))
    events.append(b"data: [DONE]\n\n")
    return _stream(events, sc, b'data: {"id": "chatcmpl-fake-broken", "choices": [{"delta": \n\n', status)


# -- responses API ------------------------------------------------------------------------------


def _responses(body: dict[str, Any], sc: Scenario, status: int) -> Response:
    model = str(body.get("model") or MODEL_IDS[0])
    last_user = responses_last_user(body.get("input"))
    text, calls = _reply_parts(sc, last_user, model, structured_reply(body, True))
    prompt = approx_tokens(all_text(body.get("input")) + " " + all_text(body.get("instructions")))
    completion = approx_tokens(" ".join([text or "", *(c["arguments"] for c in calls)]))
    usage = sc.usage or {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }
    incomplete = sc.finish_reason == "length"
    final_status = "incomplete" if incomplete else "completed"
    msg_id, resp_id, created = new_id("msg_fake"), new_id("resp_fake"), int(time.time())
    part: dict[str, Any] = {"type": "output_text", "text": text or "", "annotations": [], "logprobs": []}
    output: list[dict[str, Any]] = []
    if text is not None:
        output.append(
            {"type": "message", "id": msg_id, "status": final_status, "role": "assistant", "content": [part]}
        )
    for call in calls:
        fc = {"type": "function_call", "id": new_id("fc_fake"), "call_id": call["id"]}
        fc["status"] = "completed"
        output.append({**fc, "name": call["name"], "arguments": call["arguments"]})

    def response(state: str, out: list[dict[str, Any]], use: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "id": resp_id,
            "object": "response",
            "created_at": created,
            "status": state,
            "model": model,
            "output": out,
            "usage": use,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete and use else None,
            "instructions": body.get("instructions"),
            "metadata": body.get("metadata") or {},
            "parallel_tool_calls": True,
            "temperature": 1.0,
            "top_p": 1.0,
            "tool_choice": "auto",
            "tools": [],
            "text": {"format": {"type": "text"}},
        }

    if not body.get("stream"):
        return _finish(response(final_status, output, usage), sc, status)

    events: list[bytes] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append(_sse({"type": kind, "sequence_number": len(events), **fields}, event=kind))

    emit("response.created", response=response("in_progress", [], None))
    emit("response.in_progress", response=response("in_progress", [], None))
    for index, item in enumerate(output):
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "content": []},
            )
            emit("response.content_part.added", **where, content_index=0, part={**part, "text": ""})
            for piece in pieces(item["content"][0]["text"], sc.chunk_size):
                emit("response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[])
            emit("response.output_text.done", **where, content_index=0, text=part["text"], logprobs=[])
            emit("response.content_part.done", **where, content_index=0, part=part)
        else:
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            for piece in pieces(item["arguments"], sc.chunk_size):
                emit("response.function_call_arguments.delta", **where, delta=piece)
            emit("response.function_call_arguments.done", **where, arguments=item["arguments"])
        emit("response.output_item.done", output_index=index, item=item)
    emit(f"response.{final_status}", response=response(final_status, output, usage))
    broken = b'event: response.output_text.delta\ndata: {"type": "response.output_text.delta", "delta": \n\n'
    return _stream(events, sc, broken, status)


# -- embeddings ---------------------------------------------------------------------------------


def _embeddings(body: dict[str, Any], sc: Scenario, status: int) -> Response:
    raw = body.get("input")
    if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)):
        raw = [raw]  # a single string, or a single token array
    if not isinstance(raw, list) or not raw:
        return _error(400, "'input' must be a non-empty string or array", sc.extra_headers())
    texts = [item if isinstance(item, str) else orjson.dumps(item).decode() for item in raw]
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for i, text in enumerate(texts):
        data.append({"object": "embedding", "index": i, "embedding": encode_embedding(text, as_base64)})
    tokens = sum(approx_tokens(t) for t in texts)
    usage = sc.usage or {"prompt_tokens": tokens, "total_tokens": tokens}
    model = str(body.get("model") or "demo-embedding")
    return _finish({"object": "list", "data": data, "model": model, "usage": usage}, sc, status)


# -- plumbing -----------------------------------------------------------------------------------


def _state(request: Request) -> FakeState:
    state: FakeState = request.app.state.fake
    return state


async def _record(request: Request) -> tuple[bytes, Any]:
    """Log the request and return its body and parsed JSON (None when it is not JSON)."""
    body = await request.body()
    try:
        parsed: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    headers = safe_headers(request.headers.items())
    path, query = request.url.path, request.url.query
    _state(request).record(RecordedRequest(request.method, path, query, headers, body, parsed))
    return body, parsed


def _model_endpoint(kind: str) -> Any:
    """Shared front half of chat / responses / embeddings: parse, pick the scenario, apply faults."""
    from proxy.demo.fake_anthropic import anthropic_error, messages

    builders = {"chat": _chat, "responses": _responses, "embeddings": _embeddings, "messages": messages}
    build = builders[kind]
    error = anthropic_error if kind == "messages" else _error

    async def endpoint(request: Request) -> Response:
        raw, body = await _record(request)
        directive: Scenario | None = None
        header = request.headers.get("x-fake-scenario")
        if header is not None:
            try:
                directive = Scenario.model_validate_json(header)
            except ValidationError as exc:
                return _error(400, f"invalid x-fake-scenario header: {exc.errors()[0]['msg']}")
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object" if raw else "request body is empty")
        sc = _state(request).pop() or directive or Scenario()
        if sc.delay:
            await asyncio.sleep(sc.delay)
        status = sc.status or 200
        if sc.raw_body is not None:
            media = sc.content_type or _JSON
            return Response(sc.raw_body, status_code=status, media_type=media, headers=sc.extra_headers())
        if status >= 400:
            return error(status, f"fake upstream scripted error (status {status})", sc.extra_headers())
        return build(body, sc, status)

    return endpoint


async def _moderations(request: Request) -> Response:
    """OpenAI ``/v1/moderations``: ``violence`` scores 0.99 when the input contains FLAGME, else 0.01."""
    _raw, body = await _record(request)
    text = orjson.dumps(body.get("input") if isinstance(body, dict) else body).decode()
    flagged = "FLAGME" in text
    categories = (
        "sexual",
        "hate",
        "harassment",
        "self-harm",
        "sexual/minors",
        "hate/threatening",
        "violence/graphic",
        "self-harm/intent",
        "self-harm/instructions",
        "harassment/threatening",
        "violence",
    )
    scores = {c: 0.01 for c in categories}
    scores["violence"] = 0.99 if flagged else 0.01
    result = {
        "flagged": flagged,
        "categories": {c: scores[c] > 0.5 for c in categories},
        "category_scores": scores,
    }
    return _json({"id": new_id("modr-fake-"), "model": "omni-moderation-latest", "results": [result]})


def _model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 0, "owned_by": "policy-sidecar"}


async def _models(request: Request) -> Response:
    await _record(request)
    return _json({"object": "list", "data": [_model_object(m) for m in MODEL_IDS]})


async def _model(request: Request) -> Response:
    """``GET /v1/models/{id}`` (``client.models.retrieve``): the model, or 404 as OpenAI answers."""
    await _record(request)
    model = request.path_params["model"]
    if model not in MODEL_IDS:
        return _json(error_envelope(404, f"The model '{model}' does not exist", "model_not_found"), 404)
    return _json(_model_object(model))


async def _not_found(request: Request) -> Response:
    """Any other /v1 path on the embedded demo: 404 like a provider (nothing echoed back)."""
    await _record(request)
    message = f"Unknown request URL: {request.method} {request.url.path}. Please check the URL and method."
    return _json(error_envelope(404, message, "unknown_url"), 404)


async def _echo(request: Request) -> Response:
    """Any other /v1 path (test fake only): mirror the request, credentials redacted."""
    raw, _ = await _record(request)
    headers = {"x-fake-echo": "1"}
    lines = request.headers.get("x-fake-stream")
    if lines is not None and lines.strip().isdigit():
        body = (f"line {i}\n".encode() for i in range(int(lines)))
        return StreamingResponse(body, media_type="text/plain", headers=headers)
    status_header = request.headers.get("x-fake-status", "200").strip()
    status = int(status_header) if status_header.isdigit() else 200
    payload = {
        "method": request.method,
        "path": request.url.path,
        "query": request.url.query,
        "headers": safe_headers(request.headers.items()),
        "body": raw.decode("utf-8", "replace"),
    }
    return _json(payload, status, headers)


async def _stray(request: Request) -> Response:
    """Any path outside /v1: recorded (tests check nothing escaped the base path), then 404."""
    await _record(request)
    return _error(404, f"fake upstream: no route for {request.url.path}")


async def _script(request: Request) -> Response:
    """``POST /_fake/script``: queue a list of scenarios (one bad entry rejects the whole list)."""
    try:
        scenarios = _SCENARIO_LIST.validate_json(await request.body())
    except ValidationError as exc:
        return _error(400, f"invalid scenario list: {exc.errors()[0]['msg']}")
    state = _state(request)
    state.push(*scenarios)
    return _json({"queued": len(scenarios), "pending": state.pending})


async def _requests(request: Request) -> Response:
    return _json([r.to_dict() for r in _state(request).requests])


async def _reset(request: Request) -> Response:
    _state(request).reset()
    return _json({"ok": True})


def build_fake_upstream(state: FakeState | None = None, *, echo: bool = True) -> Starlette:
    """The fake upstream ASGI app; ``app.state.fake`` is its ``FakeState``.

    ``echo``: unknown ``/v1`` paths mirror the request (for pass-through tests); the embedded
    demo upstream (``build_demo_upstream``) answers them 404 like a provider instead.
    """
    install_log_filter()
    routes = [
        Route("/v1/chat/completions", _model_endpoint("chat"), methods=["POST"]),
        Route("/v1/responses", _model_endpoint("responses"), methods=["POST"]),
        Route("/v1/embeddings", _model_endpoint("embeddings"), methods=["POST"]),
        Route("/v1/messages", _model_endpoint("messages"), methods=["POST"]),
        Route("/v1/models", _models, methods=["GET"]),
        Route("/v1/models/{model:path}", _model, methods=["GET"]),
        Route("/v1/moderations", _moderations, methods=["POST"]),
        Route("/v1/{path:path}", _echo if echo else _not_found, methods=_ALL_METHODS),
        Route("/_fake/script", _script, methods=["POST"]),
        Route("/_fake/requests", _requests, methods=["GET"]),
        Route("/_fake/reset", _reset, methods=["POST"]),
        Route("/{path:path}", _stray, methods=_ALL_METHODS),
    ]
    app = Starlette(routes=routes)
    app.state.fake = state if state is not None else FakeState()
    return app


def build_demo_upstream() -> Starlette:
    """The embedded ``builtin:demo`` upstream: 404 on unknown paths, a bounded request log."""
    return build_fake_upstream(echo=False)


def serve_fake_upstream(host: str = "127.0.0.1", port: int = 9100, state: FakeState | None = None) -> None:
    """Run the fake upstream with uvicorn until interrupted (``policy-sidecar fake-upstream``)."""
    uvicorn.run(build_fake_upstream(state), host=host, port=port, log_level="warning")


@contextmanager
def fake_upstream_in_thread(state: FakeState | None = None) -> Iterator[tuple[str, FakeState]]:
    """Serve the fake on a free loopback port in a background thread; yields (``/v1`` base URL, state).

    For tests and benchmarks that need real sockets (SDK clients, the sidecar's aiohttp pool).
    The socket is bound before the thread starts, so there is no port race.
    """
    state = state if state is not None else FakeState()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(build_fake_upstream(state), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake upstream failed to start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}/v1", state
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
