"""Every ``policy-sidecar SUBCOMMAND --help`` ends with examples that work (issue 22, item 10).

The examples live in ``proxy/cli_examples.py``; this test fails for a subcommand without any, and
parses each example command with that subcommand's real parser, so a renamed flag or a moved file
cannot leave a stale example behind.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

import proxy.__main__ as cli
from proxy import cli_examples

ROOT = Path(__file__).resolve().parents[2]


def _subparsers(monkeypatch: pytest.MonkeyPatch) -> dict[str, argparse.ArgumentParser]:
    """The subcommand parsers exactly as ``main`` builds them (captured when examples are attached)."""
    captured: dict[str, Any] = {}
    original = cli.add_examples

    def spy(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        captured["sub"] = sub
        original(sub)

    monkeypatch.setattr(cli, "add_examples", spy)
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    choices: dict[str, argparse.ArgumentParser] = captured["sub"].choices
    return choices


def _commands(examples: str) -> list[str]:
    """The example command lines (continuations joined), without comments and leading VAR=x."""
    text = examples.replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = re.sub(r"^(\w+=\S+\s+)+", "", line)
        if line.startswith("policy-sidecar "):
            out.append(re.split(r"\s[|>]\s", line)[0])
    return out


def test_every_subcommand_has_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    subparsers = _subparsers(monkeypatch)
    assert set(subparsers) == set(cli_examples.EXAMPLES), "add examples for new subcommands (and only those)"


@pytest.mark.parametrize("name", sorted(cli_examples.EXAMPLES))
def test_help_page_shows_the_examples_verbatim(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main([name, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "\nexamples:\n" in out
    # RawDescriptionHelpFormatter: the lines keep their indentation and line breaks.
    for line in cli_examples.EXAMPLES[name].splitlines():
        assert line in out.splitlines()


@pytest.mark.parametrize("name", sorted(cli_examples.EXAMPLES))
def test_each_example_parses_and_names_existing_files(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parser = _subparsers(monkeypatch)[name]
    commands = _commands(cli_examples.EXAMPLES[name])
    assert commands, f"no runnable example for {name}"
    for command in commands:
        args = shlex.split(command)
        assert args[1] == name, command
        parser.parse_args(args[2:])  # exits (fails the test) on an unknown flag or a bad value
        outputs = {args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--html", "--out")}
        for arg in args[2:]:
            if arg.endswith((".yaml", ".jsonl")) and arg not in outputs:
                assert (ROOT / arg).is_file(), f"{command}: {arg} does not exist"
