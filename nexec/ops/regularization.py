"""How Dropout, SpatialDropout1D/2D and GaussianNoise run, on every device.

Each reads ``call.training`` when it is bound: the training executor binds the random
kernels, the inference and evaluation executors the identity (nothing at all when the
planner wrote the output over the input), so a step makes no mode decision. A Dropout mask
is kept from forward to backward in a ``saved=True`` workspace; GaussianNoise keeps nothing
(its gradient is the identity). The layer's stream state (``layer.rng_state``, host memory)
is advanced by the kernel itself, on the CPU, or by the CUDA launcher.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nexec.ops.base import BoundCall, Call, Workspace, rows
from nexec.ops.builtin import BuiltinKernel

__all__ = ["OP_KERNEL_CLASSES", "DropoutKernel", "SpatialDropout1DKernel",
           "SpatialDropout2DKernel", "GaussianNoiseKernel", "same_view"]


def same_view(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are the same view of the same memory (on any device)."""
    if tuple(a.shape) != tuple(b.shape) or tuple(a.strides) != tuple(b.strides):
        return False
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return bool(a.ctypes.data == b.ctypes.data)
    ia = getattr(a, "__cuda_array_interface__", None)
    ib = getattr(b, "__cuda_array_interface__", None)
    return ia is not None and ib is not None and ia["data"][0] == ib["data"][0]


def _identity(kernel: BuiltinKernel, call: Call) -> list[BoundCall]:
    """Inference: a copy, or nothing when the output was planned over the input."""
    x, out = rows(call.inputs[0]), rows(call.output)
    return [] if same_view(x, out) else [(kernel.k.copy_into, (out, x))]


class DropoutKernel(BuiltinKernel):
    """Training: draw the mask and apply it in one kernel; inference: the identity."""

    layer_type = "Dropout"
    saves_inputs = False  # backward reads only the saved mask
    saves_output = False
    strided_output = True
    # Elementwise: the output may be written over the input when nothing reads it later.
    overwrites_input = True

    def workspaces(self, layer, in_shapes, out_shape, batch, training,  # noqa: ANN001, ANN201
                   strided_output=False):  # noqa: ANN001
        if not training:
            return {}
        span = layer.span(tuple(out_shape))
        per_sample = int(np.prod(out_shape[:-1], dtype=np.int64)) // span
        return {"mask": Workspace((batch * per_sample, out_shape[-1]), saved=True)}

    def forward(self, call: Call) -> list[BoundCall]:
        if not call.training:
            return _identity(self, call)
        layer = call.layer
        rate = layer.rate
        threshold = np.uint64(min(int(rate * 2.0 ** 53), 2 ** 53))
        scale = 0.0 if rate >= 1.0 else 1.0 / (1.0 - rate)
        span = layer.span(tuple(call.output.shape[1:]))
        return [(self.k.dropout_forward, (rows(call.inputs[0]), threshold, scale, span,
                                          layer.rng_state, call.workspace["mask"],
                                          rows(call.output)))]

    def backward(self, call: Call) -> list[BoundCall]:
        if call.d_inputs[0] is None:
            return []
        span = call.layer.span(tuple(call.output.shape[1:]))
        return [(self.k.dropout_backward, (rows(call.d_output), call.workspace["mask"], span,
                                           rows(call.d_inputs[0])))]


class SpatialDropout1DKernel(DropoutKernel):
    """Dropout with one draw per sample and channel (``layer.span`` says how many rows)."""

    layer_type = "SpatialDropout1D"


class SpatialDropout2DKernel(DropoutKernel):
    """Dropout with one draw per sample and feature map."""

    layer_type = "SpatialDropout2D"


class GaussianNoiseKernel(BuiltinKernel):
    """Training: ``x + stddev * normal`` drawn in the kernel; backward and inference: the
    identity."""

    layer_type = "GaussianNoise"
    saves_inputs = False
    saves_output = False
    strided_output = True
    overwrites_input = True

    def forward(self, call: Call) -> list[BoundCall]:
        if not call.training:
            return _identity(self, call)
        layer = call.layer
        return [(self.k.gaussian_noise_forward, (rows(call.inputs[0]), layer.stddev,
                                                 layer.rng_state, rows(call.output)))]

    def backward(self, call: Call) -> list[BoundCall]:
        if call.d_inputs[0] is None:
            return []
        dy, dx = rows(call.d_output), rows(call.d_inputs[0])
        return [] if same_view(dy, dx) else [(self.k.copy_into, (dx, dy))]


OP_KERNEL_CLASSES = (DropoutKernel, SpatialDropout1DKernel, SpatialDropout2DKernel,
                     GaussianNoiseKernel)
