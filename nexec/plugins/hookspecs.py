"""The hooks through which nexec and third-party packages contribute, and the API version.

Every hook returns a list (or dict) of contributions; the manager collects them per plugin so
that a conflict or a failure can name the plugin responsible. nexec's own built-ins use these
very hooks (``nexec.plugins.builtin``). This module imports nothing of nexec, so the registry
that uses it sits low in the package.
"""
from __future__ import annotations

from typing import Any

import pluggy

__all__ = ["hookspec", "hookimpl", "NexecSpec", "PROJECT", "API_VERSION", "compatible"]

PROJECT = "nexec"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: Major.minor of the plugin API. A plugin sets ``NEXEC_API_VERSION = "1.1"`` in its module;
#: a different major version is refused with a clear error. 1.1 added devices, metrics,
#: activations from scalar functions and per-device losses; 1.2 added ONNX exporters
#: (``nexec_onnx_exporters``). Every 1.0 plugin still works.
API_VERSION = "1.2"


def compatible(version: str) -> bool:
    """Whether a plugin written for API ``version`` works with this nexec.

    Example:
        >>> compatible("1.3"), compatible("2.0")
        (True, False)
    """
    return str(version).split(".")[0] == API_VERSION.split(".")[0]


class NexecSpec:
    """Hook specifications of the ``nexec`` plugin manager.

    pluggy never runs a specification's body; each returns an empty contribution only so
    that the body agrees with its declared return type.
    """

    @hookspec
    def nexec_layers(self) -> list[type]:
        """Layer classes (subclasses of ``nexec.plugin.Layer``), found by class name."""
        return []

    @hookspec
    def nexec_kernels(self) -> list[Any]:
        """``nexec.plugin.Kernel`` instances: how one layer type runs on one device."""
        return []

    @hookspec
    def nexec_activations(self) -> dict[str, int] | list[Any]:
        """``nexec.activations.Activation`` values, found by name; or (the API 1.0 form) a
        dict of names to the fused-kernel codes of ``nexec.kernels.activations``."""
        return []

    @hookspec
    def nexec_devices(self) -> list[Any]:
        """``nexec.devices.Device`` instances: where kernels run (``"cpu"``, ``"cuda"``)."""
        return []

    @hookspec
    def nexec_metrics(self) -> list[Any]:
        """``nexec.plugin.Metric`` instances, found by name (``"binary_accuracy"``)."""
        return []

    @hookspec
    def nexec_losses(self) -> list[Any]:
        """``nexec.plugin.Loss`` instances, found by name (``"categorical_crossentropy"``)."""
        return []

    @hookspec
    def nexec_optimizers(self) -> dict[str, type]:
        """Optimizer classes by name (``"adam"``)."""
        return {}

    @hookspec
    def nexec_initializers(self) -> dict[str, Any]:
        """Initialisers ``(shape, dtype, rng) -> ndarray`` by name (``"glorot_uniform"``)."""
        return {}

    @hookspec
    def nexec_onnx_exporters(self) -> dict[Any, Any]:
        """How layer types become ONNX nodes (API 1.2): a dict keyed by layer class (or its
        class name) of callables ``exporter(builder, layer, inputs) -> output name(s)``
        (``nexec.export.onnx.OnnxBuilder``; docs/plugins.md, Export to ONNX)."""
        return {}
