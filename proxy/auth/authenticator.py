"""Who is calling: the credential in the request, verified against the keys file or the JWKS.

Where the credential is read, in order: ``Authorization: Bearer <credential>`` (what the OpenAI
SDK sends as ``api_key``), ``x-api-key`` (the Anthropic SDK) and ``api-key`` (Azure OpenAI
clients). A credential made of three dot-separated base64url segments is a JWT; anything else
is an API key (``policy-sidecar keys new`` never makes a key of that shape).

Cost on the hot path: an API key is one SHA-256 and one dict lookup; a JWT is verified once
(signature, ``iss``, ``aud``, ``exp``/``nbf`` with ``leeway``) and the result cached by the
token itself until the token expires or the key set changes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proxy.auth.caller import Caller
from proxy.auth.config import ClientsConfig
from proxy.auth.keyfile import KeyStore
from proxy.chain.plugin import Deps
from proxy.errors import Unauthenticated

if TYPE_CHECKING:
    from proxy.auth.jwks import JwksFile, JwksUrl
    from proxy.auth.jwt_verifier import JwtVerifier

# The signature segment may be empty (``alg: none``): such a token is refused as a token.
_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
#: headers that may carry the caller's credential; never forwarded upstream under ``clients:``
CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key", "api-key"})


def looks_like_jwt(credential: str) -> bool:
    return _JWT_SHAPE.match(credential) is not None


def credential_of(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return headers.get("x-api-key") or headers.get("api-key") or None


class Authenticator:
    """One per policy revision; the key store and JWKS sources are shared across revisions."""

    def __init__(self, cfg: ClientsConfig, keys: KeyStore | None, jwt_verifier: JwtVerifier | None) -> None:
        self.cfg = cfg
        self.keys = keys
        self.jwt = jwt_verifier
        self.failures: dict[str, int] = {}

    async def authenticate(self, headers: Mapping[str, str]) -> Caller:
        """The verified caller, or ``Unauthenticated`` (401) with the reason in ``detail``."""
        try:
            return await self._authenticate(headers)
        except Unauthenticated as exc:
            reason = exc.detail or "invalid"
            self.failures[reason] = self.failures.get(reason, 0) + 1
            raise

    async def _authenticate(self, headers: Mapping[str, str]) -> Caller:
        credential = credential_of(headers)
        if credential is None:
            raise Unauthenticated(
                "Missing credential: send your key as 'Authorization: Bearer <key>' or 'x-api-key'.",
                detail="missing_credential",
            )
        if looks_like_jwt(credential):
            if self.jwt is None:
                raise Unauthenticated("Bearer tokens are not accepted; use a key.", detail="jwt_disabled")
            return await self.jwt.verify(credential)
        if self.keys is None:
            raise Unauthenticated("API keys are not accepted; use a bearer token.", detail="keys_disabled")
        await self.keys.refresh(self.cfg.check_interval)
        caller = self.keys.lookup(credential)
        if caller is None:
            raise Unauthenticated("Incorrect API key provided.", detail="unknown_key")
        caller.check_live()
        return caller

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"failures": dict(self.failures)}
        if self.keys is not None:
            out["keys_file"] = self.keys.status()
        if self.jwt is not None:
            out["jwt"] = {"issuer": self.jwt.cfg.issuer, "jwks": self.jwt.source.status()}
        return out


def build_authenticator(cfg: ClientsConfig | None, deps: Deps) -> Authenticator | None:
    """Called when a policy compiles: loads (or re-checks) the keys and JWKS files now, so a
    broken file fails the first load loudly and a fixed one is picked up on policy reload."""
    if cfg is None:
        return None
    base = Path(deps.policy_dir)
    keys: KeyStore | None = None
    if cfg.keys_file is not None:
        path = (base / cfg.keys_file).resolve()
        keys = deps.resource(f"auth:keys:{path}", lambda: KeyStore(path))
        keys.load_now()
    verifier: JwtVerifier | None = None
    if cfg.jwt is not None:
        # PyJWT, cryptography and httpx (the JWKS fetch) load only for a policy that accepts
        # bearer tokens: ~12 MB of RSS every other process does without (issue 17).
        from proxy.auth.jwks import JwksFile, JwksUrl
        from proxy.auth.jwt_verifier import JwtVerifier

        j = cfg.jwt
        source: JwksFile | JwksUrl
        if j.jwks_file is not None:
            jwks_path = (base / j.jwks_file).resolve()
            jwks_file: JwksFile = deps.resource(f"auth:jwks-file:{jwks_path}", lambda: JwksFile(jwks_path))
            jwks_file.load_now()
            source = jwks_file
        else:
            url = j.jwks_url or ""
            digest = hashlib.sha256(url.encode()).hexdigest()[:16]
            key = f"auth:jwks-url:{digest}:{j.refresh_seconds}:{j.min_refresh_seconds}:{j.timeout_seconds}"
            source = deps.resource(
                key, lambda: JwksUrl(url, j.refresh_seconds, j.min_refresh_seconds, j.timeout_seconds)
            )
        verifier = JwtVerifier(j, source, cfg.check_interval)
    return Authenticator(cfg, keys, verifier)
