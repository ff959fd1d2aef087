"""OpenAI chat completions <-> Gemini ``generateContent`` (AI Studio and Vertex AI alike).

The chain speaks OpenAI chat completions; a Gemini upstream needs the request translated on the
way out and the answer, its SSE stream and its error envelope on the way back. Both Google
endpoints (the Generative Language API and Vertex AI) take the same body, so one translation
serves ``provider: gemini`` and ``provider: vertex``. All functions are pure.

Mapping: ``system``/``developer`` messages -> ``systemInstruction``; ``assistant`` -> role
``model``; ``tool`` messages -> ``functionResponse`` parts in a user turn (Gemini wants the
function *name*, so it is looked up from the assistant call with that id); images -> inline
data (``data:`` URLs) or ``fileData`` (other URLs: Gemini fetches ``gs://`` and, on AI Studio,
uploaded-file URIs only). ``temperature``, ``top_p``, ``max_tokens`` /
``max_completion_tokens``, ``stop``, ``n``, ``presence_penalty``, ``frequency_penalty``,
``seed`` go to ``generationConfig``; ``response_format`` ``json_object`` -> JSON MIME type and
``json_schema`` -> ``responseJsonSchema`` (the JSON-Schema field; the older ``responseSchema``
takes only an OpenAPI subset).

Dropped: ``logit_bias``, ``logprobs``, ``user``, ``store``, ``metadata``, ``service_tier``,
``stream_options`` (Gemini always reports usage), ``parallel_tool_calls`` (Gemini decides),
``strict`` on tools, image ``detail``. Refused (it would change what the model sees):
audio parts, non-function tools, unknown roles.

Gemini function calls carry no id: the answer gets ``call_<random>`` ids, and a later turn maps
them back through the assistant message that holds them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from proxy.errors import InvalidRequest
from proxy.upstream.providers.common import (
    assistant_message,
    chat_completion,
    chat_messages,
    content_items,
    function_tool,
    image_source,
    int_or_zero,
    merge_turn,
    new_completion_id,
    openai_tool_call,
    require_messages,
    stop_sequences,
    system_items,
    tool_calls,
    tool_text,
    unsupported,
)

__all__ = [
    "finish_reason_to_openai",
    "gemini_error_to_openai",
    "gemini_response_to_openai",
    "openai_request_to_gemini",
    "usage_to_openai",
]

#: Every block reason (safety, blocklist, prohibited content, SPII, recitation...) is a filter.
_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "LANGUAGE": "content_filter",
}

#: Google RPC status -> (OpenAI error type, code).
_STATUS = {
    "INVALID_ARGUMENT": ("invalid_request_error", None),
    "FAILED_PRECONDITION": ("invalid_request_error", None),
    "OUT_OF_RANGE": ("invalid_request_error", None),
    "UNAUTHENTICATED": ("authentication_error", "invalid_api_key"),
    "PERMISSION_DENIED": ("permission_error", None),
    "NOT_FOUND": ("not_found_error", "model_not_found"),
    "RESOURCE_EXHAUSTED": ("rate_limit_error", "rate_limit_exceeded"),
    "UNAVAILABLE": ("api_error", "service_unavailable"),
    "INTERNAL": ("api_error", "server_error"),
    "DEADLINE_EXCEEDED": ("timeout_error", "timeout"),
}
#: How Gemini words an over-long prompt ("The input token count (N) exceeds the maximum number
#: of tokens allowed (M)"); mapped to OpenAI's code so fallback's ``context_length`` class fires.
_CONTEXT_MARKERS = ("exceeds the maximum number of tokens", "input token count", "too many tokens")


def finish_reason_to_openai(reason: str | None) -> str | None:
    """Gemini ``finishReason`` -> OpenAI ``finish_reason``; unknown reasons end as ``stop``."""
    if reason is None or reason == "FINISH_REASON_UNSPECIFIED":
        return None
    return _FINISH.get(reason, "stop")


def usage_to_openai(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``usageMetadata`` -> OpenAI usage. Thinking tokens are billed as output, so they count
    as completion tokens (as OpenAI's reasoning tokens do)."""
    prompt = int_or_zero(meta.get("promptTokenCount"))
    thoughts = int_or_zero(meta.get("thoughtsTokenCount"))
    completion = int_or_zero(meta.get("candidatesTokenCount")) + thoughts
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int_or_zero(meta.get("totalTokenCount")) or prompt + completion,
    }
    cached = int_or_zero(meta.get("cachedContentTokenCount"))
    if cached:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    if thoughts:
        out["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return out


# ------------------------------------------------------------------ request


def _image_part(part: Mapping[str, Any], param: str) -> dict[str, Any]:
    url, inline = image_source(part, param)
    if inline is not None:
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    mime = "image/png" if url.lower().endswith(".png") else "image/jpeg"
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _file_part(part: Mapping[str, Any], param: str) -> dict[str, Any]:
    data = (part.get("file") or {}).get("file_data")
    if not isinstance(data, str) or not data.startswith("data:"):
        raise unsupported("A file part other than inline data", param)
    return _image_part({"image_url": {"url": data}}, param)


def _text(text: str) -> dict[str, Any]:
    return {"text": text}


def _parts(content: Any, param: str) -> list[dict[str, Any]]:
    return content_items(content, param, _text, {"image_url": _image_part, "file": _file_part})


def _tool_response(content: Any, param: str) -> dict[str, Any]:
    """A tool message's content -> ``functionResponse.response`` (an object): JSON objects pass
    as they are, anything else is wrapped as ``{"content": ...}`` as Google's samples do."""
    content = tool_text(content)
    if not isinstance(content, str):
        raise InvalidRequest("A tool message's content must be text.", param=param)
    try:
        parsed = orjson.loads(content)
    except orjson.JSONDecodeError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"content": content}


def _append(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    """Gemini wants alternating turns: consecutive same-role messages are merged."""
    merge_turn(contents, role, parts, key="parts")


def _tools(tools: Any, choice: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if tools:
        decls = []
        for i, tool in enumerate(tools):
            decl, parameters = function_tool(tool, f"tools[{i}]")
            if parameters:
                decl["parametersJsonSchema"] = parameters
            decls.append(decl)
        out["tools"] = [{"functionDeclarations": decls}]
    if choice is None:
        return out
    if choice in ("auto", "required", "none"):
        mode: dict[str, Any] = {"mode": {"auto": "AUTO", "required": "ANY", "none": "NONE"}[choice]}
    elif isinstance(choice, Mapping) and choice.get("type") == "function":
        mode = {"mode": "ANY", "allowedFunctionNames": [(choice.get("function") or {}).get("name")]}
    else:
        raise unsupported(f"tool_choice {choice!r}", "tool_choice")
    out["toolConfig"] = {"functionCallingConfig": mode}
    return out


def _generation_config(body: Mapping[str, Any]) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    for src, dst in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("seed", "seed"),
        ("n", "candidateCount"),
    ):
        if body.get(src) is not None:
            cfg[dst] = body[src]
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None:
        cfg["maxOutputTokens"] = limit
    stop = stop_sequences(body.get("stop"))
    if stop:
        cfg["stopSequences"] = stop
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, Mapping) else None
    if kind == "json_object":
        cfg["responseMimeType"] = "application/json"
    elif kind == "json_schema" and isinstance(fmt, Mapping):
        schema = (fmt.get("json_schema") or {}).get("schema")
        cfg["responseMimeType"] = "application/json"
        if isinstance(schema, Mapping):
            cfg["responseJsonSchema"] = schema
    elif kind not in (None, "text"):
        raise unsupported(f"response_format {kind!r}", "response_format")
    return cfg


def openai_request_to_gemini(body: dict[str, Any]) -> dict[str, Any]:
    """A chat-completions request -> a ``generateContent`` body (the model goes in the URL)."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for param, role, msg in chat_messages(require_messages(body)):
        if role == "system":
            system.extend(system_items(_parts(msg.get("content"), f"{param}.content"), f"{param}.content"))
        elif role == "user":
            _append(contents, "user", _parts(msg.get("content"), f"{param}.content"))
        elif role == "assistant":
            parts = _parts(msg.get("content"), f"{param}.content")
            for call_id, name, args in tool_calls(msg):
                call_names[str(call_id)] = str(name)
                parts.append({"functionCall": {"name": name, "args": args}})
            _append(contents, "model", parts)
        else:  # tool
            name = call_names.get(str(msg.get("tool_call_id")))
            if name is None:
                raise InvalidRequest(
                    "A tool message must answer a tool call of an earlier assistant message.",
                    param=f"{param}.tool_call_id",
                )
            response = _tool_response(msg.get("content"), f"{param}.content")
            _append(contents, "user", [{"functionResponse": {"name": name, "response": response}}])
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    out.update(_tools(body.get("tools"), body.get("tool_choice")))
    cfg = _generation_config(body)
    if cfg:
        out["generationConfig"] = cfg
    return out


# ------------------------------------------------------------------ response


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _message(candidate: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in (candidate.get("content") or {}).get("parts") or ():
        if part.get("thought"):
            continue  # thought summaries are not the answer
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif isinstance(part.get("functionCall"), Mapping):
            call = part["functionCall"]
            call_id = call.get("id") or new_call_id()
            calls.append(openai_tool_call(call_id, call.get("name"), call.get("args")))
    return assistant_message(texts, calls), bool(calls)


def gemini_response_to_openai(
    body: Mapping[str, Any], model: str, *, created: int | None = None
) -> dict[str, Any]:
    """A ``GenerateContentResponse`` -> a ``chat.completion``.

    A prompt blocked before generation (``promptFeedback.blockReason``, no candidates) becomes
    one empty choice with ``finish_reason: content_filter``, as Azure reports a filtered prompt.
    Function calls finish as ``tool_calls`` (Gemini says ``STOP``).
    """
    choices = []
    for i, cand in enumerate(body.get("candidates") or ()):
        message, has_calls = _message(cand)
        finish = finish_reason_to_openai(cand.get("finishReason")) or "stop"
        if has_calls and finish == "stop":
            finish = "tool_calls"
        choices.append(
            {"index": cand.get("index", i), "message": message, "finish_reason": finish, "logprobs": None}
        )
    if not choices:
        blocked = (body.get("promptFeedback") or {}).get("blockReason")
        choices.append(
            {
                "index": 0,
                "message": {"role": "assistant", "content": "", "refusal": None},
                "finish_reason": "content_filter" if blocked else "stop",
                "logprobs": None,
            }
        )
    return chat_completion(
        body.get("responseId") or new_completion_id(),
        body.get("modelVersion") or model,
        choices,
        usage_to_openai(body.get("usageMetadata") or {}),
        created,
    )


def gemini_error_to_openai(body: Any, status: int) -> dict[str, Any]:
    """``{"error": {"code", "message", "status"}}`` (also Vertex's one-element list form) ->
    ``{"error": {"message", "type", "param", "code"}}`` for the same HTTP status."""
    if isinstance(body, list) and body:
        body = body[0]
    err = body.get("error") if isinstance(body, Mapping) else None
    err = err if isinstance(err, Mapping) else {}
    raw = err.get("message")
    message = raw if isinstance(raw, str) else f"Upstream error ({status})."
    rpc = err.get("status")
    kind, code = _STATUS.get(str(rpc), ("api_error" if status >= 500 else "invalid_request_error", None))
    if status == 400 and any(m in message.lower() for m in _CONTEXT_MARKERS):
        code = "context_length_exceeded"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}
