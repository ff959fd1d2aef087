"""Keys the tests make themselves: RSA and EC key pairs, their JWKS, signed tokens, key files."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from proxy.auth.keyfile import hash_key

ISSUER = "https://idp.test"
AUDIENCE = "policy-sidecar"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    def jwk(self) -> dict[str, Any]:
        algo = RSAAlgorithm if self.alg.startswith("RS") else ECAlgorithm
        data: dict[str, Any] = json.loads(algo.to_jwk(self.private.public_key()))
        data.update(kid=self.kid, use="sig", alg=self.alg)
        return data

    def token(self, claims: dict[str, Any] | None = None, *, kid: str | None = None, **over: Any) -> str:
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "user-1",
            "tenant": "acme",
            "iat": now,
            "exp": now + 600,
            **(claims or {}),
        }
        for name, value in over.items():
            if value is None:
                body.pop(name, None)
            else:
                body[name] = value
        return jwt.encode(body, self.private, algorithm=self.alg, headers={"kid": kid or self.kid})


def rsa_key(kid: str = "rsa-1") -> SigningKey:
    return SigningKey(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str = "ec-1") -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [k.jwk() for k in keys]}


def key_entry(key: str, id: str, tenant: str, **fields: Any) -> dict[str, Any]:
    return {"id": id, "sha256": hash_key(key), "tenant": tenant, **fields}


def write_keys(path: Path, *entries: dict[str, Any]) -> None:
    """Atomic replace, as a ConfigMap / Secret update or an editor's save would do."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"keys": list(entries)}, default=str))
    tmp.replace(path)
