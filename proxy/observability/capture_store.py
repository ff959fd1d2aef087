"""The capture store on disk: a directory of JSONL segments plus an append-only ``labels.jsonl``.

Why append-only labels beside the records instead of rewriting records: segments are written by
the sidecar's capture thread while reviewers label; appending one line per label never races a
writer, keeps the history of who changed their mind, and the reader simply lets the last label
of a (record, rule) win. Records whose segment expired (TTL, size cap) drop their labels too.

Layout::

    DIR/capture-<unix ms>.jsonl   records, one per line (``capture.py``), oldest segment first
    DIR/labels.jsonl              {"id", "labels": {"<plugin>/<rule>": bool}, "label"?, "reviewer"?, "ts"}
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from proxy.errors import ConfigError, InvalidRequest

PREFIX, SUFFIX = "capture-", ".jsonl"
LABELS = "labels.jsonl"
MAX_LABEL_CHARS = 64


def segments(root: Path) -> list[Path]:
    """Segments, oldest first (names sort by creation time)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith(PREFIX) and p.name.endswith(SUFFIX))


def append(root: Path, line: bytes, segment_bytes: int) -> Path:
    """Append one record line to the newest segment, or to a new one past ``segment_bytes``."""
    root.mkdir(parents=True, exist_ok=True)
    existing = segments(root)
    target = existing[-1] if existing else None
    if target is None or target.stat().st_size + len(line) + 1 > segment_bytes:
        stamp = int(time.time() * 1000)
        if target is not None and target.name >= f"{PREFIX}{stamp:015d}{SUFFIX}":
            stamp = int(target.name[len(PREFIX) : -len(SUFFIX)]) + 1  # same millisecond: stay ordered
        target = root / f"{PREFIX}{stamp:015d}{SUFFIX}"
    with open(target, "ab") as fh:
        fh.write(line + b"\n")
    return target


def prune(root: Path, max_bytes: int, ttl_seconds: float, now: float | None = None) -> list[Path]:
    """Delete segments older than the TTL, then the oldest while the store exceeds ``max_bytes``
    (the newest segment is kept while it alone is under the cap). Returns what was deleted."""
    now = time.time() if now is None else now
    files = segments(root)
    gone = []
    for path in files[:]:
        if now - path.stat().st_mtime > ttl_seconds:
            path.unlink(missing_ok=True)
            files.remove(path)
            gone.append(path)
    total = sum(p.stat().st_size for p in files)
    while files and total > max_bytes:
        oldest = files.pop(0)
        total -= oldest.stat().st_size
        oldest.unlink(missing_ok=True)
        gone.append(oldest)
    return gone


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # pruned while we listed
        return
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a line cut by a crash mid-write: skipped, the rest of the store still reads
        if isinstance(raw, dict):
            yield n, raw


def read_records(root: Path) -> list[dict[str, Any]]:
    """Every record in the store, oldest first."""
    return [raw for path in segments(root) for _, raw in _lines(path)]


def read_labels(root: Path) -> dict[str, dict[str, Any]]:
    """Per record id, the merged labels: ``{"labels": {rule: bool}, "label": str | None}``."""
    out: dict[str, dict[str, Any]] = {}
    for _, event in _lines(root / LABELS):
        rid = event.get("id")
        if not isinstance(rid, str):
            continue
        merged = out.setdefault(rid, {"labels": {}, "label": None})
        labels = event.get("labels")
        if isinstance(labels, dict):
            merged["labels"].update({str(k): bool(v) for k, v in labels.items()})
        if isinstance(event.get("label"), str):
            merged["label"] = event["label"]
    return out


def labelled_records(root: Path) -> list[dict[str, Any]]:
    """Records with their merged ``label`` / ``labels`` applied (what replay and calibrate read)."""
    labels = read_labels(root)
    out = []
    for raw in read_records(root):
        found = labels.get(str(raw.get("id")))
        if found is not None:
            raw = {**raw, "labels": {**(raw.get("labels") or {}), **found["labels"]}}
            if found["label"] is not None:
                raw["label"] = found["label"]
        out.append(raw)
    return out


def check_label_event(event: Any, known: set[str] | None = None) -> dict[str, Any]:
    """A label event from the review page or ``review import``; InvalidRequest says what is wrong."""
    if not isinstance(event, Mapping):
        raise InvalidRequest("Each label must be a JSON object with an id.", param="id")
    rid = event.get("id")
    if not isinstance(rid, str) or not rid:
        raise InvalidRequest("A label needs the captured record's id (a string).", param="id")
    if known is not None and rid not in known:
        raise InvalidRequest(f"No captured record has id {rid!r}.", param="id", code="unknown_record")
    labels = event.get("labels", {})
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and 0 < len(k) <= MAX_LABEL_CHARS * 2 and isinstance(v, bool)
        for k, v in labels.items()
    ):
        raise InvalidRequest("'labels' must map '<plugin>/<rule>' to true or false.", param="labels")
    label = event.get("label")
    if label is not None and (not isinstance(label, str) or not 0 < len(label) <= MAX_LABEL_CHARS):
        raise InvalidRequest("'label' must be a short string (attack, benign, a category).", param="label")
    if not labels and label is None:
        raise InvalidRequest("A label event needs 'labels' or 'label'.", param="labels")
    reviewer = event.get("reviewer")
    out: dict[str, Any] = {"id": rid, "labels": dict(labels), "ts": round(time.time(), 3)}
    if label is not None:
        out["label"] = label
    if isinstance(reviewer, str) and reviewer:
        out["reviewer"] = reviewer[:MAX_LABEL_CHARS]
    return out


def append_labels(root: Path, events: list[dict[str, Any]]) -> int:
    """Append checked label events in one write (``O_APPEND``: concurrent writers do not interleave)."""
    if not events:
        return 0
    root.mkdir(parents=True, exist_ok=True)
    data = b"".join(orjson.dumps(e) + b"\n" for e in events)
    fd = os.open(root / LABELS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return len(events)


def opened(raw: dict[str, Any], key: bytes | None) -> dict[str, Any]:
    """A record with its sealed text opened (``request`` / ``response`` restored); needs the key."""
    sealed = raw.get("sealed")
    if not isinstance(sealed, dict):
        return raw
    from proxy.observability import capture_crypto

    if key is None:
        key = capture_crypto.load_key(str(sealed.get("key_env") or capture_crypto.DEFAULT_KEY_ENV))
    payload = capture_crypto.unseal(key, str(raw.get("id")), sealed)
    out = {k: v for k, v in raw.items() if k != "sealed"}
    out.update(payload)
    return out


def require_store(root: Path) -> None:
    if not root.is_dir():
        raise ConfigError(f"capture store {root} is not a directory", location=str(root))
