"""nexec's own devices, layers, kernels, activations, losses, metrics, optimizers and
initialisers.

Registered through the same hooks as any third-party plugin: there is no private back door.
"""
from __future__ import annotations

from typing import Any

from nexec.plugins.hookspecs import hookimpl


@hookimpl
def nexec_layers() -> list[type]:
    from nexec.layers.conv import Conv2D
    from nexec.layers.core import Activation, Dense, Flatten, InputLayer
    from nexec.layers.merge import Add, Concatenate

    return [InputLayer, Dense, Conv2D, Concatenate, Add, Activation, Flatten]


_devices: list[Any] = []


def _builtin_devices() -> list[Any]:
    """One CPU and one CUDA device per process (they keep streams and compiled kernels)."""
    if not _devices:
        from nexec.devices.cpu import CpuDevice
        from nexec.devices.cuda import CudaDevice

        _devices.extend([CpuDevice(), CudaDevice()])
    return _devices


@hookimpl
def nexec_devices() -> list[Any]:
    return list(_builtin_devices())


@hookimpl
def nexec_kernels() -> list[Any]:
    from nexec.ops.builtin import builtin_kernels

    return builtin_kernels(_builtin_devices())


@hookimpl
def nexec_activations() -> list[Any]:
    from nexec.activations import BUILTIN_ACTIVATIONS

    return list(BUILTIN_ACTIVATIONS)


@hookimpl
def nexec_metrics() -> list[Any]:
    from nexec.training.metrics import BUILTIN_METRICS

    return list(BUILTIN_METRICS)


@hookimpl
def nexec_losses() -> list[Any]:
    from nexec.training.losses import BUILTIN_LOSSES

    return list(BUILTIN_LOSSES)


@hookimpl
def nexec_optimizers() -> dict[str, type]:
    from nexec.training.optimizers import BUILTIN_OPTIMIZERS

    return dict(BUILTIN_OPTIMIZERS)


@hookimpl
def nexec_initializers() -> dict[str, Any]:
    from nexec.initializers import BUILTIN_INITIALIZERS

    return dict(BUILTIN_INITIALIZERS)
