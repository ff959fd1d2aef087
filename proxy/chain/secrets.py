"""``Secret``: the one config type where ``${ENV}`` is expanded.

Kept apart from every other field on purpose: the environment may supply credentials, but can
never change what a rule matches. ``${NAME}`` must be set; ``${NAME:-default}`` falls back.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, SecretStr

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any) -> Any:
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ValueError(f"environment variable {name} is not set")

    return _ENV.sub(sub, value)


Secret = Annotated[SecretStr, BeforeValidator(expand_env)]
