"""Op kernels: how the 3-D pooling layers run on the CPU (which kernel, which arrays).

Binders run once per binding; they return ``(function, args)`` pairs, so a training step
does no Python work here. No pooling op reads its input or output in backward
(``saves_inputs = saves_output = False``): max pooling keeps the argmax positions in a
``saved=True`` int32 workspace instead, and the averages need only the output gradient.
Outputs may be row-strided slices of a concatenated buffer (``strided_output``): the kernels
index 5-D views, whatever their strides. A global pooling's ``(N, C)`` output is viewed as
``(N, 1, 1, 1, C)`` and runs as one whole-volume window.
"""
from __future__ import annotations

import numpy as np

from nexec.plugin import BoundCall, Call, Kernel, Workspace

__all__ = ["MaxPooling3DKernel", "AveragePooling3DKernel", "GlobalMaxPooling3DKernel",
           "GlobalAveragePooling3DKernel", "CPU_KERNELS"]

_NO_ARGMAX = np.empty((0, 0, 0, 0, 0), np.int32)  # tells max_pool3d_forward not to record


def _volume(a: np.ndarray) -> np.ndarray:
    """A global pooling's ``(N, C)`` array as ``(N, 1, 1, 1, C)`` (a view)."""
    if a.ndim == 5:
        return a
    v = a.view()
    v.shape = (a.shape[0], 1, 1, 1, a.shape[-1])  # raises rather than copying
    return v


class _Pool3DKernel(Kernel):
    saves_inputs = False
    saves_output = False
    strided_output = True
    mode = "max"

    def workspaces(self, layer, in_shapes, out_shape, batch, training,  # noqa: ANN001, ANN201
                   strided_output=False):  # noqa: ANN001
        if self.mode != "max" or not training:
            return {}
        volume = out_shape if len(out_shape) == 4 else (1, 1, 1, out_shape[-1])
        return {"argmax": Workspace((batch, *volume), saved=True, dtype="int32")}

    def forward(self, call: Call) -> list[BoundCall]:
        from nexec_pooling.kernels import avg_pool3d_forward, max_pool3d_forward

        x, out = call.inputs[0], _volume(call.output)
        window = call.layer.window(x.shape[1:])
        if self.mode == "avg":
            return [(avg_pool3d_forward, (x, window, out))]
        argmax = call.workspace.get("argmax", _NO_ARGMAX) if call.training else _NO_ARGMAX
        return [(max_pool3d_forward, (x, window, out, argmax))]

    def backward(self, call: Call) -> list[BoundCall]:
        from nexec_pooling.kernels import avg_pool3d_backward, max_pool3d_backward

        dx = call.d_inputs[0]
        if dx is None:  # a model input: nothing to propagate to
            return []
        dy = _volume(call.d_output)
        if self.mode == "avg":
            return [(avg_pool3d_backward, (dy, call.layer.window(dx.shape[1:]), dx))]
        return [(max_pool3d_backward, (dy, call.workspace["argmax"], dx))]


class MaxPooling3DKernel(_Pool3DKernel):
    """One pass per window computing the maximum and, in training, where it was."""

    layer_type = "MaxPooling3D"


class AveragePooling3DKernel(_Pool3DKernel):
    """Window means; backward spreads each gradient over its window's real inputs."""

    layer_type = "AveragePooling3D"
    mode = "avg"


class GlobalMaxPooling3DKernel(_Pool3DKernel):
    """Per-channel maxima over the volume."""

    layer_type = "GlobalMaxPooling3D"


class GlobalAveragePooling3DKernel(_Pool3DKernel):
    """Per-channel means over the volume."""

    layer_type = "GlobalAveragePooling3D"
    mode = "avg"


CPU_KERNELS = [MaxPooling3DKernel(), AveragePooling3DKernel(), GlobalMaxPooling3DKernel(),
               GlobalAveragePooling3DKernel()]
