"""Recording fakes of Gemini (AI Studio + Vertex AI + Google's OAuth token endpoint), Bedrock
(Converse / ConverseStream) and AWS STS, served by a real uvicorn on loopback.

They check what the real services check: the documented request schema (unknown fields are a
400, as Google and AWS answer), the ``x-goog-api-key`` key, the Vertex OAuth bearer (issued by
the fake token endpoint against a JWT assertion signed with the test's service-account key),
and Bedrock's SigV4 ``Authorization`` header, recomputed here with botocore from the received
request. Streams use the real framings: SSE for Gemini, AWS binary event-stream with both CRCs
for Bedrock.

What a call answers is scripted per test (``FakeCloud.push``); by default the model echoes the
last user text as ``You said: <text>``.
"""

from __future__ import annotations

import binascii
import contextlib
import hmac
import itertools
import struct
import threading
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from google.auth import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.harness import serve_in_thread

GEMINI_KEY = "AIza-fake-key"
AWS_REGION = "us-east-1"

_GEMINI_TOP = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings"}
_GEMINI_PART = {"text", "inlineData", "fileData", "functionCall", "functionResponse", "thought"}
_GEMINI_GEN = {
    "temperature",
    "topP",
    "topK",
    "maxOutputTokens",
    "stopSequences",
    "candidateCount",
    "presencePenalty",
    "frequencyPenalty",
    "seed",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
}
_BEDROCK_TOP = {
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "guardrailConfig",
    "additionalModelRequestFields",
}
_BEDROCK_BLOCK = {"text", "image", "toolUse", "toolResult", "document"}
_BEDROCK_INFERENCE = {"maxTokens", "temperature", "topP", "stopSequences"}


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    json: Any


@dataclass
class FakeCloud:
    """Shared state: scripted answers, recorded requests, issued OAuth tokens, AWS keys."""

    script: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Seen] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    token_expires_in: int = 3600
    public_key_pem: str | None = None
    aws_keys: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # access key -> secret, token
    sts_calls: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def push(self, *steps: dict[str, Any]) -> None:
        with self.lock:
            self.script.extend(steps)

    def _next(self) -> dict[str, Any]:
        with self.lock:
            return self.script.pop(0) if self.script else {}


def _last_user_text(contents: list[dict[str, Any]], key: str = "parts") -> str:
    for turn in reversed(contents):
        if turn.get("role") == "user":
            texts = [p["text"] for p in turn.get(key) or () if isinstance(p, dict) and "text" in p]
            if texts:
                return " ".join(texts)
    return ""


def _bad(message: str, status: str = "INVALID_ARGUMENT", code: int = 400) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "status": status}}, status_code=code)


def _check_gemini(body: Any) -> str | None:
    """The documented ``generateContent`` schema, the parts the sidecar may send."""
    if not isinstance(body, dict) or set(body) - _GEMINI_TOP:
        return f"Invalid JSON payload: unknown fields {sorted(set(body) - _GEMINI_TOP)}"
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "contents is required"
    for turn in contents:
        if turn.get("role") not in ("user", "model") or not turn.get("parts"):
            return f"bad turn {turn!r}"
        for part in turn["parts"]:
            if len(set(part) & _GEMINI_PART) != 1 or set(part) - _GEMINI_PART:
                return f"bad part {part!r}"
            if "functionResponse" in part and not isinstance(part["functionResponse"].get("response"), dict):
                return "functionResponse.response must be an object"
    if set(body.get("generationConfig") or {}) - _GEMINI_GEN:
        return f"unknown generationConfig fields {set(body['generationConfig']) - _GEMINI_GEN}"
    for tool in body.get("tools") or ():
        for decl in tool.get("functionDeclarations") or ():
            if set(decl) - {"name", "description", "parameters", "parametersJsonSchema"}:
                return f"bad function declaration {decl!r}"
    return None


def _gemini_candidate(step: dict[str, Any], echo: str) -> tuple[list[dict[str, Any]], str]:
    parts: list[dict[str, Any]] = []
    text = step.get("text", f"You said: {echo}")
    if text:
        parts.append({"text": text})
    for call in step.get("calls", ()):
        parts.append({"functionCall": {"name": call["name"], "args": call["args"]}})
    return parts, step.get("finish", "STOP")


def _usage(prompt: int, out: int) -> dict[str, int]:
    return {"promptTokenCount": prompt, "candidatesTokenCount": out, "totalTokenCount": prompt + out}


async def _gemini(request: Request, cloud: FakeCloud, vertex: bool) -> Response:
    path = request.url.path
    model_action = path.split("/models/", 1)[1]
    model, _, action = model_action.partition(":")
    if vertex:
        auth = request.headers.get("authorization", "")
        if not cloud.tokens or auth != f"Bearer {cloud.tokens[-1]}":
            return _bad("Request had invalid authentication credentials.", "UNAUTHENTICATED", 401)
    elif request.headers.get("x-goog-api-key") != GEMINI_KEY:
        return _bad("API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT", 400)
    body = orjson.loads(await request.body())
    cloud.requests.append(
        Seen(path + ("?" + request.url.query if request.url.query else ""), dict(request.headers), body)
    )
    problem = _check_gemini(body)
    if problem:
        return _bad(problem)
    step = cloud._next()
    if "status" in step:
        return _bad(step.get("message", "scripted error"), step.get("rpc", "UNAVAILABLE"), step["status"])
    echo = _last_user_text(body["contents"])
    parts, finish = _gemini_candidate(step, echo)
    usage = _usage(step.get("prompt_tokens", 11), step.get("completion_tokens", 7))
    if action == "generateContent":
        cand: dict[str, Any] = {
            "content": {"role": "model", "parts": parts},
            "finishReason": finish,
            "index": 0,
        }
        if step.get("blocked"):
            return JSONResponse({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": usage})
        return JSONResponse(
            {"candidates": [cand], "usageMetadata": usage, "modelVersion": model, "responseId": "resp-1"}
        )
    if action != "streamGenerateContent" or request.query_params.get("alt") != "sse":
        return _bad(f"unknown action {action}", "NOT_FOUND", 404)
    size = step.get("chunk_size", 4)

    async def events() -> AsyncIterator[bytes]:
        pieces: list[dict[str, Any]] = []
        for part in parts:
            if "text" in part:
                t = part["text"]
                pieces.extend({"text": t[i : i + size]} for i in range(0, len(t), size))
            else:
                pieces.append(part)
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            cand: dict[str, Any] = {"content": {"role": "model", "parts": [piece]}, "index": 0}
            chunk: dict[str, Any] = {"candidates": [cand], "modelVersion": model, "responseId": "resp-s"}
            if last and not step.get("cut"):
                cand["finishReason"] = finish
            chunk["usageMetadata"] = usage if last else _usage(usage["promptTokenCount"], i)
            yield b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def _token(request: Request, cloud: FakeCloud) -> Response:
    """Google's OAuth token endpoint for the JWT-bearer grant of a service account."""
    form = urllib.parse.parse_qs((await request.body()).decode())
    if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
    try:
        # google-auth signs for Google's own token URI as audience, whatever ``token_uri`` says.
        audience = ["https://oauth2.googleapis.com/token", str(request.url)]
        claims = jwt.decode(form["assertion"][0], certs=cloud.public_key_pem, audience=audience)
    except (ValueError, KeyError) as exc:
        return JSONResponse({"error": "invalid_grant", "error_description": str(exc)}, status_code=400)
    if "cloud-platform" not in claims.get("scope", ""):
        return JSONResponse({"error": "invalid_scope"}, status_code=400)
    token = f"ya29.fake-{len(cloud.tokens) + 1}"
    cloud.tokens.append(token)
    return JSONResponse({"access_token": token, "expires_in": cloud.token_expires_in, "token_type": "Bearer"})


async def _metadata(request: Request, cloud: FakeCloud) -> Response:
    """The GCE / GKE metadata server (Workload Identity): ping, service-account info, token."""
    flavor = {"Metadata-Flavor": "Google"}
    if request.headers.get("metadata-flavor") != "Google":
        return Response("Missing Metadata-Flavor:Google header.", status_code=403)
    path = request.url.path
    if path == "/":
        return Response("ok", headers=flavor)
    if path.endswith("/project/project-id"):
        return Response("proj-1", headers=flavor, media_type="text/plain")
    if path.endswith("/service-accounts/default/"):
        info = {
            "email": "sidecar@proj-1.iam.gserviceaccount.com",
            "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
        }
        return JSONResponse(info, headers=flavor)
    if path.endswith("/service-accounts/default/token"):
        token = f"ya29.metadata-{len(cloud.tokens) + 1}"
        cloud.tokens.append(token)
        return JSONResponse(
            {"access_token": token, "expires_in": cloud.token_expires_in, "token_type": "Bearer"},
            headers=flavor,
        )
    return Response("not found", status_code=404, headers=flavor)


# ------------------------------------------------------------------ AWS


def _header(name: str, value: str) -> bytes:
    raw = value.encode()
    return bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(raw)) + raw


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (lengths + CRC), headers, payload, message CRC."""
    head = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    body = prelude + head + payload
    return body + struct.pack(">I", binascii.crc32(body) & 0xFFFFFFFF)


def event(kind: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, orjson.dumps(payload))


def verify_sigv4(request: Request, body: bytes, cloud: FakeCloud) -> str | None:
    """Recompute the SigV4 signature with botocore from what was received; None if it matches."""
    auth = request.headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "missing SigV4 Authorization"
    fields = dict(item.strip().split("=", 1) for item in auth[len("AWS4-HMAC-SHA256 ") :].split(","))
    access, date, region, service, _ = fields["Credential"].split("/")
    if access not in cloud.aws_keys:
        return "UnrecognizedClientException: unknown access key"
    amz_date = request.headers.get("x-amz-date", "")
    if not amz_date.startswith(date) or region != AWS_REGION or service != "bedrock":
        return "credential scope does not match"
    secret, token = cloud.aws_keys[access]
    if token is not None and request.headers.get("x-amz-security-token") != token:
        return "missing or wrong session token"
    signed = fields["SignedHeaders"].split(";")
    raw_path = request.scope["raw_path"].decode()
    url = f"http://{request.headers['host']}{raw_path}"
    aws = AWSRequest(
        method=request.method,
        url=url,
        data=body,
        headers={h: request.headers[h] for h in signed if h != "host"},
    )
    signer = SigV4Auth(Credentials(access, secret, token), "bedrock", region)
    aws.context["timestamp"] = amz_date
    expected = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
    return None if hmac.compare_digest(expected, fields["Signature"]) else "SignatureDoesNotMatch"


def _aws_error(name: str, message: str, status: int) -> Response:
    return JSONResponse(
        {"message": message},
        status_code=status,
        headers={"x-amzn-ErrorType": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/"},
    )


def _check_bedrock(body: Any) -> str | None:
    if not isinstance(body, dict) or set(body) - _BEDROCK_TOP:
        return "extraneous key in request"
    roles = [m.get("role") for m in body.get("messages") or ()]
    if not roles or roles[0] != "user" or any(a == b for a, b in itertools.pairwise(roles)):
        return "A conversation must start with a user message and alternate roles."
    for m in body["messages"]:
        for block in m.get("content") or ():
            if len(block) != 1 or set(block) - _BEDROCK_BLOCK:
                return f"bad content block {block!r}"
    if set(body.get("inferenceConfig") or {}) - _BEDROCK_INFERENCE:
        return "extraneous key in inferenceConfig"
    return None


async def _bedrock(request: Request, cloud: FakeCloud) -> Response:
    raw = await request.body()
    problem = verify_sigv4(request, raw, cloud)
    if problem:
        return _aws_error(
            "UnrecognizedClientException" if "Unrecognized" in problem else "InvalidSignatureException",
            problem,
            403,
        )
    body = orjson.loads(raw)
    cloud.requests.append(Seen(request.scope["raw_path"].decode(), dict(request.headers), body))
    problem = _check_bedrock(body)
    if problem:
        return _aws_error("ValidationException", problem, 400)
    step = cloud._next()
    if "status" in step:
        return _aws_error(
            step.get("error", "ServiceUnavailableException"), step.get("message", "scripted"), step["status"]
        )
    text = step.get("text", f"You said: {_last_user_text(body['messages'], 'content')}")
    stop = step.get("stop", "tool_use" if step.get("calls") else "end_turn")
    usage = {"inputTokens": step.get("prompt_tokens", 13), "outputTokens": step.get("completion_tokens", 5)}
    usage["totalTokens"] = usage["inputTokens"] + usage["outputTokens"]
    calls = step.get("calls", ())
    if request.url.path.endswith("/converse"):
        content: list[dict[str, Any]] = [{"text": text}] if text else []
        content += [
            {"toolUse": {"toolUseId": f"tooluse_{i}", "name": c["name"], "input": c["args"]}}
            for i, c in enumerate(calls)
        ]
        return JSONResponse(
            {
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop,
                "usage": usage,
                "metrics": {"latencyMs": 5},
            }
        )
    size = step.get("chunk_size", 4)

    async def frames() -> AsyncIterator[bytes]:
        yield event("messageStart", {"role": "assistant"})
        block = 0
        if text:
            for i in range(0, len(text), size):
                yield event(
                    "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text[i : i + size]}}
                )
            yield event("contentBlockStop", {"contentBlockIndex": 0})
            block = 1
        for i, c in enumerate(calls):
            start = {"toolUse": {"toolUseId": f"tooluse_{i}", "name": c["name"]}}
            yield event("contentBlockStart", {"contentBlockIndex": block, "start": start})
            args = orjson.dumps(c["args"]).decode()
            for j in range(0, len(args), size):
                yield event(
                    "contentBlockDelta",
                    {"contentBlockIndex": block, "delta": {"toolUse": {"input": args[j : j + size]}}},
                )
            yield event("contentBlockStop", {"contentBlockIndex": block})
            block += 1
        if step.get("stream_exception"):
            headers = {
                ":exception-type": step["stream_exception"],
                ":content-type": "application/json",
                ":message-type": "exception",
            }
            yield frame(headers, orjson.dumps({"message": "scripted stream failure"}))
            return
        corrupt = step.get("corrupt")
        stop_frame = event("messageStop", {"stopReason": stop})
        yield stop_frame[:-1] + bytes([stop_frame[-1] ^ 0xFF]) if corrupt else stop_frame
        yield event("metadata", {"usage": usage, "metrics": {"latencyMs": 5}})

    return StreamingResponse(frames(), media_type="application/vnd.amazon.eventstream")


async def _sts(request: Request, cloud: FakeCloud) -> Response:
    """AWS STS ``AssumeRoleWithWebIdentity`` (what IRSA's web identity provider calls)."""
    form = {k: v[0] for k, v in urllib.parse.parse_qs((await request.body()).decode()).items()}
    cloud.sts_calls.append(form)
    if form.get("Action") != "AssumeRoleWithWebIdentity" or not form.get("WebIdentityToken"):
        return Response("<ErrorResponse/>", status_code=400)
    access, secret, token = "ASIAFAKEWEBIDENTITY", "web-identity-secret", "web-identity-session"
    cloud.aws_keys[access] = (secret, token)
    xml = f"""<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials><AccessKeyId>{access}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>
      <SessionToken>{token}</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>
    <SubjectFromWebIdentityToken>system:serviceaccount:app:sa</SubjectFromWebIdentityToken>
    <AssumedRoleUser><Arn>{form.get("RoleArn")}/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"""
    return Response(xml, media_type="text/xml")


def build_app(cloud: FakeCloud) -> Starlette:
    async def gemini(request: Request) -> Response:
        return await _gemini(request, cloud, vertex=False)

    async def vertex(request: Request) -> Response:
        return await _gemini(request, cloud, vertex=True)

    async def token(request: Request) -> Response:
        return await _token(request, cloud)

    async def metadata(request: Request) -> Response:
        return await _metadata(request, cloud)

    async def bedrock(request: Request) -> Response:
        return await _bedrock(request, cloud)

    async def sts(request: Request) -> Response:
        return await _sts(request, cloud)

    return Starlette(
        routes=[
            Route("/v1beta/models/{rest:path}", gemini, methods=["POST"]),
            Route(
                "/v1/projects/{project}/locations/{location}/publishers/google/models/{rest:path}",
                vertex,
                methods=["POST"],
            ),
            Route("/token", token, methods=["POST"]),
            Route("/", metadata, methods=["GET"]),
            Route("/computeMetadata/v1/{rest:path}", metadata, methods=["GET"]),
            Route("/model/{rest:path}", bedrock, methods=["POST"]),
            Route("/sts/", sts, methods=["POST"]),
            Route("/sts", sts, methods=["POST"]),
        ]
    )


@contextlib.contextmanager
def fake_cloud() -> Iterator[tuple[str, FakeCloud]]:
    cloud = FakeCloud()
    with serve_in_thread(build_app(cloud), lifespan="off") as url:
        yield url, cloud
