"""``cache``: policy-aware response cache (see ``plugin.py``) and the stale answers of ``fallback``."""

from plugins.cache.config import CacheConfig
from plugins.cache.plugin import CachePlugin

__all__ = ["CacheConfig", "CachePlugin"]
