"""What the client got: the answer text and error code, from a JSON body or an SSE stream.

Kept small and format-aware so ``expect.output`` means the same thing on every route and in
both modes: the text of choice 0 (chat), the output text (responses), the text blocks
(messages). A mid-stream error event counts as the run's error code.
"""

from __future__ import annotations

from typing import Any

import orjson


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _error_code(payload: Any) -> str | None:
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        code = payload["error"].get("code") or payload["error"].get("type")
        return str(code) if code is not None else None
    return None


def _body_text(route: str, body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    if route == "chat.completions":
        choices = body.get("choices") or []
        message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        return content if isinstance(content, str) else None
    if route == "responses":
        parts = [
            c.get("text", "")
            for item in body.get("output") or []
            if isinstance(item, dict)
            for c in item.get("content") or []
            if isinstance(c, dict) and c.get("type") == "output_text"
        ]
        return "".join(parts) if parts else None
    if route == "messages":
        blocks = [b.get("text", "") for b in body.get("content") or [] if isinstance(b, dict)]
        return "".join(blocks) if blocks else None
    return None


def _event_text(route: str, event: dict[str, Any]) -> str:
    if route == "chat.completions":
        out = []
        for choice in event.get("choices") or []:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                delta = choice.get("delta") or {}
                content = delta.get("content") if isinstance(delta, dict) else None
                out.append(content if isinstance(content, str) else "")
        return "".join(out)
    if route == "responses" and event.get("type") == "response.output_text.delta":
        return str(event.get("delta") or "")
    if route == "messages" and event.get("type") == "content_block_delta":
        delta = event.get("delta") or {}
        return str(delta.get("text") or "") if isinstance(delta, dict) else ""
    return ""


def parse_answer(route: str, raw: bytes, status: int, stream: bool) -> tuple[str | None, str | None]:
    """(answer text, error code) of one response; text is None when there was no answer."""
    if not stream or status >= 400 or not raw.lstrip().startswith((b"data:", b"event:", b":")):
        body = _json(raw)
        return _body_text(route, body), _error_code(body)
    text: list[str] = []
    error: str | None = None
    for line in raw.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            continue
        event = _json(data)
        if not isinstance(event, dict):
            continue
        error = error or _error_code(event)
        text.append(_event_text(route, event))
    return "".join(text), error
