"""Scenarios, recorded requests and shared state of the fake upstream.

Kept apart from the HTTP layer so tests and benchmarks can build and queue scenarios without
caring how they are served. A ``Scenario`` describes *one* upstream answer, fault included;
``FakeState`` is the FIFO of scripted answers plus the log of every request the fake saw, so a
test can assert on what the sidecar really sent upstream.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import struct
import threading
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Reply text when nothing is scripted; shows the round trip worked and what the model saw.
DEFAULT_REPLY = "Hello from the demo upstream. You said: {last_user}"

#: Models advertised by ``GET /v1/models``.
MODEL_IDS = ("demo-model", "gpt-4o-mini", "gpt-4.1-nano")

#: Dimensions of the fake embeddings: tiny on purpose, the values only need to be stable.
EMBEDDING_DIMS = 8


class ToolCallSpec(BaseModel):
    """One tool call the fake model "decides" to make; ``arguments`` is the raw JSON string."""

    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: str = "{}"


class Scenario(BaseModel):
    """How the fake answers one model request; every field is optional.

    Unknown fields are rejected (``extra="forbid"``) so a typo in a test script fails loudly
    instead of silently producing the default answer.
    """

    model_config = ConfigDict(extra="forbid")

    status: int | None = Field(default=None, ge=100, le=599)
    """>= 400: answer an OpenAI error envelope with this status. Lower: status of the success reply."""
    retry_after: float | None = Field(default=None, ge=0)
    """Seconds, sent as ``Retry-After``."""
    retry_after_ms: int | None = Field(default=None, ge=0)
    """Milliseconds, sent as ``retry-after-ms`` (the OpenAI SDK prefers it)."""
    content: str | None = None
    """Reply template: ``{last_user}`` and ``{model}`` are replaced (str.replace, braces are safe)."""
    tool_calls: list[ToolCallSpec] | None = None
    """Tool calls; without ``content`` the reply has no text, like a real tool-calling turn."""
    finish_reason: str | None = None
    delay: float = Field(default=0.0, ge=0)
    """Seconds before the response headers: a hanging or slow upstream."""
    first_token_delay: float = Field(default=0.0, ge=0)
    """Streaming: seconds between the headers and the first event."""
    chunk_size: int = Field(default=4, ge=1)
    """Characters of content (and of tool arguments) per streamed delta."""
    split_at: list[int] | None = None
    """Streaming chat: cut the reply text at exactly these offsets instead of every ``chunk_size``
    characters (``policy-sidecar test`` splits an answer at each boundary in turn)."""
    chunk_delay: float = Field(default=0.0, ge=0)
    """Streaming: seconds between two events."""
    drop_after_chunks: int | None = Field(default=None, ge=0)
    """Streaming: close the connection after this many SSE events (any kind, role chunk included).
    Non-stream: close it after the headers, before the body."""
    malformed: Literal["json", "sse"] | None = None
    """Corrupt the reply in the way that fits the mode: a truncated JSON body (non-stream) or a
    ``data:`` line that is not JSON in the middle of the stream (stream). Either value works."""
    usage: dict[str, Any] | None = None
    """Replaces the computed usage object verbatim."""
    raw_body: str | None = None
    """Send exactly this body (status ``status`` or 200), bypassing every wire format."""
    content_type: str | None = None
    """Content type of ``raw_body``; ``application/json`` by default."""

    def extra_headers(self) -> dict[str, str]:
        """Retry hints, sent with whatever this scenario answers."""
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            headers["retry-after"] = f"{self.retry_after:g}"
        if self.retry_after_ms is not None:
            headers["retry-after-ms"] = str(self.retry_after_ms)
        return headers


#: How many requests ``FakeState`` remembers (oldest dropped first).
DEFAULT_MAX_RECORDED = 1000

#: Credential headers: never stored or echoed as sent, only as ``redact_credential(value)``.
CREDENTIAL_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "cookie", "proxy-authorization"})


def redact_credential(value: str) -> str:
    """What the fake keeps of a credential: a short digest, enough for tests to compare keys.

    A test asserts which key the sidecar forwarded with ``== redact_credential("sk-...")``;
    the secret itself never sits in the request log or in an echo.
    """
    return "redacted:sha256:" + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def safe_headers(items: Any) -> dict[str, str]:
    """Request headers (repeated names joined by ``, ``) with credential values redacted."""
    headers: dict[str, str] = {}
    for name, value in items:
        if name.lower() in CREDENTIAL_HEADERS:
            value = redact_credential(value)
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """What reached the fake, byte for byte, so tests can check what the sidecar forwarded."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view for ``GET /_fake/requests``: the body as text, undecodable bytes replaced."""
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body.decode("utf-8", "replace"),
            "json": self.json,
        }


class FakeState:
    """Scripted answers (FIFO) and the request log, shared by every request of one fake app.

    A lock guards both because tests script the fake from their own thread while uvicorn
    serves it from another.
    """

    def __init__(self, max_requests: int = DEFAULT_MAX_RECORDED) -> None:
        # A ring buffer: the embedded demo upstream serves real traffic for as long as the
        # sidecar runs, and an unbounded log grew without limit (78 -> 290 MB over 121k requests).
        self.requests: deque[RecordedRequest] = deque(maxlen=max_requests)
        self._queue: deque[Scenario] = deque()
        self._lock = threading.Lock()

    def push(self, *scenarios: Scenario | Mapping[str, Any]) -> None:
        """Queue answers for the next model requests; plain dicts are validated as ``Scenario``."""
        parsed = [s if isinstance(s, Scenario) else Scenario.model_validate(s) for s in scenarios]
        with self._lock:
            self._queue.extend(parsed)

    def pop(self) -> Scenario | None:
        """Take the next scripted answer, if any."""
        with self._lock:
            return self._queue.popleft() if self._queue else None

    @property
    def pending(self) -> int:
        """How many scripted answers are still queued (tests check scripts were consumed)."""
        with self._lock:
            return len(self._queue)

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def reset(self) -> None:
        """Forget the queue and the request log, e.g. between tests sharing one server."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()


def error_envelope(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """The OpenAI error body; ``type`` follows the status so SDKs map it to the right exception."""
    if status == 429:
        error_type = "rate_limit_exceeded"
        code = code or "rate_limit_exceeded"
    elif status >= 500:
        error_type = "server_error"
    else:
        error_type = "invalid_request_error"
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def content_text(content: Any) -> str:
    """Text of a message ``content``: a string, or a list of parts whose text parts are joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return " ".join(texts)
    return ""


def chat_last_user(messages: Any) -> str:
    """Text of the last ``user`` message of a chat request ("" when there is none)."""
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return content_text(message.get("content"))
    return ""


def responses_last_user(input_value: Any) -> str:
    """Text of the last user input of a Responses request: ``input`` is a string or a list of items."""
    if isinstance(input_value, str):
        return input_value
    if isinstance(input_value, list):
        for item in reversed(input_value):
            if isinstance(item, dict) and item.get("role") == "user":
                return content_text(item.get("content"))
    return ""


def all_text(value: Any) -> str:
    """Every string inside a request value, for a rough prompt token count."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(all_text(v) for v in value)
    if isinstance(value, dict):
        return " ".join(all_text(v) for k, v in value.items() if k in ("content", "text", "input"))
    return ""


def approx_tokens(text: str) -> int:
    """Word count: usage only needs to be plausible and deterministic, not tokenizer-exact."""
    return len(text.split())


def render(template: str, last_user: str, model: str) -> str:
    """Fill a reply template with ``str.replace`` so braces in user text or JSON stay literal."""
    return template.replace("{last_user}", last_user).replace("{model}", model)


def embedding_vector(text: str) -> list[float]:
    """Deterministic vector from a hash of the text.

    Values are ``(byte - 128) / 128``: exactly representable in float32, so the float and the
    base64 (float32) encodings decode to identical numbers.
    """
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [(b - 128) / 128 for b in digest[:EMBEDDING_DIMS]]


def encode_embedding(text: str, as_base64: bool) -> list[float] | str:
    """The vector as floats, or as base64 little-endian float32 (what the openai SDK asks for)."""
    vector = embedding_vector(text)
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() if as_base64 else vector


class DroppedConnection(Exception):
    """Raised on purpose so uvicorn closes the connection mid-response (an abrupt upstream drop)."""


def _is_drop(exc: BaseException | None) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_drop(e) for e in exc.exceptions)
    return isinstance(exc, DroppedConnection)


class _QuietDrops(logging.Filter):
    """Hide uvicorn's traceback for scripted drops: they are the feature, not a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and _is_drop(record.exc_info[1]))


def install_log_filter() -> None:
    """Idempotent, and only ever hides records whose exception is a ``DroppedConnection``."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in logger.filters):
        logger.addFilter(_QuietDrops())


def new_id(prefix: str) -> str:
    """Unique ids in OpenAI's style, so clients and the sidecar can tell answers apart."""
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def pieces(text: str, size: int) -> list[str]:
    """Split text into stream deltas of ``size`` characters (the last one may be shorter)."""
    return [text[i : i + size] for i in range(0, len(text), size)]


def pieces_at(text: str, offsets: list[int]) -> list[str]:
    """Split text at the given offsets (out-of-range and repeated offsets are ignored)."""
    cuts = [0, *sorted({o for o in offsets if 0 < o < len(text)}), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(cuts) if b > a]
