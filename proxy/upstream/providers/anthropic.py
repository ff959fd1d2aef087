"""OpenAI chat completions <-> Anthropic Messages API: requests, responses, errors.

The proxy's neutral format is the OpenAI chat body, so an Anthropic upstream needs the request
translated on the way out and the response on the way back; a client speaking the Anthropic SDK
to the proxy needs the opposite pair. All functions here are pure and synchronous; the stream
codecs live in ``anthropic_stream``.

Bodies are rebuilt field by field rather than copied and pruned, so a field one side does not
know is dropped by construction instead of being forwarded to an API that would reject it.

OpenAI -> Anthropic drops: ``frequency_penalty``, ``presence_penalty``, ``logit_bias``,
``logprobs``, ``top_logprobs``, ``seed``, ``response_format``, ``stream_options`` (Anthropic
always streams usage), ``service_tier``, ``store``, ``metadata`` (OpenAI's stored-completion
tags, not Anthropic's), ``modalities``, ``audio``, ``prediction``, ``reasoning_effort``,
``verbosity``, ``web_search_options``, ``prompt_cache_key``, the legacy ``functions`` /
``function_call``, image ``detail``, message ``name``, and ``strict`` on tools.
``parallel_tool_calls: false`` becomes ``disable_parallel_tool_use``; ``temperature`` is
clamped to Anthropic's 0..1, and it and ``top_p`` are dropped with ``sampling=False`` (API
version 2026-10-21 rejects any sampling parameter; 2023-06-01 accepts them, though some models
refuse ``temperature`` together with ``top_p``); ``user`` (or ``safety_identifier``) becomes
``metadata.user_id``; ``system``/``developer`` messages anywhere in the conversation are
hoisted into ``system``.
What would change what the model *sees* is refused with ``InvalidRequest`` instead of being
dropped: ``n > 1``, audio or non-PDF file parts, non-function tools, unknown roles.

Anthropic -> OpenAI drops: ``top_k``, ``thinking``, ``cache_control`` everywhere,
``service_tier``, ``container``, ``mcp_servers``, ``context_management``, ``metadata`` other
than ``user_id``, ``is_error`` and ``citations`` on blocks, ``thinking`` /
``redacted_thinking`` blocks (an OpenAI model cannot continue Claude's signed reasoning), and
in responses ``stop_sequence`` and any block other than ``text`` / ``tool_use``. Server tools
and server-tool blocks are refused with ``InvalidRequest``: nothing upstream would run them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from proxy.errors import InvalidRequest
from proxy.upstream.providers.common import (
    arguments_to_object,
    assistant_message,
    chat_completion,
    chat_messages,
    content_items,
    data_url,
    function_tool,
    image_source,
    int_or_zero,
    merge_turn,
    openai_tool_call,
    refuse_n,
    require_messages,
    single_choice,
    system_items,
    tool_calls,
    unsupported,
    usage_with_cache,
)

__all__ = [
    "anthropic_error_to_openai",
    "anthropic_request_to_openai",
    "anthropic_response_to_openai",
    "error_object_to_anthropic",
    "error_object_to_openai",
    "finish_reason_to_anthropic",
    "openai_error_to_anthropic",
    "openai_request_to_anthropic",
    "openai_response_to_anthropic",
    "stop_reason_to_openai",
    "usage_to_anthropic",
    "usage_to_openai",
]

DEFAULT_MAX_TOKENS = 4096

# pause_turn (a server tool paused the turn) has no OpenAI twin: the turn did end.
_STOP_TO_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_FINISH_TO_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

_STATUS_TO_ERROR_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ANTHROPIC_ERROR_TYPES = frozenset(_STATUS_TO_ERROR_TYPE.values())
# OpenAI's own spellings of the same conditions (type or code), for in-band errors without a status.
_OPENAI_ERROR_ALIASES = {
    "server_error": "api_error",
    "rate_limit_exceeded": "rate_limit_error",
    "insufficient_quota": "rate_limit_error",
    "requests": "rate_limit_error",
    "tokens": "rate_limit_error",
    "invalid_api_key": "authentication_error",
}


# ------------------------------------------------------------------ shared mappings


def stop_reason_to_openai(reason: str | None) -> str | None:
    """Anthropic ``stop_reason`` -> OpenAI ``finish_reason`` (unknown reasons end as ``stop``)."""
    return None if reason is None else _STOP_TO_FINISH.get(reason, "stop")


def finish_reason_to_anthropic(reason: str | None) -> str | None:
    """OpenAI ``finish_reason`` -> Anthropic ``stop_reason`` (unknown reasons end as ``end_turn``)."""
    return None if reason is None else _FINISH_TO_STOP.get(reason, "end_turn")


def usage_to_openai(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Anthropic usage -> OpenAI usage.

    Anthropic's ``input_tokens`` excludes cache reads and cache writes while OpenAI's
    ``prompt_tokens`` includes cached tokens, so the three are summed: budgets and metrics that
    read ``prompt_tokens`` then see every prompt token the request consumed.
    """
    return usage_with_cache(
        int_or_zero(usage.get("input_tokens")),
        int_or_zero(usage.get("output_tokens")),
        int_or_zero(usage.get("cache_read_input_tokens")),
        int_or_zero(usage.get("cache_creation_input_tokens")),
    )


def usage_to_anthropic(usage: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI usage -> Anthropic usage: the inverse split (cached tokens leave ``input_tokens``).

    OpenAI caching has no write charge, so ``cache_creation_input_tokens`` is 0.
    """
    prompt = int_or_zero(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = min(int_or_zero(details.get("cached_tokens")) if isinstance(details, Mapping) else 0, prompt)
    return {
        "input_tokens": prompt - cached,
        "output_tokens": int_or_zero(usage.get("completion_tokens")),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


# ------------------------------------------------------------------ OpenAI -> Anthropic request


def _image_to_anthropic(part: Mapping[str, Any], param: str) -> dict[str, Any]:
    url, inline = image_source(part, param)
    if inline is not None:
        return {"type": "image", "source": {"type": "base64", "media_type": inline[0], "data": inline[1]}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _file_to_anthropic(part: Mapping[str, Any], param: str) -> dict[str, Any]:
    file = part.get("file")
    data = file.get("file_data") if isinstance(file, Mapping) else None
    parsed = data_url(data) if isinstance(data, str) else None
    if parsed is None or parsed[0] != "application/pdf":
        raise unsupported("A file part other than an inline PDF", param)
    return {"type": "document", "source": {"type": "base64", "media_type": parsed[0], "data": parsed[1]}}


def _text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _blocks_to_anthropic(content: Any, param: str) -> list[dict[str, Any]]:
    """OpenAI message content (string or parts) -> Anthropic blocks; empty text is skipped
    because Anthropic rejects empty text blocks."""
    return content_items(
        content, param, _text_block, {"image_url": _image_to_anthropic, "file": _file_to_anthropic}
    )


def _system_texts(content: Any, param: str) -> list[str]:
    blocks = system_items(_blocks_to_anthropic(content, param), param, lambda b: b["type"] == "text")
    return [b["text"] for b in blocks]


def _tool_to_anthropic(tool: Any, param: str) -> dict[str, Any]:
    out, parameters = function_tool(tool, param)
    out["input_schema"] = parameters or {"type": "object", "properties": {}}
    return out


def _tool_choice_to_anthropic(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice in ("auto", "required", "none"):
        return {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]}
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        return {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    raise unsupported(f"tool_choice {choice!r}", "tool_choice")


def _merge(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Even an empty user turn is kept (it becomes ``""``): the roles must still alternate."""
    merge_turn(messages, role, blocks, skip_empty=False)


def _tool_result(msg: Mapping[str, Any], param: str) -> dict[str, Any]:
    content = msg.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": msg.get("tool_call_id")}
    if isinstance(content, str):
        if content:
            block["content"] = content
    else:
        blocks = _blocks_to_anthropic(content, f"{param}.content")
        if blocks:
            block["content"] = blocks
    return block


def openai_request_to_anthropic(
    body: dict[str, Any],
    *,
    model: str | None = None,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
    sampling: bool = True,
) -> dict[str, Any]:
    """A chat-completions request -> a Messages API request (see the module docstring for drops).

    ``model`` overrides the body's model (a route mapping ``gpt-*`` aliases to Claude models);
    ``default_max_tokens`` is used when the client set no limit, because Anthropic requires one.
    ``sampling=False`` leaves out ``temperature`` / ``top_p`` for an upstream called with an
    ``anthropic-version`` that refuses them (2026-10-21 and later).
    """
    refuse_n(body)
    messages = require_messages(body)

    system: list[str] = []
    single_system_string = True
    out_messages: list[dict[str, Any]] = []
    for param, role, msg in chat_messages(messages):
        if role == "system":
            single_system_string = single_system_string and not system and isinstance(msg.get("content"), str)
            system.extend(_system_texts(msg.get("content"), f"{param}.content"))
        elif role == "user":
            _merge(out_messages, "user", _blocks_to_anthropic(msg.get("content"), f"{param}.content"))
        elif role == "assistant":
            blocks = _blocks_to_anthropic(msg.get("content"), f"{param}.content")
            for call_id, name, args in tool_calls(msg):
                blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": args})
            if blocks:  # an empty assistant turn says nothing, and Anthropic rejects it
                _merge(out_messages, "assistant", blocks)
        else:  # tool
            _merge(out_messages, "user", [_tool_result(msg, param)])
    for m in out_messages:
        # One plain text block is the same message as a string; the string form is smaller.
        if len(m["content"]) == 1 and m["content"][0].keys() == {"type", "text"}:
            m["content"] = m["content"][0]["text"]
        elif not m["content"]:
            m["content"] = ""

    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    out: dict[str, Any] = {
        "model": model or body.get("model"),
        "max_tokens": default_max_tokens if limit is None else limit,
        "messages": out_messages,
    }
    if system:
        out["system"] = (
            system[0]
            if single_system_string and len(system) == 1
            else [{"type": "text", "text": t} for t in system]
        )
    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = list(stop)
    temperature = body.get("temperature")
    if sampling and isinstance(temperature, int | float):
        out["temperature"] = min(temperature, 1)
    if sampling and body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    tools = body.get("tools")
    if tools:
        out["tools"] = [_tool_to_anthropic(t, f"tools[{i}]") for i, t in enumerate(tools)]
    choice = _tool_choice_to_anthropic(body.get("tool_choice"))
    if tools and body.get("parallel_tool_calls") is False and (choice is None or choice["type"] != "none"):
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    if choice is not None:
        out["tool_choice"] = choice
    if body.get("stream") is not None:
        out["stream"] = bool(body["stream"])
    return out


# ------------------------------------------------------------------ Anthropic -> OpenAI request


def _image_to_openai(block: Mapping[str, Any], param: str) -> dict[str, Any]:
    source = block.get("source") or {}
    url: Any
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url":
        url = source.get("url")
    else:
        raise unsupported(f"An image source of type {source.get('type')!r}", param)
    return {"type": "image_url", "image_url": {"url": url}}


def _document_to_openai(block: Mapping[str, Any], param: str) -> dict[str, Any]:
    source = block.get("source") or {}
    if source.get("type") != "base64" or source.get("media_type") != "application/pdf":
        raise unsupported("A document other than an inline PDF", param)
    file: dict[str, Any] = {"file_data": f"data:application/pdf;base64,{source.get('data')}"}
    if isinstance(block.get("title"), str):
        file["filename"] = block["title"]
    return {"type": "file", "file": file}


def _parts(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A lone text part becomes a plain string: the same message, and text-only backends take it."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        return str(parts[0]["text"])
    return parts


def _user_to_openai(content: Any, param: str) -> list[dict[str, Any]]:
    """One Anthropic user turn -> OpenAI messages: each ``tool_result`` becomes a ``tool``
    message (first, since they answer the preceding assistant turn), the rest one user message.

    OpenAI tool messages carry text only, so images inside a tool result move to that user
    message rather than being lost.
    """
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise InvalidRequest("Message content must be a string or a list of blocks.", param=param)
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        where = f"{param}[{i}]"
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image":
            parts.append(_image_to_openai(block, where))
        elif kind == "document":
            parts.append(_document_to_openai(block, where))
        elif kind == "tool_result":
            inner = block.get("content")
            texts: list[dict[str, Any]] = []
            if isinstance(inner, str):
                texts.append({"type": "text", "text": inner})
            for j, sub in enumerate(inner if isinstance(inner, list) else ()):
                if sub.get("type") == "text":
                    texts.append({"type": "text", "text": sub["text"]})
                elif sub.get("type") == "image":
                    parts.append(_image_to_openai(sub, f"{where}.content[{j}]"))
                else:
                    raise unsupported(f"Tool result block type {sub.get('type')!r}", f"{where}.content[{j}]")
            tool_content = _parts(texts) if texts else ""
            tools.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": tool_content})
        else:
            raise unsupported(f"Content block type {kind!r}", where)
    return tools + ([{"role": "user", "content": _parts(parts)}] if parts or not tools else [])


def _assistant_to_openai(content: Any, param: str) -> dict[str, Any] | None:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(content if isinstance(content, list) else ()):
        kind = block.get("type")
        if kind == "text":
            texts.append(block["text"])
        elif kind == "tool_use":
            calls.append(openai_tool_call(block.get("id"), block.get("name"), block.get("input")))
        elif kind not in ("thinking", "redacted_thinking"):
            raise unsupported(f"Content block type {kind!r}", f"{param}[{i}]")
    if not texts and not calls:
        return None
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        msg["tool_calls"] = calls
    return msg


def _tool_to_openai(tool: Any, param: str) -> dict[str, Any]:
    if not isinstance(tool, Mapping) or tool.get("type", "custom") != "custom":
        raise unsupported("A server tool", param)
    fn: dict[str, Any] = {"name": tool.get("name")}
    if tool.get("description"):
        fn["description"] = tool["description"]
    fn["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
    return {"type": "function", "function": fn}


def _tool_choice_to_openai(choice: Any) -> Any:
    kind = choice.get("type") if isinstance(choice, Mapping) else None
    if kind in ("auto", "any", "none"):
        return {"auto": "auto", "any": "required", "none": "none"}[kind]
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}
    raise unsupported(f"tool_choice {choice!r}", "tool_choice")


def anthropic_request_to_openai(body: dict[str, Any]) -> dict[str, Any]:
    """A Messages API request (a client on the Anthropic SDK) -> a chat-completions request.

    ``max_tokens`` becomes ``max_completion_tokens`` (``max_tokens`` is refused by OpenAI's
    reasoning models). A streamed request asks for ``include_usage``: the Anthropic stream the
    client expects ends with a usage-carrying ``message_delta``.
    """
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    elif isinstance(system, list):
        texts = [
            {"type": "text", "text": b["text"]} for b in system if b.get("type") == "text" and b.get("text")
        ]
        if texts:
            messages.append({"role": "system", "content": _parts(texts)})
    for i, msg in enumerate(require_messages(body)):
        param = f"messages[{i}]"
        role = msg.get("role") if isinstance(msg, Mapping) else None
        if role == "user":
            messages.extend(_user_to_openai(msg.get("content"), f"{param}.content"))
        elif role == "assistant":
            converted = _assistant_to_openai(msg.get("content"), f"{param}.content")
            if converted is not None:
                messages.append(converted)
        else:
            raise unsupported(f"Message role {role!r}", f"{param}.role")

    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if body.get("max_tokens") is not None:
        out["max_completion_tokens"] = body["max_tokens"]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    metadata = body.get("metadata")
    if isinstance(metadata, Mapping) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]
    tools = body.get("tools")
    if tools:
        out["tools"] = [_tool_to_openai(t, f"tools[{i}]") for i, t in enumerate(tools)]
    choice = body.get("tool_choice")
    if choice is not None:
        out["tool_choice"] = _tool_choice_to_openai(choice)
        # OpenAI refuses parallel_tool_calls without tools.
        if tools and choice.get("disable_parallel_tool_use"):
            out["parallel_tool_calls"] = False
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    elif body.get("stream") is not None:
        out["stream"] = False
    return out


# ------------------------------------------------------------------ responses


def anthropic_response_to_openai(body: dict[str, Any], *, created: int | None = None) -> dict[str, Any]:
    """A Messages API ``message`` -> a ``chat.completion``.

    Text blocks are joined into ``content`` (``None`` when the turn is only tool calls, as
    OpenAI does); ``created`` defaults to now, since Anthropic responses carry no timestamp.
    """
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in body.get("content") or ():
        if block.get("type") == "text":
            texts.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            calls.append(openai_tool_call(block.get("id"), block.get("name"), block.get("input")))
    finish = stop_reason_to_openai(body.get("stop_reason")) or "stop"
    return chat_completion(
        body.get("id"),
        body.get("model"),
        single_choice(assistant_message(texts, calls), finish),
        usage_to_openai(body.get("usage") or {}),
        created,
    )


def openai_response_to_anthropic(body: dict[str, Any]) -> dict[str, Any]:
    """A ``chat.completion`` -> a Messages API ``message`` (first choice only).

    A message ``refusal`` becomes text with ``stop_reason: refusal``, Anthropic's way of
    saying the same. The id keeps OpenAI's for tracing, prefixed ``msg_`` as Anthropic ids are.
    """
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    blocks = _blocks_to_anthropic(message.get("content"), "choices[0].message.content")
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        blocks.append({"type": "text", "text": refusal})
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": fn.get("name"),
                "input": arguments_to_object(fn.get("arguments")),
            }
        )
    stop = finish_reason_to_anthropic(choice.get("finish_reason"))
    if refusal and stop == "end_turn":
        stop = "refusal"
    ident = str(body.get("id") or uuid.uuid4().hex[:24])
    return {
        "id": ident if ident.startswith("msg_") else f"msg_{ident}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage_to_anthropic(body.get("usage") or {}),
    }


# ------------------------------------------------------------------ errors


def _anthropic_type(status: int | None, hint: Any) -> str:
    """The status decides when it is known (SDKs raise by status); else the error's own type.

    Any other 5xx is an ``api_error`` whatever its body says: a server failure must not read
    as the client's fault.
    """
    if status in _STATUS_TO_ERROR_TYPE:
        return _STATUS_TO_ERROR_TYPE[status]
    if status is not None and status >= 500:
        return "api_error"
    if isinstance(hint, str):
        if hint in _ANTHROPIC_ERROR_TYPES:
            return hint
        if hint in _OPENAI_ERROR_ALIASES:
            return _OPENAI_ERROR_ALIASES[hint]
    return "invalid_request_error" if status is not None else "api_error"


def error_object_to_openai(error: Any, status: int | None = None) -> dict[str, Any]:
    """Anthropic ``error`` object -> OpenAI ``{"message", "type", "param", "code"}``.

    The Anthropic type is kept as the OpenAI type: the sidecar's own envelopes already use
    these names (``invalid_request_error``, ``rate_limit_error``, ``api_error``).
    """
    err = error if isinstance(error, Mapping) else {}
    kind = err.get("type") if isinstance(err.get("type"), str) else _anthropic_type(status, None)
    message = err.get("message") if isinstance(err.get("message"), str) else None
    return {
        "message": message or f"Upstream error ({kind}).",
        "type": kind,
        "param": None,
        "code": None,
    }


def error_object_to_anthropic(error: Any, status: int | None = None) -> dict[str, Any]:
    """OpenAI ``error`` object -> Anthropic ``{"type", "message"}``."""
    err = error if isinstance(error, Mapping) else {}
    hint = (
        err.get("type") if err.get("type") in _ANTHROPIC_ERROR_TYPES else err.get("code") or err.get("type")
    )
    message = err.get("message") if isinstance(err.get("message"), str) else None
    kind = _anthropic_type(status, hint)
    return {"type": kind, "message": message or f"Upstream error ({kind})."}


def anthropic_error_to_openai(body: dict[str, Any], status: int) -> dict[str, Any]:
    """``{"type": "error", "error": {...}}`` -> ``{"error": {...}}`` for the same HTTP status."""
    return {"error": error_object_to_openai(body.get("error"), status)}


def openai_error_to_anthropic(body: dict[str, Any], status: int) -> dict[str, Any]:
    """``{"error": {...}}`` -> ``{"type": "error", "error": {"type", "message"}}``; the type follows
    the status (400 invalid_request_error ... 529 overloaded_error)."""
    return {"type": "error", "error": error_object_to_anthropic(body.get("error"), status)}
