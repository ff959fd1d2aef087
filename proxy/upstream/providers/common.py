"""The OpenAI side of every provider translation (Anthropic, Gemini, Bedrock), written once.

Each provider module maps OpenAI chat completions to its own wire format and back. The OpenAI
half of that work is the same for all of them: walking a message's content parts, reading a
function tool, parsing tool-call arguments, merging consecutive turns of one role (all three
APIs want alternating roles), and building the ``chat.completion`` that comes back. Keeping it
here means a fix to how OpenAI input is read (or refused) lands for every provider at once;
the provider modules keep only what differs (block shapes, field names, stop reasons).

All functions are pure.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson

from proxy.errors import InvalidRequest

__all__ = [
    "PartHandler",
    "arguments_to_object",
    "assistant_message",
    "chat_completion",
    "chat_messages",
    "content_items",
    "data_url",
    "dumps_json",
    "function_tool",
    "image_source",
    "image_url",
    "int_or_zero",
    "merge_turn",
    "new_completion_id",
    "openai_tool_call",
    "refuse_n",
    "require_messages",
    "single_choice",
    "stop_sequences",
    "system_items",
    "tool_calls",
    "tool_text",
    "unsupported",
    "usage_with_cache",
]

#: Turns one OpenAI content part (of the type it is registered for) into a provider item.
PartHandler = Callable[[Mapping[str, Any], str], dict[str, Any]]


def unsupported(what: str, param: str) -> InvalidRequest:
    """The 400 for input a provider cannot express: refused rather than silently dropped,
    since dropping it would change what the model sees."""
    return InvalidRequest(
        f"{what} cannot be translated for this provider.", code="unsupported_content", param=param
    )


def int_or_zero(value: Any) -> int:
    """A token count from an upstream body; anything not a real int (bool included) is 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def dumps_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


# ------------------------------------------------------------------ OpenAI request, read


def refuse_n(body: Mapping[str, Any]) -> None:
    """Providers with one candidate per call refuse ``n > 1`` (answering once would be a lie)."""
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        raise InvalidRequest(
            "n > 1 is not supported by this provider.", code="unsupported_parameter", param="n"
        )


def require_messages(body: Mapping[str, Any]) -> list[Any]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequest("messages must be a list.", param="messages")
    return messages


_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


def chat_messages(messages: list[Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """``(param, role, message)`` for each message, in order; ``developer`` reads as ``system``.

    An unknown role (or a message that is no object) is refused when the walk reaches it.
    """
    for i, msg in enumerate(messages):
        param = f"messages[{i}]"
        role = msg.get("role") if isinstance(msg, Mapping) else None
        if role not in _ROLES:
            raise unsupported(f"Message role {role!r}", f"{param}.role")
        yield param, "system" if role == "developer" else str(role), msg


def tool_calls(msg: Mapping[str, Any]) -> Iterator[tuple[Any, Any, dict[str, Any]]]:
    """``(id, name, arguments as an object)`` for each tool call of an assistant message."""
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        yield call.get("id"), fn.get("name"), arguments_to_object(fn.get("arguments"))


def system_items(
    items: list[dict[str, Any]],
    param: str,
    is_text: Callable[[dict[str, Any]], bool] = lambda item: "text" in item,
) -> list[dict[str, Any]]:
    """A system message's items, which must all be text: no provider takes images there."""
    if not all(is_text(item) for item in items):
        raise unsupported("A non-text system message part", param)
    return items


def content_items(
    content: Any,
    param: str,
    text: Callable[[str], dict[str, Any]],
    parts: Mapping[str, PartHandler],
) -> list[dict[str, Any]]:
    """OpenAI message content (a string or parts) -> provider items.

    Text and refusal parts go through ``text``; other part types through their handler in
    ``parts``; a type without a handler is refused. Empty text is skipped: Anthropic rejects
    empty text blocks and the others gain nothing from them.
    """
    if content is None:
        return []
    if isinstance(content, str):
        return [text(content)] if content else []
    if not isinstance(content, list):
        raise InvalidRequest("Message content must be a string or a list of parts.", param=param)
    items: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        where = f"{param}[{i}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in ("text", "refusal"):
            value = part.get(kind)
            if isinstance(value, str) and value:
                items.append(text(value))
        elif isinstance(kind, str) and kind in parts:
            items.append(parts[kind](part, where))
        else:
            raise unsupported(f"Content part type {kind!r}", where)
    return items


def image_url(part: Mapping[str, Any], param: str) -> str:
    """The URL of an ``image_url`` part (object or bare-string form); a part without one is refused."""
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str) or not url:
        raise unsupported("An image part without a URL", param)
    return url


def image_source(part: Mapping[str, Any], param: str) -> tuple[str, tuple[str, str] | None]:
    """An ``image_url`` part -> (its URL, (media type, base64 data) when inline).

    A ``data:`` URL that is not base64 is refused: providers take inline images as base64 only.
    """
    url = image_url(part, param)
    if not url.startswith("data:"):
        return url, None
    inline = data_url(url)
    if inline is None:
        raise unsupported("A non-base64 data URL", param)
    return url, inline


def data_url(url: str) -> tuple[str, str] | None:
    """``data:<media>;base64,<data>`` -> (media, data); None if not a base64 data URL."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    media, *params = header.split(";")
    return (media, data) if sep and "base64" in params else None


def arguments_to_object(arguments: Any) -> dict[str, Any]:
    """OpenAI tool-call ``arguments`` (a JSON string) -> the object providers want.

    Models do emit broken JSON now and then, and that call may be echoed back in history or be
    the response itself: failing the whole exchange would be worse than passing the raw text on
    under ``_raw_arguments``, where the tool's own validation will reject it visibly.
    """
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"_raw_arguments": arguments}
    return parsed if isinstance(parsed, dict) else {"_raw_arguments": arguments}


def tool_text(content: Any) -> Any:
    """A tool message's content as text: a list of parts is joined (tool results are text)."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return content


def function_tool(tool: Any, param: str) -> tuple[dict[str, Any], Any]:
    """An OpenAI function tool -> (``{"name"[, "description"]}``, its ``parameters`` or None).

    Other tool types are refused: no provider here would run them.
    """
    if not isinstance(tool, Mapping) or tool.get("type", "function") != "function":
        raise unsupported("A non-function tool", param)
    fn = tool.get("function") or {}
    out: dict[str, Any] = {"name": fn.get("name")}
    if fn.get("description"):
        out["description"] = fn["description"]
    return out, fn.get("parameters")


def stop_sequences(stop: Any) -> list[Any] | None:
    """OpenAI ``stop`` (a string or a list) -> a list, None when unset or empty."""
    if not stop:
        return None
    return [stop] if isinstance(stop, str) else list(stop)


def merge_turn(
    turns: list[dict[str, Any]],
    role: str,
    items: list[dict[str, Any]],
    *,
    key: str = "content",
    skip_empty: bool = True,
) -> None:
    """Append a turn, merging into the previous one of the same role: the providers require
    alternating roles, and OpenAI's consecutive ``tool`` messages all become one user turn."""
    if skip_empty and not items:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1][key].extend(items)
    else:
        turns.append({"role": role, key: items})


# ------------------------------------------------------------------ OpenAI response, written


def usage_with_cache(prompt: int, completion: int, cache_read: int, cache_write: int) -> dict[str, Any]:
    """Provider usage whose input count excludes cache reads and writes -> OpenAI usage.

    OpenAI's ``prompt_tokens`` includes cached tokens, so the three are summed: budgets and
    metrics that read ``prompt_tokens`` then see every prompt token the request consumed.
    """
    prompt += cache_read + cache_write
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cache_read:
        out["prompt_tokens_details"] = {"cached_tokens": cache_read}
    return out


def openai_tool_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    """One OpenAI ``tool_calls`` entry; ``arguments`` (an object) is serialised as OpenAI does."""
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": dumps_json(arguments or {})},
    }


def assistant_message(texts: list[str], calls: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer's message: ``content`` is None when the turn is only tool calls, as OpenAI does."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    return message


def chat_completion(
    ident: Any, model: Any, choices: list[dict[str, Any]], usage: dict[str, Any], created: int | None
) -> dict[str, Any]:
    """A ``chat.completion`` envelope; ``created`` defaults to now (providers send no timestamp)."""
    return {
        "id": ident,
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": choices,
        "usage": usage,
    }


def single_choice(message: dict[str, Any], finish: str) -> list[dict[str, Any]]:
    return [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}]
