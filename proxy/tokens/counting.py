"""Estimate prompt and completion tokens of OpenAI-style request bodies, offline and fast.

Why estimates: the authoritative count is the ``usage`` the provider returns *after* the call. A
rate/cost budget has to decide *before* forwarding, so it needs a cheap, conservative guess;
reconcile with ``usage`` afterwards.

Chat messages follow OpenAI's cookbook ("How to count tokens with tiktoken"), which the cookbook
checks against the API for gpt-3.5/gpt-4/gpt-4o: 3 tokens per message, +1 per ``name``, every
string field's tokens, and 3 tokens priming the reply. Beyond the cookbook, and approximate:

* ``tools`` / ``functions`` / structured-output schemas are serialised as compact JSON and
  counted, plus :data:`SCHEMA_OVERHEAD` per request for the wrapper OpenAI renders around them.
  OpenAI actually renders tools as TypeScript-like declarations, which are terser than JSON, so
  this errs high (on the cookbook's weather-tool example: ~89 tokens vs the 68-71 the API
  reports); deeply nested schemas err higher still. Erring high is the safe side for a budget.
* assistant ``tool_calls`` / ``function_call``: name + arguments + :data:`TOOL_CALL_OVERHEAD`.
* images: see :mod:`proxy.tokens.images` (unknown sizes are assumed 1024x1024).
* audio, files and reasoning items are not counted (their cost is not derivable from the body).

Text is counted as ``encode_ordinary`` encodes it (by :mod:`proxy.tokens.fast_count`, which gives
the same count for less CPU): user text containing ``<|endoftext|>`` is plain text to
the API, and counting must never raise on client input. Malformed shapes are skipped, not
rejected: validating the request is the upstream's job.

Bounded work on huge texts: BPE costs ~0.13 µs per character of prose and up to ~0.5 µs on
adversarial text (one character repeated), so an 8 MB prompt would cost seconds of CPU. Only the
first :data:`EXACT_CHARS` characters of a text are encoded; the rest is counted as its UTF-8 byte
length. That is an upper bound, not a guess: every token of a byte-level BPE covers at least one
byte, so the tail can never hold more tokens than bytes (the cut itself may shift one token, hence
``+1``). It over-counts only that tail (about 4x for English prose), only for texts far beyond any
context window (a million characters is ~250k tokens), and the budget corrects every reservation to
the provider's reported usage after the call. Callers that may see big texts count them off the
event loop (the ``budget`` plugin uses ``Deps.run_cpu``; past ``fast_count.FAST_MAX_CHARS`` tiktoken
encodes, releasing the GIL; below it the compiled counter holds it for at most ~0.5 ms).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, TypeGuard

import tiktoken

from proxy.tokens.encodings import encoding_for_model, get_encoding
from proxy.tokens.fast_count import count_tokens, piece_counter
from proxy.tokens.images import image_url_tokens

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3
SCHEMA_OVERHEAD = 12
"""Per-request tokens for the tool/schema wrapper; the cookbook measures it as 12 ("func_end")."""
TOOL_CALL_OVERHEAD = 3
DEFAULT_COMPLETION_RESERVE = 4096
EXACT_CHARS = 1_000_000
"""Characters of one text encoded exactly; the rest is bounded by its UTF-8 length (module doc)."""
SHORT_CHARS = 64
"""Texts this short skip the memo when the compiled counter is built: counting them costs less
than hashing the text and taking the memo's lock."""
CACHE_MAX_CHARS = 16_384
"""Longer texts are not memoised: the cache must not pin megabytes of client text per entry."""

_TEXT_PART_KEYS = {"text": "text", "input_text": "text", "output_text": "text", "refusal": "refusal"}
# Message fields whose value is not prompt text (or is counted separately below).
_NON_TEXT_FIELDS = frozenset({"content", "tool_calls", "function_call", "audio", "type", "id", "status"})


def count_text(text: str, model: str) -> int:
    """Tokens of ``text`` in ``model``'s encoding (an estimate for non-OpenAI models; an upper
    bound past ``EXACT_CHARS``)."""
    return _count(encoding_for_model(model), text)


_CACHE_ENTRIES = 4096
_counts: OrderedDict[tuple[str, int, int], int] = OrderedDict()
_counts_lock = threading.Lock()


def _cached_count(text: str, encoding: str) -> int:
    """Cached: clients resend the same system prompt and history on every turn of a chat.

    Keyed by (encoding, length, ``hash``) of the text, not the text: the ``lru_cache`` on the
    text this replaced pinned up to 4,096 texts of up to 16 KB (~64 MB of client text: issue
    17's RSS growth). ``str`` hashes are SipHash with a per-process random key (clients cannot
    aim a collision) and cached on the string object; an accidental 64-bit collision among
    4,096 entries would only misestimate one reservation, which the budget corrects to the
    provider's reported usage after the call. Least recently used entries go first."""
    key = (encoding, len(text), hash(text))
    with _counts_lock:
        found = _counts.get(key)
        if found is not None:
            _counts.move_to_end(key)
            return found
    count = count_tokens(get_encoding(encoding), text)  # outside the lock: it may take ms
    with _counts_lock:
        _counts[key] = count
        if len(_counts) > _CACHE_ENTRIES:
            _counts.popitem(last=False)
    return count


def count_chat_request(body: Mapping[str, Any], model: str | None = None) -> int:
    """Estimated prompt tokens of a chat completions or Responses API request body.

    ``model`` defaults to ``body["model"]``; pass the routed model when a policy rewrites it.
    A body with ``messages`` is read as chat completions, otherwise as a Responses body
    (``input`` + ``instructions``).
    """
    enc = encoding_for_model(model if model is not None else str(body.get("model") or ""))
    total = REPLY_PRIMING_TOKENS
    messages = body.get("messages")
    if isinstance(messages, list):
        total += sum(_message_tokens(enc, m) for m in messages if isinstance(m, Mapping))
    else:
        total += _responses_input_tokens(enc, body)
    total += _schema_tokens(enc, body)
    return total


def count_embedding_inputs(inputs: object, model: str) -> int:
    """Tokens of an embeddings ``input``: a string or a list of strings (token-id lists: 0)."""
    if isinstance(inputs, str):
        return count_text(inputs, model)
    if not isinstance(inputs, list):
        return 0
    enc = encoding_for_model(model)
    return sum(_count(enc, t) for t in inputs if isinstance(t, str))


def body_chars(body: object) -> int:
    """Characters in every string of ``body`` (iterative: client JSON may nest deeply).

    For deciding whether counting is worth moving off the event loop when the raw bytes are not
    at hand (a translated Anthropic request); an approximation of the work, not of tokens.
    """
    total = 0
    stack = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            total += len(node)
        elif isinstance(node, Mapping):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return total


def count_completion_reserve(body: Mapping[str, Any], default: int = DEFAULT_COMPLETION_RESERVE) -> int:
    """Output tokens to reserve for ``body``: its output cap (or ``default``) times ``n``.

    The first positive of ``max_completion_tokens`` (current chat), ``max_tokens`` (legacy chat)
    and ``max_output_tokens`` (Responses) wins. Reasoning models spend hidden reasoning tokens
    inside that cap, so the cap is the right upper bound for them too.
    """
    cap = default
    for key in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(key)
        if _is_positive_int(value):
            cap = value
            break
    n = body.get("n")
    return cap * (n if _is_positive_int(n) else 1)


def _is_positive_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _count(enc: tiktoken.Encoding, text: str) -> int:
    if not text:
        return 0
    if len(text) <= SHORT_CHARS:  # roles, names, short messages: one lookup per piece, no memo
        counter = piece_counter(enc)
        if counter is not None:
            return counter.count(text)
    if len(text) <= CACHE_MAX_CHARS:
        return _cached_count(text, enc.name)
    if len(text) <= EXACT_CHARS:
        return count_tokens(enc, text)
    tail = text[EXACT_CHARS:]
    tail_bytes = len(tail) if tail.isascii() else len(tail.encode("utf-8", "surrogatepass"))
    return len(enc.encode_ordinary(text[:EXACT_CHARS])) + tail_bytes + 1


def _message_tokens(enc: tiktoken.Encoding, message: Mapping[str, Any]) -> int:
    if type(message) is dict and len(message) == 2:
        # The usual message, {"role": ..., "content": "..."}: what the walk below counts for it
        # (the message overhead, the role, the content), without the walk (every budgeted request
        # counts its messages; issue 17).
        role, content = message.get("role"), message.get("content")
        if type(role) is str and type(content) is str:
            return TOKENS_PER_MESSAGE + _count(enc, role) + _count(enc, content)
    total = TOKENS_PER_MESSAGE + _content_tokens(enc, message.get("content"))
    for key, value in message.items():
        # The cookbook counts every string field (role, name, tool_call_id...), not only content.
        if key not in _NON_TEXT_FIELDS and isinstance(value, str):
            total += _count(enc, value)
            if key == "name":
                total += TOKENS_PER_NAME
    tool_calls = message.get("tool_calls")
    if isinstance(tool_calls, list):
        for call in tool_calls:
            if isinstance(call, Mapping):
                total += _call_tokens(enc, call.get("function"))
    function_call = message.get("function_call")
    if function_call is not None:
        total += _call_tokens(enc, function_call)
    return total


def _call_tokens(enc: tiktoken.Encoding, function: object) -> int:
    if not isinstance(function, Mapping):
        return 0
    total = TOOL_CALL_OVERHEAD
    for key in ("name", "arguments"):
        value = function.get(key)
        if isinstance(value, str):
            total += _count(enc, value)
    return total


def _content_tokens(enc: tiktoken.Encoding, content: object) -> int:
    if isinstance(content, str):
        return _count(enc, content)
    if not isinstance(content, list):
        return 0
    total = 0
    for part in content:
        if isinstance(part, str):
            total += _count(enc, part)
        elif isinstance(part, Mapping):
            total += _part_tokens(enc, part)
    return total


def _part_tokens(enc: tiktoken.Encoding, part: Mapping[str, Any]) -> int:
    kind = part.get("type")
    text_key = _TEXT_PART_KEYS.get(kind) if isinstance(kind, str) else None
    if text_key is not None:
        text = part.get(text_key)
        return _count(enc, text) if isinstance(text, str) else 0
    if kind == "image_url":  # chat: {"image_url": {"url": ..., "detail": ...}} or a bare URL string
        image = part.get("image_url")
        if isinstance(image, Mapping):
            return image_url_tokens(_str_or_none(image.get("url")), _str_or_none(image.get("detail")))
        return image_url_tokens(_str_or_none(image), "auto")
    if kind == "input_image":  # Responses: {"image_url": ..., "file_id": ..., "detail": ...}
        detail = _str_or_none(part.get("detail")) or "auto"
        return image_url_tokens(_str_or_none(part.get("image_url")), detail)
    return 0  # input_audio, file, input_file...: not derivable from the body


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _responses_input_tokens(enc: tiktoken.Encoding, body: Mapping[str, Any]) -> int:
    total = 0
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        total += TOKENS_PER_MESSAGE + _count(enc, "system") + _count(enc, instructions)
    items = body.get("input")
    if isinstance(items, str):
        return total + TOKENS_PER_MESSAGE + _count(enc, "user") + _count(enc, items)
    if not isinstance(items, list):
        return total
    for item in items:
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type")
        if "role" in item and kind in (None, "message"):
            total += _message_tokens(enc, item)
        elif kind == "function_call":
            total += _call_tokens(enc, item)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output")
            total += TOKENS_PER_MESSAGE + _content_tokens(enc, output)
        # reasoning, web_search_call, item_reference...: not derivable from the body
    return total


def _schema_tokens(enc: tiktoken.Encoding, body: Mapping[str, Any]) -> int:
    """Tools, legacy functions and structured-output schemas, as compact JSON plus one overhead."""
    schemas: list[object] = []
    for key in ("tools", "functions"):
        defs = body.get(key)
        if isinstance(defs, list):
            for tool in defs:
                # Chat nests the definition under "function"; Responses and legacy functions don't.
                inner = tool.get("function") if isinstance(tool, Mapping) else None
                schemas.append(inner if isinstance(inner, Mapping) else tool)
    response_format = body.get("response_format")  # chat
    if isinstance(response_format, Mapping) and "json_schema" in response_format:
        schemas.append(response_format["json_schema"])
    text = body.get("text")  # Responses: {"text": {"format": {"type": "json_schema", ...}}}
    text_format = text.get("format") if isinstance(text, Mapping) else None
    if isinstance(text_format, Mapping) and text_format.get("type") == "json_schema":
        schemas.append(text_format)
    if not schemas:
        return 0
    return SCHEMA_OVERHEAD + sum(_count(enc, _compact_json(s)) for s in schemas)


def _compact_json(value: object) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # e.g. circular references: count what we can say about it
        return str(value)
