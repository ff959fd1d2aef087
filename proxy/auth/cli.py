"""``policy-sidecar keys new|hash``: make keys-file entries without ever storing a key.

``new`` draws a random key, prints it once on stderr (hand it to the client) and the entry on
stdout, indented to append to a keys file whose last section is ``keys:``::

    policy-sidecar keys new --id billing --tenant acme >> keys.yaml

``hash`` reads an existing key from stdin (never from the command line, where shell history
and process lists would keep it) and prints its entry the same way.
"""

from __future__ import annotations

import argparse
import datetime
import json
import secrets
import sys
from typing import Any

import yaml
from pydantic import ValidationError

from proxy.auth.authenticator import looks_like_jwt
from proxy.auth.keyfile import KeyEntry, first_error, hash_key

KEY_PREFIX = "sk-sc-"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="make API key entries for a clients: keys file")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    for name, text in (
        ("new", "generate a key: the key goes to stderr (once), its entry to stdout"),
        ("hash", "read a key from stdin and print its entry"),
    ):
        p = actions.add_parser(name, help=text)
        p.add_argument("--id", required=True, help="stable name of the key (budgets, records)")
        p.add_argument("--tenant", required=True)
        p.add_argument("--user")
        p.add_argument("--model", action="append", dest="models", help="allowed model glob (repeatable)")
        p.add_argument("--route", action="append", dest="routes", help="allowed route (repeatable)")
        p.add_argument("--expires", help="ISO date or date-time, e.g. 2027-01-01 (UTC)")
        p.add_argument(
            "--budget", action="append", default=[], metavar="LIMIT=AMOUNT", help="budget override"
        )
        p.add_argument("--json", action="store_true", help="print the entry as JSON instead of YAML")


def _entry(args: argparse.Namespace, key: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": args.id, "sha256": hash_key(key), "tenant": args.tenant}
    if args.user:
        entry["user"] = args.user
    if args.models:
        entry["models"] = args.models
    if args.routes:
        entry["routes"] = args.routes
    if args.expires:
        entry["expires"] = args.expires
    budget: dict[str, float] = {}
    for item in args.budget:
        name, sep, amount = item.partition("=")
        if not sep:
            raise ValueError(f"--budget {item!r}: use LIMIT=AMOUNT")
        budget[name.strip()] = float(amount)
    if budget:
        entry["budget"] = budget
    KeyEntry.model_validate(entry)  # the same checks the sidecar makes when it loads the file
    return entry


def run(args: argparse.Namespace) -> int:
    if args.keys_command == "new":
        key = KEY_PREFIX + secrets.token_urlsafe(32)
    else:
        key = sys.stdin.readline().strip()
        if not key:
            print("error: give the key on stdin", file=sys.stderr)
            return 1
        if looks_like_jwt(key) or any(c.isspace() for c in key):
            print("error: a key must not contain spaces or look like a JWT (a.b.c)", file=sys.stderr)
            return 1
    try:
        if args.expires:
            datetime.datetime.fromisoformat(args.expires.replace("Z", "+00:00"))
        entry = _entry(args, key)
    except ValidationError as exc:
        print(f"error: {first_error(exc)}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.keys_command == "new":
        print(f"key (shown once, give it to the client): {key}", file=sys.stderr)
    if args.json:
        print(json.dumps(entry))
    else:
        text = yaml.safe_dump([entry], sort_keys=False, default_flow_style=None)
        print("".join("  " + line for line in text.splitlines(keepends=True)), end="")
    return 0
