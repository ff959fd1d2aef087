"""The ``policy-sidecar test`` command: resolve files, run, print, write JUnit XML, exit code.

Exit status: 0 when every case passed, 1 when any case failed, 2 when a case file or a policy
could not be loaded (so CI tells "the policy regressed" from "the test setup is broken").
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from proxy.errors import ConfigError
from proxy.policytest.cases import case_file_schema, load_cases
from proxy.policytest.runner import CaseResult, run


@dataclass
class Suite:
    """The results of one case file against one policy."""

    cases_file: Path
    policy: Path
    results: list[CaseResult]

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if not r.ok)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("test", help="run a policy's golden cases (policy unit tests); non-zero on failure")
    p.add_argument("cases", type=Path, nargs="*", help="case files (YAML), or directories of them")
    p.add_argument("--policy", type=Path, help="policy YAML (default: each case file's 'policy:')")
    p.add_argument("--junit", type=Path, help="also write a JUnit XML report here (for CI)")
    p.add_argument("-q", "--quiet", action="store_true", help="print failures and the summary only")
    p.add_argument("--schema", action="store_true", help="print the JSON Schema of case files and exit")


def _case_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            files.append(path)
    return files


def _policy_for(cases_file: Path, declared: str | None, override: Path | None) -> Path:
    if override is not None:
        return override
    if declared is None:
        raise ConfigError("no policy: give --policy, or 'policy:' in the case file", location=str(cases_file))
    return (cases_file.parent / declared).resolve()


def junit_xml(suites: list[Suite]) -> bytes:
    root = ET.Element("testsuites")
    for suite in suites:
        el = ET.SubElement(
            root,
            "testsuite",
            name=str(suite.cases_file),
            tests=str(len(suite.results)),
            failures=str(suite.failed),
            errors="0",
            time=f"{sum(r.seconds for r in suite.results):.3f}",
        )
        ET.SubElement(ET.SubElement(el, "properties"), "property", name="policy", value=str(suite.policy))
        for result in suite.results:
            case = ET.SubElement(
                el,
                "testcase",
                classname=suite.cases_file.stem,
                name=result.name,
                time=f"{result.seconds:.3f}",
            )
            if result.failures:
                failure = ET.SubElement(case, "failure", message=result.failures[0][:500])
                failure.text = "\n".join(result.failures)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def main(args: argparse.Namespace) -> int:
    # The sidecar logs policy loads and decisions; a test run prints its own report instead.
    logging.getLogger("policy_sidecar").setLevel(logging.ERROR)
    if args.schema:
        print(json.dumps(case_file_schema(), indent=2))
        return 0
    suites: list[Suite] = []
    try:
        files = _case_files(args.cases)
        if not args.cases:
            raise ConfigError("give case files or directories (policies/tests), or --schema")
        if not files:
            raise ConfigError("no case files found", location=" ".join(map(str, args.cases)))
        loaded = [(f, load_cases(f)) for f in files]  # every file is validated before any run
        for path, case_file in loaded:
            policy = _policy_for(path, case_file.policy, args.policy)
            suites.append(Suite(path, policy, run(policy, case_file.cases)))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for suite in suites:
        if not args.quiet:
            print(f"{suite.cases_file} (policy {suite.policy})")
        for r in suite.results:
            if r.ok and not args.quiet:
                print(f"  ok    {r.name} ({r.runs} runs)")
            elif not r.ok:
                print(f"  FAIL  {r.name} ({r.runs} runs)")
                for line in r.failures:
                    print(f"        {line}")
    total = sum(len(s.results) for s in suites)
    failed = sum(s.failed for s in suites)
    print(f"{total - failed} passed, {failed} failed")
    if args.junit is not None:
        args.junit.write_bytes(junit_xml(suites))
    return 1 if failed else 0
