"""The public plugin API: everything a third-party package needs, and nothing internal.

A plugin is a module (or object) with ``@hookimpl`` functions, declared in its
``pyproject.toml`` under the entry-point group ``nexec``::

    [project.entry-points.nexec]
    pooling = "nexec_pooling.plugin"

See ``docs/plugins.md`` for a walk-through.
"""
from __future__ import annotations

from nexec.errors import PluginError, ShapeError
from nexec.layers.base import Layer, ParamSpec
from nexec.plugins.hookspecs import hookimpl, hookspec

__all__ = ["API_VERSION", "compatible", "hookimpl", "hookspec", "Layer", "ParamSpec",
           "ShapeError", "PluginError"]

#: Major.minor of the plugin API. A plugin sets ``NEXEC_API_VERSION = "1.0"`` in its module;
#: a different major version is refused with a clear error.
API_VERSION = "1.0"


def compatible(version: str) -> bool:
    """Whether a plugin written for API ``version`` works with this nexec."""
    return str(version).split(".")[0] == API_VERSION.split(".")[0]
