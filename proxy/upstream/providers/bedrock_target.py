"""Amazon Bedrock upstream (``provider: bedrock``): Converse and ConverseStream over HTTP.

Requests go to ``{base_url}/model/{modelId}/converse`` (``converse-stream`` for streams), signed
with SigV4 by botocore (no signing code here) using the AWS default credential chain: env
variables, shared config/credentials files (``AWS_PROFILE``), web identity (IRSA's
``AWS_WEB_IDENTITY_TOKEN_FILE`` + ``AWS_ROLE_ARN``), ECS container and EC2 instance metadata.
botocore refreshes temporary credentials itself; a refresh is blocking I/O, so it runs in a
worker thread. Client credentials are never forwarded, nor are other client headers: only what
is signed (plus the policy's static ``headers``) goes to AWS.

ConverseStream answers in the AWS binary event-stream framing; botocore's ``EventStreamBuffer``
decodes it incrementally and checks both CRCs of every message.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import orjson

from proxy.chain.context import RequestContext
from proxy.errors import UpstreamError, UpstreamTimeout
from proxy.models.stream import StreamEvent
from proxy.models.upstream import BufferedResponse, UpstreamRequest, UpstreamResponse
from proxy.upstream.client import HttpClient
from proxy.upstream.providers.bedrock import (
    BedrockStreamDecoder,
    bedrock_error_to_openai,
    bedrock_response_to_openai,
    error_name,
    openai_request_to_bedrock,
)
from proxy.upstream.providers.gemini_target import missing_extra
from proxy.upstream.providers.translated import JSON_HEADER, TranslatedTarget, credentials_unavailable

_EVENTSTREAM = "application/vnd.amazon.eventstream"


class AwsCredentials:
    """The AWS default credential chain through botocore, resolved once and refreshed by it."""

    def __init__(self) -> None:
        try:
            import botocore.session  # noqa: F401
        except ImportError:
            raise missing_extra("bedrock", "bedrock", "botocore") from None
        self._creds: Any = None
        self._lock = asyncio.Lock()

    def _resolve(self) -> Any:
        import botocore.exceptions
        import botocore.session

        try:
            if self._creds is None:
                self._creds = botocore.session.get_session().get_credentials()
            if self._creds is None:
                raise credentials_unavailable(
                    "The sidecar found no AWS credentials for the upstream.",
                    "no credentials in env, shared files, web identity or metadata",
                )
            return self._creds.get_frozen_credentials()
        except botocore.exceptions.BotoCoreError as exc:
            raise credentials_unavailable(
                "The sidecar could not get AWS credentials for the upstream.", repr(exc)
            ) from exc

    async def frozen(self) -> Any:
        creds = self._creds
        if creds is not None and not (hasattr(creds, "refresh_needed") and creds.refresh_needed()):
            return creds.get_frozen_credentials()
        async with self._lock:
            return await asyncio.to_thread(self._resolve)


class _EventStreamFrames:
    """``FrameDecoder`` over the AWS event-stream framing (CRCs checked by botocore)."""

    def __init__(self, model: str) -> None:
        from botocore.eventstream import EventStreamBuffer

        self._buffer = EventStreamBuffer()
        self._decoder = BedrockStreamDecoder(model)

    @property
    def done(self) -> bool:
        return self._decoder.done

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        from botocore.eventstream import ParserError

        self._buffer.add_data(chunk)
        events: list[StreamEvent] = []
        try:
            for message in self._buffer:
                headers = message.headers
                try:
                    payload = orjson.loads(message.payload) if message.payload else {}
                except orjson.JSONDecodeError:
                    payload = {}
                payload = payload if isinstance(payload, dict) else {}
                kind = headers.get(":message-type")
                if kind == "event":
                    events.extend(self._decoder.decode(str(headers.get(":event-type")), payload))
                elif kind in ("exception", "error"):
                    name = headers.get(":exception-type") or headers.get(":error-code") or ""
                    events.extend(self._decoder.exception(str(name), payload))
        except ParserError as exc:
            raise UpstreamError(
                "The upstream provider sent a malformed event stream.", detail=repr(exc)
            ) from exc
        return events

    def flush(self) -> list[StreamEvent]:
        return []

    def openai_chunk_template(self) -> dict[str, Any]:
        return self._decoder.openai_chunk_template()


class BedrockTarget(TranslatedTarget):
    provider = "a Bedrock"

    def __init__(
        self,
        name: str,
        base_url: str,
        client: HttpClient,
        region: str,
        static_headers: dict[str, str],
        *,
        first_token_timeout: float | None = None,
        max_response_bytes: int | None = None,
    ) -> None:
        super().__init__(
            name, client, first_token_timeout=first_token_timeout, max_response_bytes=max_response_bytes
        )
        self._base = base_url.rstrip("/")
        self._region = region
        self._static = [(k.lower(), v) for k, v in static_headers.items()]
        self._credentials = AwsCredentials()

    def url(self, model: str, stream: bool) -> str:
        return f"{self._base}/model/{quote(model, safe='')}/{'converse-stream' if stream else 'converse'}"

    def translate_request(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        return openai_request_to_bedrock(body)

    async def headers(
        self, request: UpstreamRequest, ctx: RequestContext, url: str, payload: bytes
    ) -> list[tuple[str, str]]:
        """Only what is signed (and the policy's static headers): no client header reaches AWS."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        headers = dict(self._static)
        headers.update({k.lower(): v for k, v in ctx.upstream_headers.items() if v})
        headers["content-type"] = "application/json"
        headers["accept"] = _EVENTSTREAM if request.stream else "application/json"
        aws = AWSRequest(method="POST", url=url, data=payload, headers=headers)
        SigV4Auth(await self._credentials.frozen(), "bedrock", self._region).add_auth(aws)
        return [(k, str(v)) for k, v in aws.headers.items()]

    async def post(self, url: str, headers: list[tuple[str, str]], payload: bytes) -> UpstreamResponse:
        # Sent as signed: the model id's ':' stays %3A (re-quoting would break the signature).
        return await self._client.send("POST", url, headers, payload, encoded=True)

    def frames(self, model: str) -> _EventStreamFrames:
        return _EventStreamFrames(model)

    def translate_answer(self, resp: BufferedResponse, model: str) -> BufferedResponse:
        headers = [(k, v) for k, v in resp.headers if k.lower() not in ("content-type", "x-amzn-errortype")]
        headers.append(JSON_HEADER)
        try:
            data: Any = orjson.loads(resp.body)
        except orjson.JSONDecodeError:
            if resp.status < 400:
                raise UpstreamError("The upstream provider sent an invalid response.") from None
            data = {}
        if resp.status < 400:
            return BufferedResponse(
                resp.status, headers, orjson.dumps(bedrock_response_to_openai(data, model))
            )
        header = next((v for k, v in resp.headers if k.lower() == "x-amzn-errortype"), None)
        if error_name(header, data) == "ModelTimeoutException":
            # A timeout, whatever the status says: retry and fallback see the ``timeout`` class.
            raise UpstreamTimeout("The upstream model timed out.", detail=str(data)[:200])
        translated = bedrock_error_to_openai(data, resp.status, header)
        return BufferedResponse(resp.status, headers, orjson.dumps(translated))
