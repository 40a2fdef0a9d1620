"""The plugin registry (pluggy). The public API for plugin authors is ``nexec.plugin``."""
from __future__ import annotations

from nexec.plugins.manager import PluginRecord, Registry, registry, reset_registry

__all__ = ["Registry", "PluginRecord", "registry", "reset_registry", "plugins_info"]


def plugins_info() -> list[dict]:
    """Installed plugins, their versions, what each registers, and any error.

    Example:
        >>> import nexec
        >>> nexec.plugins_info()[0]["name"]
        'nexec.builtin'
    """
    return [{"name": r.name, "version": r.version, "provides": r.provides, "error": r.error}
            for r in registry().plugins.values()]
