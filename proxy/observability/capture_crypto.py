"""Sealing captured text: AES-256-GCM from ``cryptography``, the key from the environment.

Why AES-GCM with the record id as associated data: the text of one record cannot be moved
into another record (its id is authenticated), tampering is detected, and the review page can
open a record in the browser with WebCrypto's AES-GCM (same algorithm, same ``ct || tag``
layout) so the sidecar never has to serve clear text. Each record has a fresh random 96-bit
nonce; at the capture volumes this is built for (a sample of traffic, bounded by ``max_mb``)
nonce reuse under one key is not a practical risk, and keys should be rotated anyway.

``kid`` is a short fingerprint of the key (not secret for a random 256-bit key) so a reader with
the wrong key gets "sealed with key X, yours is Y" instead of a bare authentication failure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from typing import Any

import orjson

from proxy.errors import ConfigError

# ``cryptography`` is imported by the functions that seal and open records, not here: every
# sidecar imports this module (captures are per policy), and only one that seals pays its RSS
# (issue 17).

ALG = "A256GCM"
KEY_BYTES = 32
NONCE_BYTES = 12
DEFAULT_KEY_ENV = "SIDECAR_CAPTURE_KEY"


def new_key() -> str:
    """A fresh key, base64, for ``SIDECAR_CAPTURE_KEY`` (``policy-sidecar review key``)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


def parse_key(text: str, where: str = "key") -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where} is not base64 (make one with: policy-sidecar review key)") from None
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{where} must decode to {KEY_BYTES} bytes, got {len(key)}")
    return key


def load_key(env: str = DEFAULT_KEY_ENV, environ: Mapping[str, str] | None = None) -> bytes:
    """The key in environment variable ``env``; ConfigError saying what is wrong otherwise."""
    value = (os.environ if environ is None else environ).get(env)
    if not value:
        raise ConfigError(f"capture key: environment variable {env} is not set")
    return parse_key(value, f"capture key in {env}")


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"policy-sidecar capture kid\0" + key).hexdigest()[:12]


def seal(
    key: bytes, record_id: str, payload: dict[str, Any], key_env: str = DEFAULT_KEY_ENV
) -> dict[str, Any]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(NONCE_BYTES)
    data = AESGCM(key).encrypt(nonce, orjson.dumps(payload), record_id.encode())
    return {
        "alg": ALG,
        "kid": key_id(key),
        "key_env": key_env,
        "nonce": base64.b64encode(nonce).decode(),
        "data": base64.b64encode(data).decode(),
    }


def unseal(key: bytes, record_id: str, sealed: Mapping[str, Any]) -> dict[str, Any]:
    """The payload of a sealed record; ConfigError for a wrong key, a tampered or foreign record."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if sealed.get("alg") != ALG:
        raise ConfigError(f"record {record_id}: unknown sealing algorithm {sealed.get('alg')!r}")
    kid = key_id(key)
    if sealed.get("kid") not in (None, kid):
        raise ConfigError(
            f"record {record_id} was sealed with key {sealed.get('kid')}, the key given is {kid}: wrong key"
        )
    try:
        nonce = base64.b64decode(str(sealed["nonce"]), validate=True)
        data = base64.b64decode(str(sealed["data"]), validate=True)
        clear = AESGCM(key).decrypt(nonce, data, record_id.encode())
    except (KeyError, binascii.Error, ValueError):
        raise ConfigError(f"record {record_id}: malformed sealed text") from None
    except InvalidTag:
        raise ConfigError(
            f"record {record_id}: cannot decrypt (wrong key, or the record was altered)"
        ) from None
    payload = orjson.loads(clear)
    if not isinstance(payload, dict):
        raise ConfigError(f"record {record_id}: sealed text is not an object")
    return payload
