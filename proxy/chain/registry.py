"""Plugin registry: built-ins and third-party plugins, found through one entry-point group.

One source of truth: the ``[project.entry-points."policy_sidecar.plugins"]`` table in
``pyproject.toml``. Built-ins are registered there exactly like a third party's plugins, and
the registry reads them back from the installed package metadata (``importlib.metadata``); there
is no second list in the code to keep in step (issue 24). What makes an entry point *built-in*
is the distribution that declares it (``policy-sidecar``): a built-in that fails to import is
a broken installation and raises, a third party's broken plugin is logged and skipped.

Why not a list in code: a third-party plugin must go through the entry points anyway, so the
built-ins going the same way proves that path on every start; and a code list would be a
second copy of the pyproject table. The cost is that the sidecar must be *installed*
(``pip install -e .`` in a checkout), which ``default_registry`` says plainly when it is not.
After adding a built-in to ``pyproject.toml``, re-run ``pip install -e .`` so the metadata
has it; ``tests/unit/test_registry.py`` fails with that hint when the two differ.
"""

from __future__ import annotations

import logging
import re
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from proxy.chain.plugin import Plugin

log = logging.getLogger("policy_sidecar.registry")

ENTRY_POINT_GROUP = "policy_sidecar.plugins"
DISTRIBUTION = "policy-sidecar"  # the package whose entry points are the built-ins


class NotInstalled(RuntimeError):
    """The built-in plugins' entry points are missing: the package is not installed."""


PluginClass = type[Plugin[Any]]


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


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503: policy_sidecar == policy-sidecar


def is_builtin(ep: EntryPoint) -> bool:
    """Declared by this package (not a third party's distribution)."""
    return ep.dist is not None and _normalise(ep.dist.name) == DISTRIBUTION


def builtin_entry_points() -> list[EntryPoint]:
    """The built-ins as the installed metadata declares them; a clear error if there are none."""
    points = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if is_builtin(ep)]
    if not points:
        raise NotInstalled(
            f"no built-in plugins found: the {DISTRIBUTION!r} package is not installed, so its "
            f"{ENTRY_POINT_GROUP!r} entry points are missing. Install it (`pip install -e .` in a "
            "source checkout, `pip install policy-sidecar` otherwise) and start again."
        )
    return points


def default_registry() -> Registry:
    """Built-ins plus every installed third-party entry point; a broken third-party plugin is logged.

    A built-in that fails to load raises: that is a broken installation, not a plugin to skip.
    """
    registry = Registry()
    for ep in builtin_entry_points():
        registry.register(ep.load())
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if is_builtin(ep):
            continue
        try:
            registry.register(ep.load())
        except Exception:
            log.exception("could not load plugin entry point %s = %s", ep.name, ep.value)
    return registry
