"""Checked names: every enumerable value a policy can spell (routes, roles, entity types, ...).

A misspelt name in a policy is worse than a syntax error: the rule loads and silently never
applies (``entities: {EMAIL: redact}`` leaves emails in clear; ``routes: [chat.completion]``
never matches). So each such name is checked where it is validated, in one way: the error
lists what was meant (``did you mean 'EMAIL_ADDRESS'?``) and pydantic's error location lets
the loader point at ``file:line:col``.

Lives in ``proxy.chain`` because plugins may import only ``proxy.chain`` / ``proxy.models`` /
``proxy.errors``; the policy loader reuses ``suggest`` for unknown fields.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from pydantic import AfterValidator

from proxy.models.chat import Route

#: ``when.routes`` values: the API operations a request can belong to.
ROUTES: tuple[str, ...] = tuple(r.value for r in Route)
#: Message roles a guard can be told to scan (OpenAI and Anthropic roles, normalised).
ROLES: tuple[str, ...] = ("system", "developer", "user", "assistant", "tool", "function")


def suggest(value: str, allowed: Iterable[str]) -> str:
    """`` (did you mean 'X'?)`` for the closest allowed name, or ``""`` when none is close.

    Case is ignored for the comparison (``email_address`` -> ``EMAIL_ADDRESS``) so a wrong case
    still gets the right suggestion.
    """
    choices = list(allowed)
    by_lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(value.lower(), list(by_lower), n=1, cutoff=0.6)
    if not close:
        # A prefix or a substring (EMAIL -> EMAIL_ADDRESS) is a likely intent even when short.
        close = [c for c in by_lower if value and (c.startswith(value.lower()) or value.lower() in c)][:1]
    return f" (did you mean {by_lower[close[0]]!r}?)" if close else ""


class UnknownName(ValueError):
    """An unknown name; ``value`` lets the loader point at the exact key or item in the YAML.

    ``within``: a path below the validator's own location to look in (a policy-level check
    that names ``("routes", 2)``), so the error lands on the value, not on the whole document.
    """

    def __init__(self, message: str, value: str, within: tuple[int | str, ...] = ()) -> None:
        super().__init__(message)
        self.value = value
        self.within = within


def check_name(value: str, allowed: Iterable[str], what: str) -> str:
    """``value`` when it is one of ``allowed``; else ``UnknownName`` naming the closest and all choices."""
    choices = tuple(allowed)
    if value in choices:
        return value
    known = ", ".join(choices) if len(choices) <= 30 else ", ".join(choices[:30]) + ", ..."
    raise UnknownName(f"unknown {what} {value!r}{suggest(str(value), choices)}; known: {known}", str(value))


def check_reference(value: str, allowed: Iterable[str], what: str, where: tuple[int | str, ...]) -> None:
    """``check_name`` for a name that refers to another part of the policy (an upstream's name)."""
    try:
        check_name(value, allowed, what)
    except UnknownName as exc:
        raise UnknownName(str(exc), exc.value, where) from None


def check_names(values: Iterable[str], allowed: Iterable[str], what: str) -> None:
    """``check_name`` over many values (the first unknown one is reported)."""
    choices = tuple(allowed)
    for value in values:
        check_name(value, choices, what)


def names_validator(allowed: Iterable[str], what: str) -> Callable[[Any], Any]:
    """An ``AfterValidator`` for a tuple / list / dict (its keys) of names from ``allowed``."""
    choices = tuple(allowed)

    def validate(value: Any) -> Any:
        if value is not None:
            check_names(value, choices, what)
        return value

    return validate


def yaml_bool_as(false: str | None = None, true: str | None = None) -> Callable[[Any], Any]:
    """A ``BeforeValidator``: YAML 1.1 reads bare ``off``/``no`` as false, ``on``/``yes`` as true.

    ``mode: off`` is what the README shows; refusing it because YAML saw a boolean would be a
    trap. Map the boolean back to the word the field's Literal uses.
    """

    def validate(value: Any) -> Any:
        if value is False and false is not None:
            return false
        if value is True and true is not None:
            return true
        return value

    return validate


#: A list of message roles, each checked (``roles: [users]`` would scan nothing).
Roles = Annotated[tuple[str, ...], AfterValidator(names_validator(ROLES, "role"))]
