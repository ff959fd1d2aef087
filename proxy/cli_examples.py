"""Examples shown at the end of each ``policy-sidecar SUBCOMMAND --help`` page.

Kept out of ``proxy/__main__.py`` so the argument definitions stay readable, and attached after
the parsers are built (:func:`add_examples`), so a new subcommand without examples fails
``tests/unit/test_cli_help.py`` instead of shipping a help page that only lists flags. Every
command here must run as written from a checkout (the test parses each one with the real parser).
"""

from __future__ import annotations

import argparse

EXAMPLES: dict[str, str] = {
    "serve": """\
  # a real provider; the policy holds the key (${OPENAI_API_KEY} in policies/openai.yaml)
  OPENAI_API_KEY=sk-... policy-sidecar serve --policy policies/openai.yaml --port 8080

  # admin routes (reload, live page, metrics) on a loopback-only port, reload with a token
  SIDECAR_ADMIN_TOKEN=secret policy-sidecar serve --policy policies/strict.yaml --admin-port 9090

  # Kubernetes-style shutdown: 5 s not ready before closing, 25 s for in-flight streams
  policy-sidecar serve --policy policies/default.yaml --host 0.0.0.0 --drain-delay 5 --grace-seconds 25
""",
    "demo": """\
  # the embedded default policy and the built-in demo upstream: nothing else to run
  policy-sidecar demo --port 8080

  # then, with pip install -e '.[demo]':
  #   openai.OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="anything")
""",
    "check": """\
  # validate and compile; exit 1 with file:line:col on an error
  policy-sidecar check policies/strict.yaml

  # secrets that are not set here (${OPENAI_API_KEY}) are checked with placeholders and listed
  policy-sidecar check policies/openai.yaml
""",
    "schema": """\
  # the JSON Schema editors use to validate policy files (policies/policy.schema.json)
  policy-sidecar schema > policy.schema.json
  policy-sidecar schema | head -20
""",
    "fake-upstream": """\
  # an OpenAI-compatible fake provider; script replies with the x-fake-scenario header
  policy-sidecar fake-upstream --port 9100
  curl -s http://127.0.0.1:9100/v1/chat/completions -H 'x-fake-scenario: {"status": 429}' \\
      -d '{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
""",
    "replay": """\
  # what a candidate policy would do to recorded traffic, against the current one
  policy-sidecar replay --policy examples/calibration/candidate.yaml \\
      --baseline examples/calibration/baseline.yaml examples/calibration/traffic.jsonl

  # keep the policy's own modes (default: every step runs in shadow), JSON output
  policy-sidecar replay --policy examples/calibration/candidate.yaml --as-configured --json \\
      examples/calibration/traffic.jsonl
""",
    "calibrate": """\
  # threshold sweep on labelled traffic, suggested threshold for a 5% false-positive rate
  policy-sidecar calibrate --policy examples/calibration/candidate.yaml --target-fpr 0.05 \\
      --html /tmp/calibration.html examples/calibration/traffic_labelled.jsonl

  # straight from the capture store (observability.capture.dir), labels from the review page
  policy-sidecar calibrate --policy policies/default.yaml --target-fpr 0.01 /var/lib/sidecar/capture
""",
    "review": """\
  # a key for observability.capture text: encrypted (keep it in a secret store)
  policy-sidecar review key

  # label elsewhere: export the captured records, add "label"/"labels" per line, import them back
  policy-sidecar review export --capture /var/lib/sidecar/capture --unlabelled --out /tmp/to-label.jsonl
  policy-sidecar review import --capture /var/lib/sidecar/capture --reviewer ana \
      examples/calibration/review_labels.jsonl
""",
    "test": """\
  # every example policy's golden cases (each case file names its policy); what CI runs
  policy-sidecar test policies/tests

  # one case file against a candidate policy, JUnit XML for the CI's test report
  policy-sidecar test policies/tests/pii.yaml --policy policies/pii.yaml --junit policy-tests.xml
""",
    "keys": """\
  # a new key for a clients: keys file: the key is printed once on stderr, the entry on
  # stdout (append it to the keys file under keys:)
  policy-sidecar keys new --id billing --tenant acme --model 'gpt-4o*'

  # the entry for a key you already have: type or pipe the key on stdin (never an argument)
  policy-sidecar keys hash --id legacy --tenant acme --expires 2027-01-01
""",
}


def add_examples(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Give every subcommand's ``--help`` an "examples:" section (verbatim, not re-wrapped)."""
    for name, parser in subparsers.choices.items():
        examples = EXAMPLES.get(name)
        if examples is None:
            continue  # the unit test fails for a subcommand without examples
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.epilog = "examples:\n" + examples
