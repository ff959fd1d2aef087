"""Fixtures shared by the end-to-end tests: ``redis_server`` (a real redis-server on loopback)."""

from tests.redis_support import redis_server  # noqa: F401 (a fixture, found by name)
