"""Reading the detectors' packaged model files: one ``.npz`` with ``weights`` and a JSON ``meta``.

``allow_pickle=False``: a model file is data, never code, whoever replaced it.
"""

from __future__ import annotations

import io
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt


def read_model(
    package: str, filename: str, path: Path | None = None
) -> tuple[npt.NDArray[Any], dict[str, Any]]:
    """(weights, meta) from ``path``, or from the file shipped inside ``package``."""
    data = path.read_bytes() if path is not None else resources.files(package).joinpath(filename).read_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        weights = npz["weights"]
        meta: dict[str, Any] = json.loads(npz["meta"].tobytes().decode("utf-8"))
    return weights, meta
