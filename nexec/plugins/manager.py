"""The registry: a pluggy manager, the built-ins, and every installed plugin.

Entry points of the group ``nexec`` are loaded one by one (not with pluggy's
``load_setuptools_entrypoints``, which stops at the first that fails to import), so a broken
package is reported by name and the others keep working. ``NEXEC_DISABLE_PLUGIN_AUTOLOAD=1``
skips discovery, as pytest's ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` does.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable

import pluggy

from nexec.errors import PluginError, PluginWarning
from nexec.plugins.hookspecs import PROJECT, NexecSpec

__all__ = ["Registry", "registry", "reset_registry", "PluginRecord"]

BUILTIN = "nexec.builtin"
_SINGULAR = {"layers": "layer", "kernels": "kernel", "activations": "activation",
             "losses": "loss", "optimizers": "optimizer", "initializers": "initializer",
             "metrics": "metric", "devices": "device"}


@dataclass
class PluginRecord:
    """What one plugin is and what it registered (``nexec.plugins_info()``)."""

    name: str
    version: str = ""
    provides: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None


class Registry:
    """Every layer type, kernel, activation, loss, optimizer and initialiser by name."""

    KINDS = ("layers", "kernels", "activations", "losses", "metrics", "optimizers",
             "initializers", "devices")

    def __init__(self, autoload: bool | None = None) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(NexecSpec)
        self.layers: dict[str, type] = {}
        self.kernels: dict[tuple[str, str], Any] = {}
        self.activations: dict[str, Any] = {}
        self.metrics: dict[str, Any] = {}
        self.devices: dict[str, Any] = {}
        self.losses: dict[str, Any] = {}
        self.optimizers: dict[str, type] = {}
        self.initializers: dict[str, Any] = {}
        self.owner: dict[tuple[str, Any], str] = {}
        self.plugins: dict[str, PluginRecord] = {}
        from nexec.plugins import builtin

        self.register(builtin, BUILTIN, version=_version("nexec"))
        if autoload is None:
            autoload = not os.environ.get("NEXEC_DISABLE_PLUGIN_AUTOLOAD")
        if autoload:
            self.load_entry_points()

    # ----- loading ------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        for ep in metadata.entry_points(group=PROJECT):
            dist = ep.dist.name if ep.dist is not None else ep.name
            version = ep.dist.version if ep.dist is not None else ""
            name = f"{dist}:{ep.name}" if dist != ep.name else ep.name
            if name in self.plugins:
                continue
            try:
                plugin = ep.load()
            except Exception as e:  # noqa: BLE001 - any import failure is the plugin's fault
                self._fail(name, version, f"failed to import ({type(e).__name__}: {e})")
                continue
            self.register(plugin, name, version)

    def register(self, plugin: Any, name: str, version: str = "") -> PluginRecord:
        """Registers a plugin object or module and collects what it contributes.

        Failures and conflicts are recorded on the plugin's record and warned about; they do
        not stop other plugins. Use :meth:`check` to turn them into an exception.
        """
        from nexec.plugin import API_VERSION, compatible

        wanted = getattr(plugin, "NEXEC_API_VERSION", API_VERSION)
        if not compatible(wanted):
            return self._fail(name, version, f"is built for nexec plugin API {wanted}, "
                                             f"this nexec provides {API_VERSION}")
        try:
            self.pm.register(plugin, name=name)
        except Exception as e:  # noqa: BLE001 - pluggy validation errors of the plugin
            return self._fail(name, version, f"cannot be registered: {e}")
        record = PluginRecord(name, version)
        self.plugins[name] = record
        try:
            contributions = {kind: self._call(plugin, kind) for kind in self.KINDS}
        except Exception as e:  # noqa: BLE001
            self.pm.unregister(plugin)
            return self._fail(name, version, f"raised while registering "
                                             f"({type(e).__name__}: {e})")
        for kind, items in contributions.items():
            for key, value in items:
                self._add(record, kind, key, value)
        return record

    def _call(self, plugin: Any, kind: str) -> list[tuple[Any, Any]]:
        impl = getattr(plugin, f"nexec_{kind}", None)
        if impl is None:
            return []
        result = impl() or []
        if kind == "layers":
            return [(cls.__name__, cls) for cls in result]
        if kind == "kernels":
            return [((k.layer_type, k.device), k) for k in result]
        if kind in ("losses", "metrics", "devices"):
            return [(item.name, item) for item in result]
        if kind == "activations":
            from nexec.activations import Activation

            if isinstance(result, dict):
                return [(n, Activation(n, code)) for n, code in result.items()]
            return [(a.name, a) for a in result]
        return list(dict(result).items())

    def _add(self, record: PluginRecord, kind: str, key: Any, value: Any) -> None:
        shown = "/".join(map(str, key)) if kind == "kernels" else repr(key)
        problem = None
        if key in getattr(self, kind):
            problem = (f"which plugin '{self.owner[(kind, key)]}' already registered; the "
                       "second one is ignored")
        elif kind == "layers":
            from nexec.layers.base import Layer

            if not (isinstance(value, type) and issubclass(value, Layer)):
                problem = "which is not a Layer subclass"
        elif kind == "kernels":
            from nexec.ops.base import Kernel

            if not isinstance(value, Kernel):
                problem = "which is " + ("a class; register an instance" if isinstance(
                    value, type) else "not a nexec.plugin.Kernel instance")
        if problem is not None:
            msg = f"plugin '{record.name}' registers {_SINGULAR[kind]} {shown}, {problem}."
            record.error = msg if record.error is None else f"{record.error}; {msg}"
            warnings.warn(msg, PluginWarning, stacklevel=3)
            return
        getattr(self, kind)[key] = value
        self.owner[(kind, key)] = record.name
        record.provides.setdefault(kind, []).append(key if kind != "kernels" else shown)

    def _fail(self, name: str, version: str, why: str) -> PluginRecord:
        record = PluginRecord(name, version, error=f"plugin '{name}' {why}")
        self.plugins[name] = record
        warnings.warn(record.error or "", PluginWarning, stacklevel=3)
        return record

    def check(self) -> None:
        """Raises :class:`PluginError` listing every plugin that failed or conflicted."""
        errors = [r.error for r in self.plugins.values() if r.error]
        if errors:
            raise PluginError("; ".join(e for e in errors if e))

    # ----- lookups ------------------------------------------------------------------------
    def layer(self, name: str) -> type:
        return self._lookup("layers", name)

    def kernel(self, layer_type: str, device: str) -> Any:
        key = (layer_type, device)
        if key not in self.kernels:
            have = sorted(d for (t, d) in self.kernels if t == layer_type)
            owner = self.owner.get(("layers", layer_type), "an unknown plugin")
            raise PluginError(f"Layer type '{layer_type}' (from plugin '{owner}') has no kernel "
                              f"for device '{device}'"
                              + (f"; it has kernels for: {', '.join(have)}." if have else "."))
        return self.kernels[key]

    def activation(self, name: str) -> Any:
        return self._lookup("activations", name)

    def metric(self, name: str) -> Any:
        return self._lookup("metrics", name)

    def device(self, name: str) -> Any:
        return self._lookup("devices", name)

    def loss(self, name: str) -> Any:
        return self._lookup("losses", name)

    def optimizer(self, name: str) -> type:
        return self._lookup("optimizers", name)

    def initializer(self, name: str) -> Callable:
        return self._lookup("initializers", name)

    def _lookup(self, kind: str, name: str) -> Any:
        table = getattr(self, kind)
        if name not in table:
            raise ValueError(f"Unknown {_SINGULAR[kind]} {name!r}; "
                             f"known: {', '.join(sorted(table))}.")
        return table[name]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


_registry: Registry | None = None
_building = False


def registry() -> Registry:
    """The process-wide registry, built on first use (no work at import time)."""
    global _registry, _building
    if _registry is None:
        if _building:  # a plugin hook looked something up while registering: no recursion
            raise PluginError("nexec's registry was used while it was being built; a plugin "
                              "must not look up layers, losses... when it registers.")
        _building = True
        try:
            _registry = Registry()
        finally:
            _building = False
    return _registry


def reset_registry(autoload: bool | None = None) -> Registry:
    """Rebuilds the registry, e.g. after installing a plugin in a running process."""
    global _registry
    _registry = Registry(autoload=autoload)
    return _registry
