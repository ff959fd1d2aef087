"""tldextract as the tests' reference for ``proxy.detectors.pii.public_suffix``.

The engine no longer imports tldextract (see ``public_suffix``); it stays installed (presidio
depends on it), and these tests hold the replacement to it: the same snapshot, never fetched."""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def offline_tldextract() -> Any:
    """tldextract over the suffix list bundled in the wheel: never fetched, never cached to disk
    (what the engine called before ``public_suffix``)."""
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)
