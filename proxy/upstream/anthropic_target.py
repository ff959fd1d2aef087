"""An Anthropic Messages API upstream behind the OpenAI-shaped chain.

The chain and the routes speak OpenAI chat completions; this target translates on the way out
(request -> Messages API) and on the way back (message, SSE stream and error envelopes ->
OpenAI shapes), so fallback from an OpenAI target to an Anthropic one and back is invisible to
the client. Only chat completions can be translated; other routes are refused with a 400.

Credentials: ``x-api-key`` (with ``auth: passthrough``, a client's ``Authorization: Bearer``
key is moved there, since OpenAI SDKs send it that way). ``anthropic-version`` defaults to
``2023-06-01``, which still accepts the sampling parameters; set another one in the
upstream's ``headers`` if you need it.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.chain.context import RequestContext
from proxy.models.upstream import BufferedResponse, UpstreamRequest
from proxy.upstream.client import HttpClient
from proxy.upstream.providers.anthropic import (
    anthropic_error_to_openai,
    anthropic_response_to_openai,
    openai_request_to_anthropic,
)
from proxy.upstream.providers.anthropic_stream import AnthropicStreamDecoder
from proxy.upstream.providers.translated import JSON_HEADER, SSEFrames, TranslatedTarget, split_bearer
from proxy.upstream.sse import DEFAULT_MAX_EVENT_BYTES
from proxy.upstream.targets import Credentials

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicTarget(TranslatedTarget):
    provider = "an Anthropic"

    def __init__(
        self,
        name: str,
        base_url: str,
        client: HttpClient,
        credentials: Credentials,
        *,
        first_token_timeout: float | None = None,
        max_response_bytes: int | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        super().__init__(
            name, client, first_token_timeout=first_token_timeout, max_response_bytes=max_response_bytes
        )
        self._max_event = max_event_bytes
        self._url = base_url.rstrip("/") + "/messages"
        self._credentials = credentials

    def url(self, model: str, stream: bool) -> str:
        return self._url

    def translate_request(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        return openai_request_to_anthropic(body, model=model)

    async def headers(
        self, request: UpstreamRequest, ctx: RequestContext, url: str, payload: bytes
    ) -> list[tuple[str, str]]:
        headers = [
            (k, v) for k, v in request.headers if k.lower() not in ("content-type", "anthropic-version")
        ]
        if self._credentials.mode == "passthrough" and not any(k.lower() == "x-api-key" for k, _ in headers):
            rest, key = split_bearer(headers)
            if key is not None:
                headers = [*rest, ("x-api-key", key)]
        headers = self._credentials.apply(headers, ctx.upstream_headers)
        if not any(k == "anthropic-version" for k, _ in headers):
            headers.append(("anthropic-version", ANTHROPIC_VERSION))
        headers.append(JSON_HEADER)
        return headers

    def frames(self, model: str) -> SSEFrames:
        return SSEFrames(AnthropicStreamDecoder(), self._max_event, wait_for_id=True)

    def translate_answer(self, resp: BufferedResponse, model: str) -> BufferedResponse:
        """Unlike ``translate_whole``, a body that is no JSON object passes as it came."""
        headers = [(k, v) for k, v in resp.headers if k.lower() != "content-type"]
        headers.append(JSON_HEADER)
        try:
            data = orjson.loads(resp.body)
        except orjson.JSONDecodeError:
            return resp
        if not isinstance(data, dict):
            return resp
        translated = (
            anthropic_response_to_openai(data)
            if resp.status < 400
            else anthropic_error_to_openai(data, resp.status)
        )
        return BufferedResponse(resp.status, headers, orjson.dumps(translated))
