"""Public keys for JWT verification, from a JWKS file or an identity provider's JWKS URL.

Only asymmetric keys are kept (``kty`` RSA or EC; ``oct`` shared secrets and ``use: enc`` keys
are skipped), each bound by PyJWT to its one algorithm, so a token cannot pick a weaker one.

* ``JwksFile``: re-read when the file changes (``WatchedFile``).
* ``JwksUrl``: fetched with httpx on first use, re-fetched every ``refresh_seconds``, and on a
  token whose ``kid`` is unknown (a key rotation at the provider) at most once per
  ``min_refresh_seconds``, so a flood of made-up ``kid`` values cannot hammer the provider.
  A failed re-fetch keeps the keys already known.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx
import jwt

from proxy.auth.filewatch import WatchedFile
from proxy.errors import UpstreamUnavailable

log = logging.getLogger("policy_sidecar.auth")

KeySet = dict[str | None, jwt.PyJWK]


def parse_jwks(data: Any) -> KeySet:
    """``{"keys": [...]}`` -> usable public keys by ``kid``; ValueError when none is usable."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError('a JWKS is a JSON object with a "keys" list')
    keys: KeySet = {}
    for jwk in data["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") not in ("RSA", "EC") or jwk.get("use") == "enc":
            continue
        if "d" in jwk:
            raise ValueError(f"key {jwk.get('kid')!r} is a private key; publish only public keys")
        try:
            keys[jwk.get("kid")] = jwt.PyJWK(jwk)
        except jwt.PyJWTError as exc:
            log.warning("JWKS key %r skipped: %s", jwk.get("kid"), exc)
    if not keys:
        raise ValueError("the JWKS has no usable RSA or EC public key")
    return keys


def pick(keys: KeySet, kid: str | None) -> jwt.PyJWK | None:
    """The key named by ``kid``; without a ``kid``, the only key if there is exactly one."""
    if kid is None:
        return next(iter(keys.values())) if len(keys) == 1 else None
    return keys.get(kid)


class JwksFile(WatchedFile):
    kind = "JWKS file"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.keys: KeySet = {}

    def parse(self, text: str) -> KeySet:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc}") from exc
        return parse_jwks(data)

    def install(self, parsed: KeySet) -> None:
        self.keys = parsed

    async def key_for(self, kid: str | None) -> jwt.PyJWK | None:
        return pick(self.keys, kid)

    def status(self) -> dict[str, Any]:
        return {**super().status(), "keys": len(self.keys)}


class JwksUrl:
    """An identity provider's JWKS endpoint; one per URL, shared across policy revisions."""

    def __init__(self, url: str, refresh_seconds: float, min_refresh_seconds: float, timeout: float) -> None:
        self.url = url
        self.refresh_seconds = refresh_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self.timeout = timeout
        self.keys: KeySet = {}
        self.generation = 0
        self.error: str | None = None
        self.fetched_at: float | None = None
        self._fetched = 0.0  # monotonic time of the last successful fetch
        self._attempted: float | None = None  # monotonic time of the last attempt
        self._lock: asyncio.Lock | None = None
        self._client: httpx.AsyncClient | None = None

    async def refresh(self, interval: float) -> None:
        """Fetch on first use and every ``refresh_seconds`` (``interval`` is for files)."""
        if not self.keys or time.monotonic() - self._fetched >= self.refresh_seconds:
            await self._fetch()

    async def key_for(self, kid: str | None) -> jwt.PyJWK | None:
        key = pick(self.keys, kid)
        if key is None and kid is not None and self.keys:
            await self._fetch()  # maybe the provider rotated its keys
            key = pick(self.keys, kid)
        if not self.keys:
            raise UpstreamUnavailable(
                "Client authentication is unavailable: the identity provider's keys could not be fetched.",
                code="auth_unavailable",
                detail=self.error,
            )
        return key

    async def _fetch(self) -> None:
        """At most one fetch per ``min_refresh_seconds`` (5 s at most while no key is known)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        started = time.monotonic()
        async with self._lock:
            if self._attempted is not None and self._attempted >= started:
                return  # another request fetched while this one waited
            spacing = self.min_refresh_seconds if self.keys else min(self.min_refresh_seconds, 5.0)
            if self._attempted is not None and started - self._attempted < spacing:
                return
            self._attempted = time.monotonic()
            try:
                if self._client is None:
                    self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
                resp = await self._client.get(self.url, headers={"accept": "application/json"})
                resp.raise_for_status()
                keys = parse_jwks(resp.json())
            except (httpx.HTTPError, ValueError) as exc:
                self.error = f"JWKS {self.url}: {exc}"
                log.error("could not fetch the JWKS; keeping %d known keys: %s", len(self.keys), self.error)
                return
            self.keys = keys
            self.generation += 1
            self.error = None
            self._fetched = time.monotonic()
            self.fetched_at = time.time()

    def status(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "fetched_at": self.fetched_at,
            "generation": self.generation,
            "keys": len(self.keys),
            "error": self.error,
        }

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
