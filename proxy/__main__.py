"""The ``policy-sidecar`` command (also ``python -m proxy``).

serve --policy PATH [--host H] [--port N] [--admin-port N]   run the sidecar
demo [--port N]                                              sidecar + built-in demo upstream
check [--coverage] [--json] PATH                             validate and compile a policy; warnings;
                                                             --coverage: which steps cover each surface
schema                                                       JSON Schema of the policy format
fake-upstream [--port N]                                     the scriptable fake provider
replay --policy P [--baseline B] TRAFFIC.jsonl               what a policy would do to recorded traffic
calibrate --policy P [--target-fpr F] [--html R] LABELLED.jsonl|CAPTURE_DIR   threshold sweep
review export|import|key --capture DIR [...]                 label captured traffic elsewhere
keys new|hash --id ID --tenant T [...]                       API key entries for a clients: keys file
test CASES.yaml|DIR [--policy P] [--junit FILE]              policy unit tests: golden cases, in-process
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec

from proxy.cli_examples import add_examples
from proxy.settings import Settings, default_policy_path

P = ParamSpec("P")


def _serve_args(p: argparse.ArgumentParser, with_policy: bool) -> None:
    if with_policy:
        p.add_argument("--policy", type=Path, help="policy YAML (env SIDECAR_POLICY; default: embedded)")
    p.add_argument("--host", help="bind address (env SIDECAR_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="API port (env SIDECAR_PORT, default 8080)")
    p.add_argument("--admin-host", help="admin bind address (env SIDECAR_ADMIN_HOST)")
    p.add_argument(
        "--admin-port", type=int, help="serve admin routes on this port only (env SIDECAR_ADMIN_PORT)"
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="env SIDECAR_LOG_LEVEL")
    p.add_argument(
        "--drain-delay", type=float, help="SIGTERM: seconds not ready before closing (SIDECAR_DRAIN_DELAY)"
    )
    p.add_argument(
        "--grace-seconds", type=float, help="SIGTERM: time for in-flight requests (SIDECAR_GRACE_SECONDS)"
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        help="seconds a client may take to send a request's headers or body, else 408; 0 = none "
        "(env SIDECAR_BODY_TIMEOUT, default 30)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        help="open client connections beyond this get 503; 0 = no cap "
        "(env SIDECAR_MAX_CONNECTIONS, default 1000)",
    )
    p.add_argument("--no-watch", action="store_true", help="do not reload when the policy file changes")


def _settings(args: argparse.Namespace) -> Settings:
    s = Settings.from_env()  # may raise ConfigError (a malformed SIDECAR_* value)
    if getattr(args, "policy", None):
        s.policy_path = args.policy
    names = ("host", "port", "admin_host", "admin_port", "log_level", "drain_delay", "grace_seconds")
    for name in (*names, "body_timeout", "max_connections"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(s, name, value)
    if args.no_watch:
        s.watch = False
    return s


def _check(path: Path, show_coverage: bool = False, as_json: bool = False) -> int:
    import logging

    from proxy.chain.registry import default_registry
    from proxy.chain.secrets import placeholders_for_missing_env
    from proxy.errors import ConfigError
    from proxy.policy.store import PolicyStore

    # The store logs warnings for servers; here they are printed once, below.
    logging.getLogger("policy_sidecar").addHandler(logging.NullHandler())
    store = PolicyStore(path, default_registry())
    try:
        # Unset ${ENV} secrets are checked with placeholders (and listed): `serve` still needs them.
        with placeholders_for_missing_env() as missing_env:
            compiled = store.load_initial()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for warning in compiled.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    steps = ", ".join(f"{s.id} ({s.mode})" for s in compiled.chain.steps) or "no plugins"
    if show_coverage:
        from proxy.policy.coverage import coverage, render

        rows = coverage(compiled)
        if as_json:
            print(json.dumps([r.as_dict() for r in rows], indent=2))
            return 0
        print(f"ok: {path} revision {compiled.revision}: {steps}")
        print(render(rows))
        return 0
    print(f"ok: {path} revision {compiled.revision}: {steps}")
    if missing_env:
        print(
            f"needs: {', '.join(missing_env)} (not set here, checked with placeholders; "
            "`serve` fails until they are set)"
        )
    return 0


def _schema() -> int:
    from proxy.chain.registry import default_registry
    from proxy.policy.schema import build_policy_model

    print(json.dumps(build_policy_model(default_registry()).model_json_schema(), indent=2))
    return 0


def _replay(args: argparse.Namespace) -> int:
    from proxy.errors import ConfigError
    from proxy.observability import replay

    try:
        report = replay.run(args.policy, args.traffic, args.baseline, as_configured=args.as_configured)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.as_dict(), indent=2) if args.json else replay.format_report(report))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from proxy.errors import ConfigError
    from proxy.observability import calibrate

    try:
        result = calibrate.run(args.policy, args.traffic, target_fpr=args.target_fpr, step=args.step)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result.as_dict(), indent=2) if args.json else result.text(), flush=True)
    if args.html is not None:
        from proxy.observability.calibrate_report import render

        args.html.write_text(render(result), encoding="utf-8")
        print(f"report: {args.html}", file=sys.stderr)
    return 0


def _offline_args(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = sub.add_parser(
        "replay", help="run a policy over recorded traffic, offline; compare to a baseline"
    )
    replay.add_argument("--policy", type=Path, required=True, help="candidate policy YAML")
    replay.add_argument("--baseline", type=Path, help="current policy YAML to compare with")
    replay.add_argument(
        "--as-configured",
        action="store_true",
        help="keep the policies' modes (default: every step in shadow)",
    )
    replay.add_argument("--json", action="store_true", help="print the report as JSON")
    replay.add_argument("traffic", type=Path, help="JSONL of recorded requests (and responses)")
    cal = sub.add_parser("calibrate", help="sweep thresholds of score-based rules over labelled traffic")
    cal.add_argument("--policy", type=Path, required=True, help="policy YAML whose rules are calibrated")
    cal.add_argument("--target-fpr", type=float, default=0.01, help="false-positive rate to suggest for")
    cal.add_argument("--step", type=float, default=0.1, help="threshold step of the printed sweep")
    cal.add_argument("--html", type=Path, help="also write an HTML report with plots here")
    cal.add_argument("--json", action="store_true", help="print the result as JSON")
    cal.add_argument(
        "traffic", type=Path, help="JSONL of labelled requests, or an observability.capture directory"
    )


def _quiet_broken_pipe(main: Callable[P, int]) -> Callable[P, int]:
    """`policy-sidecar schema | head`: the reader leaving early is normal, not a traceback.

    Python ignores SIGPIPE, so a write to a closed pipe raises BrokenPipeError (possibly only at
    the final flush). Stop quietly with the shell's SIGPIPE status, pointing stdout at /dev/null so
    the interpreter's own flush at exit does not raise again (the Python documentation's recipe).
    """

    @functools.wraps(main)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            code = main(*args, **kwargs)
            sys.stdout.flush()
            return code
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 141  # 128 + SIGPIPE, what `head` callers see from any other tool

    return wrapper


@_quiet_broken_pipe
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="policy-sidecar", description="LLM policy sidecar")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_args(sub.add_parser("serve", help="run the sidecar"), with_policy=True)
    _serve_args(
        sub.add_parser("demo", help="run on the embedded default policy and demo upstream"), with_policy=False
    )
    check = sub.add_parser("check", help="validate and compile a policy file")
    check.add_argument("path", type=Path)
    check.add_argument(
        "--coverage", action="store_true", help="print which steps apply to each surface, and the gaps"
    )
    check.add_argument("--json", action="store_true", help="with --coverage: print the report as JSON")
    sub.add_parser("schema", help="print the policy JSON Schema")
    fake = sub.add_parser("fake-upstream", help="run the scriptable fake OpenAI-compatible upstream")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=9100)
    _offline_args(sub)
    from proxy.auth import cli as keys_cli

    keys_cli.add_parser(sub)
    from proxy.observability import review_cli

    review_cli.add_parser(sub)
    from proxy.policytest import report as policy_tests

    policy_tests.add_parser(sub)
    add_examples(sub)
    args = parser.parse_args(argv)

    if args.command == "keys":
        return keys_cli.run(args)
    if args.command == "review":
        return review_cli.run(args)

    if args.command == "test":
        return policy_tests.main(args)
    if args.command == "check":
        return _check(args.path, args.coverage, args.json)
    if args.command == "schema":
        return _schema()
    if args.command == "replay":
        return _replay(args)
    if args.command == "calibrate":
        return _calibrate(args)
    if args.command == "fake-upstream":
        from proxy.demo.fake_upstream import serve_fake_upstream

        print(f"fake upstream on http://{args.host}:{args.port}/v1", file=sys.stderr)
        serve_fake_upstream(args.host, args.port)
        return 0

    from proxy.errors import ConfigError
    from proxy.server import BindError, run

    try:
        settings = _settings(args)
        if args.command == "demo":
            settings.policy_path = default_policy_path()
        run(settings)
    except (ConfigError, BindError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
