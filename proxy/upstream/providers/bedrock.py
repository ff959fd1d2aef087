"""OpenAI chat completions <-> Amazon Bedrock Converse (every model family behind one schema).

Pure functions: the request body, the answer, the error, and the ConverseStream events (already
unframed from AWS event-stream by the target) into neutral stream events.

Mapping: ``system``/``developer`` -> ``system`` text blocks; ``tool`` messages -> ``toolResult``
blocks in a user turn (consecutive same-role turns merged: Converse wants them alternating);
``tool_calls`` -> ``toolUse``; images (``data:`` URLs only: Converse takes bytes or S3, not web
URLs) -> ``image`` blocks; ``max_tokens`` / ``max_completion_tokens``, ``temperature``,
``top_p``, ``stop`` -> ``inferenceConfig``; tools -> ``toolConfig``. ``stopReason``
``guardrail_intervened`` and ``content_filtered`` -> ``content_filter``.

Dropped: ``response_format`` (Converse has no JSON mode; the schema plugin still validates),
``n`` > 1 is refused, ``presence_penalty``, ``frequency_penalty``, ``logit_bias``, ``seed``,
``logprobs``, ``user``, ``metadata``, ``stream_options`` (usage always comes),
``parallel_tool_calls``, ``tool_choice: none`` (Converse has no such mode: tools are left out).
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping
from typing import Any

from proxy.errors import InvalidRequest
from proxy.models.stream import ErrorEvent, Finish, StreamEvent, TextDelta, ToolCallDelta, Usage
from proxy.upstream.providers.common import (
    assistant_message,
    chat_completion,
    chat_messages,
    content_items,
    function_tool,
    int_or_zero,
    merge_turn,
    new_completion_id,
    openai_tool_call,
    refuse_n,
    require_messages,
    single_choice,
    stop_sequences,
    system_items,
    tool_calls,
    tool_text,
    unsupported,
    usage_with_cache,
)

__all__ = [
    "BedrockStreamDecoder",
    "bedrock_error_to_openai",
    "bedrock_response_to_openai",
    "openai_request_to_bedrock",
]

_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
#: Bedrock exception name -> (HTTP status, OpenAI type, code).
ERRORS = {
    "ThrottlingException": (429, "rate_limit_error", "rate_limit_exceeded"),
    "ServiceQuotaExceededException": (429, "rate_limit_error", "rate_limit_exceeded"),
    "ModelNotReadyException": (503, "api_error", "model_not_ready"),
    "ModelTimeoutException": (504, "timeout_error", "timeout"),
    "ServiceUnavailableException": (503, "api_error", "service_unavailable"),
    "InternalServerException": (500, "api_error", "server_error"),
    "ModelStreamErrorException": (502, "api_error", "server_error"),
    "ModelErrorException": (502, "api_error", "server_error"),
    "ValidationException": (400, "invalid_request_error", None),
    "AccessDeniedException": (403, "permission_error", None),
    "UnrecognizedClientException": (401, "authentication_error", "invalid_api_key"),
    "ResourceNotFoundException": (404, "not_found_error", "model_not_found"),
}
_CONTEXT_MARKERS = ("too long", "too many input tokens", "input length", "context window")
_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}


def stop_reason_to_openai(reason: Any) -> str | None:
    return None if not isinstance(reason, str) else _STOP.get(reason, "stop")


def usage_to_openai(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Converse usage -> OpenAI usage; cache reads and writes are prompt tokens too (as for
    Anthropic), so a budget reading ``prompt_tokens`` sees every token billed as input."""
    return usage_with_cache(
        int_or_zero(usage.get("inputTokens")),
        int_or_zero(usage.get("outputTokens")),
        int_or_zero(usage.get("cacheReadInputTokens")),
        int_or_zero(usage.get("cacheWriteInputTokens")),
    )


# ------------------------------------------------------------------ request


def _image(part: Mapping[str, Any], param: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str) or not url.startswith("data:"):
        raise unsupported("An image by URL (Bedrock takes inline images only)", param)
    header, _, data = url[5:].partition(",")
    media, *params = header.split(";")
    fmt = _IMAGE_FORMATS.get(media.lower())
    if fmt is None or "base64" not in params:
        raise unsupported(f"An image of type {media!r}", param)
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("The image data is not valid base64.", param=param) from None
    return {"image": {"format": fmt, "source": {"bytes": data}}}


def _text(text: str) -> dict[str, Any]:
    return {"text": text}


def _blocks(content: Any, param: str) -> list[dict[str, Any]]:
    return content_items(content, param, _text, {"image_url": _image})


def _tool_config(body: Mapping[str, Any]) -> dict[str, Any] | None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    specs = []
    for i, tool in enumerate(tools):
        spec, parameters = function_tool(tool, f"tools[{i}]")
        spec["inputSchema"] = {"json": parameters or {"type": "object", "properties": {}}}
        specs.append({"toolSpec": spec})
    out: dict[str, Any] = {"tools": specs}
    if choice == "required":
        out["toolChoice"] = {"any": {}}
    elif choice == "auto":
        out["toolChoice"] = {"auto": {}}
    elif isinstance(choice, Mapping) and choice.get("type") == "function":
        out["toolChoice"] = {"tool": {"name": (choice.get("function") or {}).get("name")}}
    elif choice is not None:
        raise unsupported(f"tool_choice {choice!r}", "tool_choice")
    return out


def openai_request_to_bedrock(body: dict[str, Any]) -> dict[str, Any]:
    """A chat-completions request -> a Converse body (the model id goes in the URL)."""
    refuse_n(body)
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for param, role, msg in chat_messages(require_messages(body)):
        if role == "tool":
            content = tool_text(msg.get("content"))
            result = {"toolUseId": msg.get("tool_call_id"), "content": [{"text": content or ""}]}
            merge_turn(messages, "user", [{"toolResult": result}])
            continue
        blocks = _blocks(msg.get("content"), f"{param}.content")
        if role == "system":
            system.extend(system_items(blocks, f"{param}.content"))
            continue
        if role == "assistant":
            for call_id, name, args in tool_calls(msg):
                blocks.append({"toolUse": {"toolUseId": call_id, "name": name, "input": args}})
        merge_turn(messages, role, blocks)
    out: dict[str, Any] = {"messages": messages}
    if system:
        out["system"] = system
    inference: dict[str, Any] = {}
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None:
        inference["maxTokens"] = limit
    for src, dst in (("temperature", "temperature"), ("top_p", "topP")):
        if body.get(src) is not None:
            inference[dst] = body[src]
    stop = stop_sequences(body.get("stop"))
    if stop:
        inference["stopSequences"] = stop
    if inference:
        out["inferenceConfig"] = inference
    tools = _tool_config(body)
    if tools is not None:
        out["toolConfig"] = tools
    return out


# ------------------------------------------------------------------ response


def bedrock_response_to_openai(
    body: Mapping[str, Any], model: str, *, created: int | None = None
) -> dict[str, Any]:
    """A Converse answer -> a ``chat.completion``."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in ((body.get("output") or {}).get("message") or {}).get("content") or ():
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), Mapping):
            use = block["toolUse"]
            calls.append(openai_tool_call(use.get("toolUseId"), use.get("name"), use.get("input")))
    finish = stop_reason_to_openai(body.get("stopReason")) or "stop"
    return chat_completion(
        new_completion_id(),
        model,
        single_choice(assistant_message(texts, calls), finish),
        usage_to_openai(body.get("usage") or {}),
        created,
    )


def error_name(header: str | None, body: Any) -> str:
    """The exception name: ``x-amzn-ErrorType`` (``ThrottlingException:http://...``) or ``__type``."""
    raw = header or (body.get("__type") if isinstance(body, Mapping) else None) or ""
    return str(raw).split(":", 1)[0].rsplit("#", 1)[-1]


def error_object(name: str, message: str | None, status: int) -> dict[str, Any]:
    """One Bedrock exception -> OpenAI ``{"message", "type", "param", "code"}``."""
    name = name[:1].upper() + name[1:]  # event-stream exception types are camelCase
    _, kind, code = ERRORS.get(
        name, (status, "api_error" if status >= 500 else "invalid_request_error", None)
    )
    text = message or f"Upstream error ({name or status})."
    if name == "ValidationException" and any(m in text.lower() for m in _CONTEXT_MARKERS):
        code = "context_length_exceeded"
    return {"message": text, "type": kind, "param": None, "code": code}


def bedrock_error_to_openai(body: Any, status: int, header: str | None = None) -> dict[str, Any]:
    message = None
    if isinstance(body, Mapping):
        message = body.get("message") or body.get("Message")
    return {
        "error": error_object(error_name(header, body), message if isinstance(message, str) else None, status)
    }


# ------------------------------------------------------------------ stream


class BedrockStreamDecoder:
    """ConverseStream events (``:event-type`` + JSON payload) -> neutral events for choice 0."""

    __slots__ = ("_calls", "done", "message_id", "model")

    def __init__(self, model: str) -> None:
        self.model = model
        self.message_id = new_completion_id()
        self.done = False
        self._calls: dict[int, int] = {}  # content block index -> tool call index

    def openai_chunk_template(self, created: int | None = None) -> dict[str, Any]:
        return {
            "id": self.message_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()) if created is None else created,
            "model": self.model,
        }

    def decode(self, kind: str, payload: Mapping[str, Any]) -> list[StreamEvent]:
        if kind == "messageStart":
            return [TextDelta(0, "", {"delta": {"role": "assistant"}})]
        if kind == "contentBlockStart":
            use = (payload.get("start") or {}).get("toolUse")
            if isinstance(use, Mapping):
                call = self._calls[int_or_zero(payload.get("contentBlockIndex"))] = len(self._calls)
                return [ToolCallDelta(0, call, "", use.get("toolUseId"), use.get("name"))]
            return []
        if kind == "contentBlockDelta":
            delta = payload.get("delta") or {}
            if isinstance(delta.get("text"), str) and delta["text"]:
                return [TextDelta(0, delta["text"])]
            use = delta.get("toolUse")
            found = self._calls.get(int_or_zero(payload.get("contentBlockIndex")))
            if isinstance(use, Mapping) and found is not None and use.get("input"):
                return [ToolCallDelta(0, found, str(use["input"]))]
            return []
        if kind == "messageStop":
            self.done = True
            return [Finish(0, stop_reason_to_openai(payload.get("stopReason")) or "stop")]
        if kind == "metadata" and isinstance(payload.get("usage"), Mapping):
            return [Usage(usage_to_openai(payload["usage"]))]
        return []

    def exception(self, name: str, payload: Mapping[str, Any]) -> list[StreamEvent]:
        """An in-band exception message (``:message-type: exception``) ends the stream."""
        self.done = True
        message = payload.get("message") or payload.get("Message")
        return [ErrorEvent(error_object(name, message if isinstance(message, str) else None, 502))]
