"""nexec's own devices, layers, kernels, activations, losses, metrics, optimizers and
initialisers.

Registered through the same hooks as any third-party plugin: there is no private back door.
Only the registry imports this module (by name, when it is first built), so it may import
everything it registers.
"""
from __future__ import annotations

from typing import Any

from nexec.activations import BUILTIN_ACTIVATIONS, Activation
from nexec.devices.base import Device
from nexec.devices.cpu import CpuDevice
from nexec.devices.cuda import CudaDevice
from nexec.initializers import BUILTIN_INITIALIZERS
from nexec.layers.conv import Conv2D
from nexec.layers.core import Activation as ActivationLayer
from nexec.layers.core import Dense, Flatten, InputLayer
from nexec.layers.merge import Add, Concatenate
from nexec.layers.recurrent import GRU, LSTM, Bidirectional, SimpleRNN, TimeDistributed
from nexec.ops import builtin as core_ops
from nexec.ops import recurrent as recurrent_ops
from nexec.plugins.hookspecs import hookimpl
from nexec.training.losses import BUILTIN_LOSSES
from nexec.training.metrics import BUILTIN_METRICS
from nexec.training.optimizers import BUILTIN_OPTIMIZERS

#: nexec's layer types, and the op-kernel classes that run them (one instance per device;
#: each family of layers has its module in ``nexec/layers/`` and ``nexec/ops/``).
LAYERS: list[type] = [InputLayer, Dense, Conv2D, Concatenate, Add, ActivationLayer, Flatten]
LAYERS += [SimpleRNN, LSTM, GRU, Bidirectional, TimeDistributed]
OP_KERNEL_CLASSES: list[type] = [*core_ops.OP_KERNEL_CLASSES]
OP_KERNEL_CLASSES += [*recurrent_ops.OP_KERNEL_CLASSES]


@hookimpl
def nexec_layers() -> list[type]:
    return list(LAYERS)


_devices: list[Device] = []


def _builtin_devices() -> list[Device]:
    """One CPU and one CUDA device per process (they keep streams and compiled kernels)."""
    if not _devices:
        _devices.extend([CpuDevice(), CudaDevice()])
    return _devices


@hookimpl
def nexec_devices() -> list[Any]:
    return list(_builtin_devices())


@hookimpl
def nexec_kernels() -> list[Any]:
    # An op kernel class with ``cpu_only`` has kernel functions on the CPU only so far.
    return [cls(device) for device in _builtin_devices() for cls in OP_KERNEL_CLASSES
            if device.name == "cpu" or not getattr(cls, "cpu_only", False)]


@hookimpl
def nexec_activations() -> list[Activation]:
    return list(BUILTIN_ACTIVATIONS)


@hookimpl
def nexec_metrics() -> list[Any]:
    return list(BUILTIN_METRICS)


@hookimpl
def nexec_losses() -> list[Any]:
    return list(BUILTIN_LOSSES)


@hookimpl
def nexec_optimizers() -> dict[str, type]:
    return dict(BUILTIN_OPTIMIZERS)


@hookimpl
def nexec_initializers() -> dict[str, Any]:
    return dict(BUILTIN_INITIALIZERS)
