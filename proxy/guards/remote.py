"""The judge client: one OpenAI-compatible endpoint a guard consults (an LLM judge, ``/moderations``).

Injection and moderation both ask a remote model about borderline texts only. The HTTP itself comes
from the runtime through ``Deps.json_http`` (the plugins' HTTP port, ``proxy.chain.ports``), so no
plugin imports ``proxy.upstream``. What this adds on top: the URL and auth header, one deadline
over the whole exchange, and failures turned into ``None`` plus a decision record (``error_rule``)
so the caller's ``on_error`` decides (fail open or closed), never an exception in the hook.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from proxy.chain import Deps, RequestContext, Secret

#: Texts sent to a judge are cut here: a borderline verdict does not need a whole document.
JUDGE_TEXT_CHARS = 8000


class RemoteModel:
    """Built once per plugin (policy revision); the pooled HTTP client is a shared resource."""

    __slots__ = ("_base", "_deps", "_headers", "_rule", "_timeout")

    def __init__(
        self, deps: Deps, base_url: str, api_key: Secret | None, timeout: float, error_rule: str
    ) -> None:
        self._deps = deps
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._rule = error_rule
        self._headers = [("content-type", "application/json")]
        if api_key is not None:
            self._headers.append(("authorization", f"Bearer {api_key.get_secret_value()}"))

    def _error(self, ctx: RequestContext, path: str, error: str) -> None:
        ctx.record(self._rule, "error", detail={"path": path, "error": error})

    async def post(self, path: str, payload: dict[str, Any], ctx: RequestContext) -> Any:
        """The decoded JSON answer, or None (recorded) on a timeout, transport error or bad body."""
        client = self._deps.json_http(self._base, self._timeout)
        try:
            async with asyncio.timeout(self._timeout):
                return await client.post_json(self._base + path, self._headers, orjson.dumps(payload))
        except Exception as exc:
            self._error(ctx, path, type(exc).__name__)
            return None

    async def ask_yes_no(self, model: str, prompt: str, ctx: RequestContext) -> bool | None:
        """A judge's YES/NO on ``prompt`` (a chat completion of two tokens at most), None if unclear."""
        path = "/chat/completions"
        payload = {
            "model": model,
            "max_tokens": 2,
            "temperature": 0,
            "messages": [{"role": "user", "content": prompt}],
        }
        data = await self.post(path, payload, ctx)
        if data is None:
            return None
        try:
            answer = str(data["choices"][0]["message"]["content"]).strip().upper()
        except (TypeError, KeyError, IndexError):
            self._error(ctx, path, "unexpected body")
            return None
        if answer.startswith("YES"):
            return True
        if answer.startswith("NO"):
            return False
        self._error(ctx, path, "unparseable answer")
        return None
