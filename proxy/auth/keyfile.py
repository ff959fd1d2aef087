"""API keys from a file: only SHA-256 hashes are stored, never a key itself.

File format (YAML or JSON)::

    keys:
      - id: billing-service          # stable name: budgets' api_key part, decision records
        sha256: 5e884898da28...      # hex SHA-256 of the whole key (policy-sidecar keys new)
        tenant: acme
        user: billing                # optional
        models: ["gpt-4o*"]          # optional globs; default: every model
        routes: [chat.completions]   # optional; default: every route
        expires: 2027-01-01T00:00:00Z  # optional; a date alone means midnight UTC
        budget: {per-tenant: 500}    # optional: budget limit name -> amount for this key
        disabled: false

A lookup hashes the presented key and finds it in a dict: one SHA-256 of a short string and
one dict access per request.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from proxy.auth.caller import Caller, compile_globs
from proxy.auth.config import check_routes
from proxy.auth.filewatch import WatchedFile
from proxy.chain.identity import Identity


def hash_key(key: str) -> str:
    """The hex SHA-256 stored in the keys file for ``key``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyEntry(BaseModel):
    """One API key as listed in the keys file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9._:@/-]{1,128}$", description="stable, unique name of the key")
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$", description="hex SHA-256 of the key")
    tenant: str = Field(min_length=1)
    user: str | None = None
    models: tuple[str, ...] | None = None
    routes: tuple[str, ...] | None = None
    expires: datetime.datetime | None = None
    budget: dict[str, float] = Field(default_factory=dict, description="budget limit name -> amount")
    disabled: bool = False

    @field_validator("expires", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
            return datetime.datetime(value.year, value.month, value.day, tzinfo=datetime.UTC)
        return value

    @field_validator("budget")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        for name, amount in value.items():
            if amount <= 0:
                raise ValueError(f"budget override {name!r} must be > 0")
        return value

    @model_validator(mode="after")
    def _check(self) -> KeyEntry:
        check_routes(self.routes, f"key {self.id!r}: routes")
        return self

    def caller(self) -> Caller:
        expires = None
        if self.expires is not None:
            when = self.expires if self.expires.tzinfo else self.expires.replace(tzinfo=datetime.UTC)
            expires = when.timestamp()
        identity = Identity("key", self.id, self.tenant, self.user, MappingProxyType(dict(self.budget)))
        routes = frozenset(self.routes) if self.routes is not None else None
        return Caller(identity, compile_globs(self.models), routes, expires)


class KeysDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    keys: tuple[KeyEntry, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> KeysDocument:
        ids: set[str] = set()
        hashes: set[str] = set()
        for entry in self.keys:
            if entry.id in ids:
                raise ValueError(f"key id {entry.id!r} is listed twice")
            if entry.sha256.lower() in hashes:
                raise ValueError(f"key {entry.id!r}: the same sha256 is listed twice")
            ids.add(entry.id)
            hashes.add(entry.sha256.lower())
        return self


def first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


class KeyStore(WatchedFile):
    """The keys of one file, by hash; shared across policy revisions (a ``Resources`` entry)."""

    kind = "keys file"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._by_hash: dict[str, Caller] = {}
        self.count = 0

    def parse(self, text: str) -> dict[str, Caller]:
        try:
            data = json.loads(text) if self.path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ValueError(f"not valid {'JSON' if self.path.suffix == '.json' else 'YAML'}: {exc}") from exc
        try:
            doc = KeysDocument.model_validate(data if data is not None else {})
        except ValidationError as exc:
            raise ValueError(first_error(exc)) from exc
        return {e.sha256.lower(): e.caller() for e in doc.keys if not e.disabled}

    def install(self, parsed: dict[str, Caller]) -> None:
        self._by_hash = parsed  # one reference swap: readers see the old or the new dict
        self.count = len(parsed)

    def lookup(self, key: str) -> Caller | None:
        return self._by_hash.get(hash_key(key))

    def status(self) -> dict[str, Any]:
        return {**super().status(), "keys": self.count}
