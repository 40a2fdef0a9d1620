"""nexec's own devices, layers, kernels, activations, losses, metrics, optimizers,
initialisers and ONNX exporters.

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
from nexec.export.onnx_layers import EXPORTERS as ONNX_EXPORTERS
from nexec.initializers import BUILTIN_INITIALIZERS
from nexec.layers.activation import ELU, LeakyReLU, Normalization, PReLU, ReLU, Rescaling, Softmax
from nexec.layers.conv import Conv1D, Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D
from nexec.layers.core import Activation as ActivationLayer
from nexec.layers.core import Dense, Flatten, InputLayer
from nexec.layers.embedding import Embedding
from nexec.layers.merge import Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract
from nexec.layers.normalization import BatchNormalization, LayerNormalization
from nexec.layers.pooling import (
    AveragePooling1D,
    AveragePooling2D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    MaxPooling1D,
    MaxPooling2D,
)
from nexec.layers.recurrent import GRU, LSTM, Bidirectional, SimpleRNN, TimeDistributed
from nexec.layers.regularization import Dropout, GaussianNoise, SpatialDropout1D, SpatialDropout2D
from nexec.layers.reshaping import (
    Cropping2D,
    Permute,
    RepeatVector,
    Reshape,
    UpSampling2D,
    ZeroPadding1D,
    ZeroPadding2D,
)
from nexec.ops import activation as activation_ops
from nexec.ops import builtin as core_ops
from nexec.ops import conv as conv_ops
from nexec.ops import embedding as embedding_ops
from nexec.ops import mask_combine as mask_combine_ops
from nexec.ops import merge as merge_ops
from nexec.ops import normalization as normalization_ops
from nexec.ops import pooling as pooling_ops
from nexec.ops import recurrent as recurrent_ops
from nexec.ops import regularization as regularization_ops
from nexec.ops import reshaping as reshaping_ops
from nexec.plugins.hookspecs import hookimpl
from nexec.training.losses import BUILTIN_LOSSES
from nexec.training.metrics import BUILTIN_METRICS
from nexec.training.optimizers import BUILTIN_OPTIMIZERS

#: nexec's layer types, and the op-kernel classes that run them (one instance per device;
#: each family of layers has its module in ``nexec/layers/`` and ``nexec/ops/``).
LAYERS: list[type] = [InputLayer, Dense, Conv2D, Concatenate, Add, ActivationLayer, Flatten]
LAYERS += [Embedding]
OP_KERNEL_CLASSES: list[type] = [*core_ops.OP_KERNEL_CLASSES]
OP_KERNEL_CLASSES += embedding_ops.OP_KERNEL_CLASSES
LAYERS += [Conv1D, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose]
OP_KERNEL_CLASSES += [*conv_ops.OP_KERNEL_CLASSES]
LAYERS += [Dropout, SpatialDropout1D, SpatialDropout2D, GaussianNoise, BatchNormalization,
           LayerNormalization]
OP_KERNEL_CLASSES += [*regularization_ops.OP_KERNEL_CLASSES, *normalization_ops.OP_KERNEL_CLASSES]
# pooling and shape layers
LAYERS += [MaxPooling1D, MaxPooling2D, AveragePooling1D, AveragePooling2D, GlobalMaxPooling1D,
           GlobalMaxPooling2D, GlobalAveragePooling1D, GlobalAveragePooling2D, Reshape, Permute,
           RepeatVector, UpSampling2D, ZeroPadding1D, ZeroPadding2D, Cropping2D]
OP_KERNEL_CLASSES += [*pooling_ops.OP_KERNEL_CLASSES, *reshaping_ops.OP_KERNEL_CLASSES]
LAYERS += [Subtract, Multiply, Average, Maximum, Minimum, Dot]
OP_KERNEL_CLASSES += merge_ops.OP_KERNEL_CLASSES
LAYERS += [ReLU, LeakyReLU, PReLU, ELU, Softmax, Rescaling, Normalization]
OP_KERNEL_CLASSES += activation_ops.OP_KERNEL_CLASSES
LAYERS += [SimpleRNN, LSTM, GRU, Bidirectional, TimeDistributed]
OP_KERNEL_CLASSES += [*recurrent_ops.OP_KERNEL_CLASSES]
# The OR of merged masks: an op made by merges (``MaskCombine``), not a layer users build.
OP_KERNEL_CLASSES += [*mask_combine_ops.OP_KERNEL_CLASSES]


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
    # A class with a ``devices`` tuple has kernel functions on those devices only.
    return [cls(device) for device in _builtin_devices() for cls in OP_KERNEL_CLASSES
            if device.name in getattr(cls, "devices", (device.name,))]


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


@hookimpl
def nexec_onnx_exporters() -> dict[Any, Any]:
    return dict(ONNX_EXPORTERS)
