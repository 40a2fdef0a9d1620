"""The registry: a pluggy manager, the built-ins, and every installed plugin.

Entry points of the group ``nexec`` are loaded one by one (not with pluggy's
``load_setuptools_entrypoints``, which stops at the first that fails to import), so a broken
package is reported by name and the others keep working. ``NEXEC_DISABLE_PLUGIN_AUTOLOAD=1``
skips discovery, as pytest's ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` does.

The registry sits low in the package: it imports nothing of nexec but ``errors``, the hook
specifications and ``activations``, and it checks contributions by what they can do (a layer
type is a class with ``compute_output_shape``, ``param_specs`` and ``get_config``), not by
importing the classes they extend. The one edge upwards is nexec's own built-in plugin, which
it imports by name when the registry is first built.
"""
from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable

import pluggy

from nexec.activations import BUILTIN_ACTIVATIONS, Activation
from nexec.errors import PluginError, PluginWarning
from nexec.plugins.hookspecs import API_VERSION, PROJECT, NexecSpec, compatible

__all__ = ["Registry", "registry", "reset_registry", "PluginRecord"]

BUILTIN = "nexec.builtin"
_SINGULAR = {"layers": "layer", "kernels": "kernel", "activations": "activation",
             "losses": "loss", "metrics": "metric", "optimizers": "optimizer",
             "initializers": "initializer", "devices": "device",
             "onnx_exporters": "ONNX exporter"}
_LAYER_METHODS = ("compute_output_shape", "param_specs", "get_config")
_KERNEL_ATTRIBUTES = ("layer_type", "device", "forward", "backward")
#: The fused-kernel codes an activation given as ``{name: code}`` may use.
_CODES = frozenset(a.code for a in BUILTIN_ACTIVATIONS)


@dataclass
class PluginRecord:
    """What one plugin is and what it registered (``nexec.plugins_info()``)."""

    name: str
    version: str = ""
    provides: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None


class Registry:
    """Every layer type, kernel, activation, loss, metric, optimizer, initialiser and device
    by name."""

    KINDS = ("layers", "kernels", "activations", "losses", "metrics", "optimizers",
             "initializers", "devices", "onnx_exporters")

    def __init__(self, autoload: bool | None = None) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(NexecSpec)
        self.layers: dict[str, type] = {}
        self.kernels: dict[tuple[str, str], Any] = {}
        self.activations: dict[str, Activation] = {}
        self.losses: dict[str, Any] = {}
        self.metrics: dict[str, Any] = {}
        self.optimizers: dict[str, type] = {}
        self.initializers: dict[str, Any] = {}
        self.devices: dict[str, Any] = {}
        #: ONNX exporters by layer class name (``nexec.export.onnx``).
        self.onnx_exporters: dict[str, Callable] = {}
        self.owner: dict[tuple[str, Any], str] = {}
        self.plugins: dict[str, PluginRecord] = {}
        # The registry's one import upwards (tests/test_imports.py sanctions it): nexec's own
        # plugin, by name, so that importing the registry imports no layer, op or kernel.
        builtin = importlib.import_module("nexec.plugins.builtin")
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
            contributions = {kind: self._collect(plugin, kind) for kind in self.KINDS}
        except _HookResultError as e:
            self.pm.unregister(plugin)
            return self._fail(name, version, str(e))
        except Exception as e:  # noqa: BLE001
            self.pm.unregister(plugin)
            return self._fail(name, version, f"raised while registering "
                                             f"({type(e).__name__}: {e})")
        for kind, items in contributions.items():
            for key, value in items:
                self._add(record, kind, key, value)
        return record

    def _collect(self, plugin: Any, kind: str) -> list[tuple[Any, Any]]:
        """``plugin``'s contributions of one kind, through pluggy's own hook call restricted
        to that plugin, so that each contribution is attributed to the plugin making it."""
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        results = self.pm.subset_hook_caller(f"nexec_{kind}", remove_plugins=others)()
        if not results:  # the plugin does not implement this hook
            return []
        result = results[0]
        _check_hook_result(kind, result)
        if kind in ("activations", "optimizers", "initializers") and isinstance(result, dict):
            return list(result.items())
        if kind == "onnx_exporters":  # keyed by layer class or class name: the name is the key
            return [(key.__name__ if isinstance(key, type) else key, value)
                    for key, value in dict(result).items()]
        if kind == "layers":
            return [(getattr(cls, "__name__", repr(cls)), cls) for cls in result]
        if kind == "kernels":
            return [((getattr(k, "layer_type", "?"), getattr(k, "device", "?")), k)
                    for k in result]
        if kind in ("losses", "metrics", "devices", "activations"):
            return [(getattr(item, "name", repr(item)), item) for item in result]
        return list(dict(result).items())

    def _add(self, record: PluginRecord, kind: str, key: Any, value: Any) -> None:
        shown = "/".join(map(str, key)) if kind == "kernels" else repr(key)
        problem = None
        if key in getattr(self, kind):
            problem = (f"which plugin '{self.owner[(kind, key)]}' already registered; the "
                       "second one is ignored")
        elif kind == "layers":
            if not (isinstance(value, type)
                    and all(callable(getattr(value, m, None)) for m in _LAYER_METHODS)):
                problem = ("which is not a layer type (a class with "
                           f"{', '.join(_LAYER_METHODS)})")
        elif kind == "kernels":
            if isinstance(value, type):
                problem = "which is a class; register an instance"
            elif not all(hasattr(value, a) for a in _KERNEL_ATTRIBUTES) or not (
                    callable(value.forward) and callable(value.backward)):
                problem = ("which is not an op kernel (an instance with "
                           f"{', '.join(_KERNEL_ATTRIBUTES)})")
        elif kind == "activations":
            value, problem = _activation(key, value)
        elif kind == "onnx_exporters":
            if not isinstance(key, str) or not key:
                problem = "whose key is not a layer class or class name"
            elif not callable(value):
                problem = ("which is not callable (an exporter is a function "
                           "(builder, layer, inputs) -> output names)")
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

    def activation(self, name: str) -> Activation:
        return self._lookup("activations", name)

    def loss(self, name: str) -> Any:
        return self._lookup("losses", name)

    def metric(self, name: str) -> Any:
        return self._lookup("metrics", name)

    def optimizer(self, name: str) -> type:
        return self._lookup("optimizers", name)

    def initializer(self, name: str) -> Callable:
        return self._lookup("initializers", name)

    def device(self, name: str) -> Any:
        return self._lookup("devices", name)

    def onnx_exporter(self, layer_type: str) -> Callable | None:
        """The ONNX exporter registered for a layer class name, or None."""
        return self.onnx_exporters.get(layer_type)

    def _lookup(self, kind: str, name: str) -> Any:
        table = getattr(self, kind)
        if name not in table:
            raise ValueError(f"Unknown {_SINGULAR[kind]} {name!r}; "
                             f"known: {', '.join(sorted(table))}.")
        return table[name]


class _HookResultError(TypeError):
    """A hook returned something other than its documented container."""


#: What each hook returns: the containers accepted and how the message describes it.
_HOOK_RESULTS: dict[str, tuple[tuple[type, ...], str]] = {
    "layers": ((list, tuple), "a list of layer classes"),
    "kernels": ((list, tuple), "a list of op kernel instances"),
    "activations": ((list, tuple, dict), "a list of Activation values or a dict of names to "
                                         "fused codes"),
    "losses": ((list, tuple), "a list of nexec.plugin.Loss instances"),
    "metrics": ((list, tuple), "a list of nexec.plugin.Metric instances"),
    "devices": ((list, tuple), "a list of nexec.devices.Device instances"),
    "optimizers": ((dict,), "a dict of names to optimizer classes"),
    "initializers": ((dict,), "a dict of names to initialiser functions"),
    "onnx_exporters": ((dict,), "a dict of layer classes (or names) to exporter functions"),
}


def _check_hook_result(kind: str, result: Any) -> None:
    """Raises :class:`_HookResultError` naming the hook when ``result`` is not the container
    it must return (each item is checked by ``Registry._add``)."""
    accepted, described = _HOOK_RESULTS[kind]
    if not isinstance(result, accepted):
        raise _HookResultError(f"hook nexec_{kind} returned {type(result).__name__} "
                               f"{result!r:.80}; it must return {described}")


def _activation(name: Any, value: Any) -> tuple[Any, str | None]:
    """An activation contribution as an :class:`Activation`, or why it is refused.

    ``value`` is an ``Activation``, or (the plugin API 1.0 form ``{name: code}``) the code of
    a built-in fused activation.
    """
    if isinstance(value, Activation):
        if value.name != name:
            return None, f"whose Activation is named {value.name!r}"
        return value, None
    if isinstance(value, int) and not isinstance(value, bool):
        if value not in _CODES:
            return None, (f"whose code {value} is not a fused activation code of nexec "
                          f"({', '.join(map(str, sorted(_CODES)))}); give an "
                          "nexec.activations.Activation with forward and derivative instead")
        try:
            return Activation(name, value), None
        except ValueError as e:
            return None, f"which is invalid: {e}"
    return None, (f"which is a {type(value).__name__}, not an nexec.activations.Activation "
                  "nor a fused activation code")


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
