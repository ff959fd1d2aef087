"""The injection detector's optional compiled kernel (``_injection_kernel.c``), or None.

Why one place: the indirect path, the views and the decoders each take a compiled shortcut when
the kernel is built and their Python reference otherwise (same results); the import, and the one
start-up warning when it is missing, live here (tests/unit/test_injection_kernel.py fails when it
is missing, so a build that silently lost the fast path is noticed).
"""

from __future__ import annotations

import logging

try:  # built by setup.py when a C compiler is there
    from . import _injection_kernel as kernel
except ImportError:  # pragma: no cover - exercised only on installs without a compiler
    kernel = None  # type: ignore[assignment]
    logging.getLogger(__name__).warning(
        "compiled injection kernel not built (no C compiler at install time?): the injection "
        "detector uses its Python implementations: same results, ~40 µs more per 2 KB text"
    )

__all__ = ["kernel"]
