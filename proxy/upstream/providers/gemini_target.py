"""Gemini upstreams: the Generative Language API (``provider: gemini``) and Vertex AI (``vertex``).

Both take the same ``generateContent`` body (``proxy.upstream.providers.gemini``) and differ in
URL and credentials:

* gemini: ``{base_url}/models/{model}:generateContent``, key in ``x-goog-api-key`` (with
  ``auth: passthrough``, an OpenAI SDK's ``Authorization: Bearer <key>`` is moved there).
* vertex: ``{base_url}/projects/{project}/locations/{location}/publishers/google/models/
  {model}:generateContent`` with an OAuth access token from Google ADC (``google-auth``): a
  service-account file (``credentials_file`` or ``GOOGLE_APPLICATION_CREDENTIALS``), gcloud's
  user credentials, or the GKE / GCE metadata server (Workload Identity). The token is refreshed
  by google-auth when it nears expiry; that blocking call runs in a worker thread, one at a time.

Streams use ``:streamGenerateContent?alt=sse``. Only chat completions can be translated.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from proxy.chain.context import RequestContext
from proxy.errors import ConfigError
from proxy.models.upstream import BufferedResponse, UpstreamRequest
from proxy.upstream.client import HttpClient
from proxy.upstream.providers.gemini import (
    gemini_error_to_openai,
    gemini_response_to_openai,
    openai_request_to_gemini,
)
from proxy.upstream.providers.gemini_stream import GeminiStreamDecoder
from proxy.upstream.providers.translated import (
    JSON_HEADER,
    SSEFrames,
    TranslatedTarget,
    credentials_unavailable,
    split_bearer,
    translate_whole,
)
from proxy.upstream.sse import DEFAULT_MAX_EVENT_BYTES
from proxy.upstream.targets import AMBIENT_HEADERS, AUTH_HEADERS, Credentials

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
_DROP = AUTH_HEADERS | AMBIENT_HEADERS | {"content-type", "accept-encoding"}


def missing_extra(provider: str, extra: str, package: str) -> ConfigError:
    return ConfigError(
        f"provider: {provider} needs the {package!r} package: pip install 'policy-sidecar[{extra}]'",
        code="missing_dependency",
    )


class GoogleToken:
    """An OAuth access token from Google ADC, refreshed by google-auth when it nears expiry.

    google-auth's refresh is blocking I/O (token endpoint or metadata server), so it runs in a
    worker thread under a lock: concurrent requests with an expired token wait for one refresh.
    """

    def __init__(self, credentials_file: str | None) -> None:
        try:
            import google.auth
            import google.auth.transport.requests  # noqa: F401
        except ImportError:
            raise missing_extra("vertex", "vertex", "google-auth") from None
        self._file = credentials_file
        self._creds: Any = None
        self._lock = asyncio.Lock()

    def _refresh(self) -> None:
        import google.auth
        import google.auth.exceptions
        import google.auth.transport.requests
        from google.oauth2 import service_account

        try:
            if self._creds is None:
                if self._file is not None:
                    self._creds = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                        self._file, scopes=SCOPES
                    )
                else:
                    self._creds, _ = google.auth.default(scopes=SCOPES)
            self._creds.refresh(google.auth.transport.requests.Request())
        except (google.auth.exceptions.GoogleAuthError, OSError, ValueError) as exc:
            raise credentials_unavailable(
                "The sidecar could not get Google credentials for the upstream.", repr(exc)
            ) from exc

    async def authorization(self) -> str:
        if self._creds is None or not self._creds.valid:
            async with self._lock:
                if self._creds is None or not self._creds.valid:
                    await asyncio.to_thread(self._refresh)
        return f"Bearer {self._creds.token}"


class GeminiTarget(TranslatedTarget):
    """``provider: gemini`` (API key) or ``vertex`` (``token`` set: Google ADC)."""

    provider = "a Gemini"

    def __init__(
        self,
        name: str,
        base_url: str,
        client: HttpClient,
        credentials: Credentials,
        *,
        vertex: tuple[str, str] | None = None,
        token: GoogleToken | None = None,
        first_token_timeout: float | None = None,
        max_response_bytes: int | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        super().__init__(
            name, client, first_token_timeout=first_token_timeout, max_response_bytes=max_response_bytes
        )
        base = base_url.rstrip("/")
        if vertex is not None:
            project, location = vertex
            base += (
                f"/projects/{quote(project, safe='')}/locations/{quote(location, safe='')}/publishers/google"
            )
        self._models = base + "/models/"
        self._credentials = credentials
        self._token = token
        self._max_event = max_event_bytes

    def url(self, model: str, stream: bool) -> str:
        method = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
        return self._models + quote(model, safe="") + method

    def translate_request(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        return openai_request_to_gemini(body)

    async def headers(
        self, request: UpstreamRequest, ctx: RequestContext, url: str, payload: bytes
    ) -> list[tuple[str, str]]:
        if self._token is not None:
            headers = [(k, v) for k, v in request.headers if k.lower() not in _DROP]
            headers = self._credentials.apply(headers, ctx.upstream_headers)
            token = await self._token.authorization()
            return [
                *(h for h in headers if h[0].lower() != "authorization"),
                ("authorization", token),
                JSON_HEADER,
            ]
        headers = [(k, v) for k, v in request.headers if k.lower() not in ("content-type", "accept-encoding")]
        if self._credentials.mode == "passthrough" and not any(
            k.lower() == "x-goog-api-key" for k, _ in headers
        ):
            headers, key = split_bearer(headers)
            if key is not None:
                headers.append(("x-goog-api-key", key))
        return [*self._credentials.apply(headers, ctx.upstream_headers), JSON_HEADER]

    def translate_answer(self, resp: BufferedResponse, model: str) -> BufferedResponse:
        return translate_whole(resp, lambda d: gemini_response_to_openai(d, model), gemini_error_to_openai)

    def frames(self, model: str) -> SSEFrames:
        decoder = GeminiStreamDecoder(model)
        return SSEFrames(decoder, self._max_event, flush=decoder.flush)
