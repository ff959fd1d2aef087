"""Plugin registry: built-ins and third-party plugins, found through one entry-point group.

Built-ins are registered through the same ``policy_sidecar.plugins`` entry-point group that
third parties use, so there is no central enum to edit. When the package is not installed
(running from a source tree) the built-in modules are imported directly as a fallback.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points
from typing import Any

from proxy.chain.plugin import Plugin

log = logging.getLogger("policy_sidecar.registry")

ENTRY_POINT_GROUP = "policy_sidecar.plugins"
BUILTINS = {
    "blocklist": "plugins.blocklist:BlocklistPlugin",
    "budget": "plugins.budget:BudgetPlugin",
    "bulkhead": "plugins.bulkhead:BulkheadPlugin",
    "circuit_breaker": "plugins.circuit_breaker:CircuitBreakerPlugin",
    "fallback": "plugins.fallback:FallbackPlugin",
    "headers": "plugins.headers:HeadersPlugin",
    "idempotency": "plugins.idempotency:IdempotencyPlugin",
    "cache": "plugins.cache:CachePlugin",
    "moderation": "plugins.moderation:ModerationPlugin",
    "injection": "plugins.injection:InjectionPlugin",
    "pii": "plugins.pii:PiiPlugin",
    "retry": "plugins.retry:RetryPlugin",
    "schema": "plugins.schema:SchemaPlugin",
    "timeout": "plugins.timeout:TimeoutPlugin",
}

PluginClass = type[Plugin[Any]]


def _load(target: str) -> PluginClass:
    module_name, _, attr = target.partition(":")
    cls: PluginClass = getattr(importlib.import_module(module_name), attr)
    return cls


def _type_name(cls: PluginClass) -> str:
    field = cls.Config.model_fields["type"]
    default = field.default
    if not isinstance(default, str):
        raise TypeError(f"{cls.__name__}.Config.type needs a Literal default, e.g. type: Literal['x'] = 'x'")
    return default


class Registry:
    """Maps a plugin ``type`` (the YAML discriminator) to its class."""

    def __init__(self) -> None:
        self._classes: dict[str, PluginClass] = {}

    def register(self, cls: PluginClass) -> PluginClass:
        name = _type_name(cls)
        if cls.needs_full_body and "stream" not in cls.Config.model_fields:
            # Nothing buffers silently: the policy must say what happens on streamed requests.
            raise TypeError(f"{cls.__name__} needs the full body, so its Config needs a `stream` field")
        existing = self._classes.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(
                f"plugin type {name!r} registered twice ({existing.__module__}, {cls.__module__})"
            )
        self._classes[name] = cls
        return cls

    def get(self, name: str) -> PluginClass:
        return self._classes[name]

    def names(self) -> list[str]:
        return sorted(self._classes)

    def classes(self) -> list[PluginClass]:
        return [self._classes[n] for n in self.names()]


def default_registry() -> Registry:
    """Built-ins plus every installed entry point; a broken third-party plugin is logged."""
    registry = Registry()
    for target in BUILTINS.values():
        registry.register(_load(target))
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.value in BUILTINS.values():
            continue
        try:
            registry.register(ep.load())
        except Exception:
            log.exception("could not load plugin entry point %s = %s", ep.name, ep.value)
    return registry
