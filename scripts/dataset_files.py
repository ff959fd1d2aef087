"""Reading the shared evaluation datasets (``../shared/datasets``), for the training scripts.

Why one module: the trainers, the threshold tuner and the leave-one-source-out sources all read
the same JSONL files the same way (gzip or not, blank lines skipped), find the datasets in the
same place (beside the repository, or beside the worktrees' parent directory), and give rows
without a ``group`` one that keeps near-copies on one side of a split. Keeping that here means
a dataset moved or re-encoded is fixed once. Nothing here copies data into the repository.

Not named ``datasets``: the scripts' folder goes first on ``sys.path``, and that name would hide
the Hugging Face package.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: Beside the worktrees' parent (``<root>/wt/<branch>`` -> ``<root>/shared``), else the usual place.
DATA = REPO.parent.parent / "shared" / "datasets"
if not DATA.exists():
    DATA = Path("/work/shared/datasets")

#: (text, label, group): label 1 = attack / unsafe request, 0 = benign.
Row = tuple[str, int, str]


def jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a ``.jsonl`` or ``.jsonl.gz`` file, blank lines skipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def text_hash(text: str) -> str:
    """A row's own group when its source has none: exact copies still land together."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def read_rows(path: Path, keep: Callable[[dict[str, Any]], bool] | None = None) -> list[Row]:
    """``text`` / ``label`` records as rows; the group is ``group``, else ``category``, else the line."""
    out = []
    for n, d in enumerate(jsonl(path)):
        if keep is None or keep(d):
            group = d.get("group") or d.get("category") or str(n)
            out.append((d["text"], int(d["label"]), str(group)))
    return out


def data_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser titled by the script's docstring, with ``--data-dir`` (default ``DATA``)."""
    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DATA)
    return ap


def missing(data_dir: Path, marker: str) -> bool:
    """True (and says so on stderr) when ``data_dir/marker`` is absent: the datasets are not here."""
    if (data_dir / marker).exists():
        return False
    print(f"dataset not found under {data_dir}", file=sys.stderr)
    return True
