"""Bearer JWT verification (PyJWT), for ``clients: jwt:``; imported only by policies that use it.

Kept apart from :mod:`proxy.auth.authenticator` so that PyJWT, cryptography and httpx (the
JWKS fetch) stay out of processes whose policy accepts no bearer tokens (issue 17: RSS).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import jwt

from proxy.auth.caller import Caller, compile_globs
from proxy.auth.config import JwtConfig
from proxy.auth.jwks import JwksFile, JwksUrl
from proxy.chain.identity import Identity
from proxy.errors import Unauthenticated

_CACHE_SIZE = 10_000


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


_JWT_ERRORS: tuple[tuple[type[Exception], str, str], ...] = (
    (jwt.ExpiredSignatureError, "token_expired", "The bearer token has expired."),
    (jwt.ImmatureSignatureError, "token_not_yet_valid", "The bearer token is not valid yet."),
    (jwt.InvalidAudienceError, "invalid_audience", "The bearer token is not meant for this service."),
    (jwt.InvalidIssuerError, "invalid_issuer", "The bearer token comes from an untrusted issuer."),
    (jwt.MissingRequiredClaimError, "missing_claim", "The bearer token lacks a required claim."),
    (jwt.InvalidSignatureError, "invalid_signature", "The bearer token could not be verified."),
    (jwt.InvalidAlgorithmError, "invalid_algorithm", "The bearer token's algorithm is not accepted."),
)


class JwtVerifier:
    """Verifies bearer JWTs with PyJWT; never decodes a token it has not verified."""

    def __init__(self, cfg: JwtConfig, source: JwksFile | JwksUrl, interval: float) -> None:
        self.cfg = cfg
        self.source = source
        self._interval = interval
        self._models = compile_globs(cfg.models)
        self._routes = frozenset(cfg.routes) if cfg.routes is not None else None
        self._audience = list(cfg.audience) if isinstance(cfg.audience, tuple) else cfg.audience
        self._cache: dict[str, tuple[Caller, float, int]] = {}

    async def verify(self, token: str) -> Caller:
        await self.source.refresh(self._interval)  # a changed key set invalidates cached tokens
        now = time.time()
        hit = self._cache.get(token)
        if hit is not None and hit[2] == self.source.generation and now < hit[1]:
            return hit[0]
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise Unauthenticated("The bearer token is malformed.", detail="malformed_token") from None
        key = await self.source.key_for(kid if isinstance(kid, str) else None)
        if key is None:
            raise Unauthenticated("The bearer token is signed by an unknown key.", detail="unknown_kid")
        cfg = self.cfg
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(cfg.algorithms),
                audience=self._audience,
                issuer=cfg.issuer,
                leeway=cfg.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            for kind, reason, message in _JWT_ERRORS:
                if isinstance(exc, kind):
                    raise Unauthenticated(message, detail=reason) from None
            raise Unauthenticated("The bearer token is invalid.", detail="invalid_token") from None
        tenant = _claim(claims, cfg.tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise Unauthenticated("The bearer token names no tenant.", detail="missing_tenant")
        user = _claim(claims, cfg.user_claim) if cfg.user_claim else None
        subject = claims.get("sub")
        key_id = f"jwt:{subject}" if isinstance(subject, str) and subject else f"jwt:{tenant}"
        identity = Identity("jwt", key_id, tenant, user if isinstance(user, str) else None)
        expires = float(claims["exp"]) + cfg.leeway
        caller = Caller(identity, self._models, self._routes, expires)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))  # oldest first: dicts keep insertion order
        self._cache[token] = (caller, expires, self.source.generation)
        return caller
