"""``Secret``: the one config type where ``${ENV}`` is expanded.

Kept apart from every other field on purpose: the environment may supply credentials, but can
never change what a rule matches. ``${NAME}`` must be set; ``${NAME:-default}`` falls back.

``policy-sidecar check`` validates a policy where the secrets are not available (a laptop, CI):
inside :func:`placeholders_for_missing_env` an unset ``${NAME}`` becomes a placeholder and its name
is collected, so the check can say which variables ``serve`` will need. Outside that block (every
load by ``serve`` and every reload) a missing variable stays a load error.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Annotated, Any

from pydantic import BeforeValidator, SecretStr, ValidationInfo

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


# Names of the unset variables replaced by placeholders; None (the default): no placeholders.
_missing: ContextVar[list[str] | None] = ContextVar("policy_sidecar_missing_env", default=None)


@contextlib.contextmanager
def placeholders_for_missing_env() -> Iterator[list[str]]:
    """Within the block, an unset ``${NAME}`` expands to a placeholder; yields the names (in order)."""
    names: list[str] = []
    token = _missing.set(names)
    try:
        yield names
    finally:
        _missing.reset(token)


def _placeholder(name: str, field: str | None) -> str:
    # A URL field must still parse as one (a Redis client is built at compile time); nothing
    # connects while checking. ``.invalid`` is reserved (RFC 2606): it never resolves.
    if field is not None and field.endswith("_url"):
        return f"redis://{name.lower()}.invalid:6379/0"
    return f"placeholder-for-{name}"


def expand_env(value: Any, field: str | None = None) -> Any:
    """``${NAME}`` / ``${NAME:-default}`` in a string; ``field`` shapes a placeholder (see above)."""
    if not isinstance(value, str):
        return value
    missing = _missing.get()

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        if missing is not None:
            if name not in missing:
                missing.append(name)
            return _placeholder(name, field)
        raise ValueError(f"environment variable {name} is not set")

    return _ENV.sub(sub, value)


def _expand_secret(value: Any, info: ValidationInfo) -> Any:
    # Two positional parameters: pydantic then passes the ValidationInfo (with the field name).
    return expand_env(value, info.field_name)


Secret = Annotated[SecretStr, BeforeValidator(_expand_secret)]
