"""``policy-sidecar review export|import|key``: the review page's work for teams that label elsewhere.

``export`` writes the capture store as the JSONL ``replay`` and ``calibrate`` read (labels merged),
to label in a spreadsheet or a labelling tool; sealed records stay sealed unless ``--decrypt``
(which needs the key and writes clear text: handle that file accordingly). ``import`` appends
the ``label`` / ``labels`` of each line to the store's ``labels.jsonl``, all or nothing: one bad
line (unknown id, wrong type) and nothing is appended, with ``file:line`` saying why.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from proxy.errors import ConfigError, ProxyError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    review = sub.add_parser("review", help="export captured records for labelling, import labels")
    actions = review.add_subparsers(dest="review_command", required=True)
    export = actions.add_parser("export", help="the capture store as replay/calibrate JSONL (labels merged)")
    export.add_argument("--capture", type=Path, required=True, help="observability.capture.dir")
    export.add_argument("--out", type=Path, help="write here instead of stdout")
    export.add_argument("--unlabelled", action="store_true", help="only records without a label yet")
    export.add_argument(
        "--decrypt", action="store_true", help="open sealed records (SIDECAR_CAPTURE_KEY): clear text"
    )
    imp = actions.add_parser("import", help="append the label/labels of each JSONL line to the store")
    imp.add_argument("--capture", type=Path, required=True, help="observability.capture.dir")
    imp.add_argument("--reviewer", help="recorded with each label")
    imp.add_argument("labels", type=Path, help="JSONL: {id, label?, labels?} per line (an export works)")
    actions.add_parser("key", help="print a new base64 AES-256 key for SIDECAR_CAPTURE_KEY")


def run(args: argparse.Namespace) -> int:
    try:
        if args.review_command == "key":
            from proxy.observability.capture_crypto import new_key

            print(new_key())
            return 0
        if args.review_command == "export":
            return _export(args.capture, args.out, args.unlabelled, args.decrypt)
        return _import(args.capture, args.labels, args.reviewer)
    except ProxyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _export(root: Path, out: Path | None, unlabelled: bool, decrypt: bool) -> int:
    from proxy.observability import capture_store

    capture_store.require_store(root)
    lines = []
    for raw in capture_store.labelled_records(root):
        if unlabelled and (raw.get("label") is not None or raw.get("labels")):
            continue
        lines.append(orjson.dumps(capture_store.opened(raw, None) if decrypt else raw))
    data = b"".join(line + b"\n" for line in lines)
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        out.write_bytes(data)
    print(f"exported {len(lines)} records", file=sys.stderr)
    return 0


def _import(root: Path, path: Path, reviewer: str | None) -> int:
    from proxy.observability import capture_store

    capture_store.require_store(root)
    known = {str(r.get("id")) for r in capture_store.read_records(root)}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read labels: {exc}", location=str(path)) from exc
    events = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            raw: Any = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"not JSON: {exc}", location=f"{path}:{n}") from None
        if isinstance(raw, dict) and raw.get("label") is None and not raw.get("labels"):
            continue  # an exported record nobody labelled
        if isinstance(raw, dict):
            raw = {k: raw[k] for k in ("id", "label", "labels") if k in raw}
            if reviewer:
                raw["reviewer"] = reviewer
        try:
            events.append(capture_store.check_label_event(raw, known))
        except ProxyError as exc:
            raise ConfigError(exc.message, location=f"{path}:{n}") from None
    n = capture_store.append_labels(root, events)
    print(f"imported {n} labels into {root / capture_store.LABELS}", file=sys.stderr)
    return 0
