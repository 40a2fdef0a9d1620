"""Op kernels: how the pooling layers run on the CPU (which kernel, which arrays).

Binders run once per binding; they return ``(function, args)`` pairs, so a training step
does no Python work here. No pooling op reads its input or output in backward
(``saves_inputs = saves_output = False``): max pooling keeps the argmax positions in a
``saved=True`` int32 workspace instead (a quarter of a float32 input for 2x2 pools), and the
averages need only the output gradient. Outputs may be row-strided slices of a concatenated
buffer (``strided_output``): the kernels index 4-D views, whatever their strides.
"""
from __future__ import annotations

import numpy as np

from nexec.plugin import BoundCall, Call, Kernel, Workspace, rows

__all__ = ["MaxPooling2DKernel", "AveragePooling2DKernel", "GlobalAveragePooling2DKernel",
           "CPU_KERNELS"]

_NO_ARGMAX = np.empty((0, 0, 0, 0), np.int32)  # tells max_pool_forward not to record


def _window(call: Call) -> tuple[int, ...]:
    layer = call.layer
    _, _, pt, pl = layer.geometry(call.inputs[0].shape[1:])
    (ph, pw), (sh, sw) = layer.pool_size, layer.strides
    return ph, pw, sh, sw, pt, pl


class MaxPooling2DKernel(Kernel):
    """One pass per window computing the maximum and, in training, where it was."""

    layer_type = "MaxPooling2D"
    saves_inputs = False
    saves_output = False
    strided_output = True

    def workspaces(self, layer, in_shapes, out_shape, batch, training,  # noqa: ANN001, ANN201
                   strided_output=False):  # noqa: ANN001
        if not training:
            return {}
        return {"argmax": Workspace((batch, *out_shape), saved=True, dtype="int32")}

    def forward(self, call: Call) -> list[BoundCall]:
        from nexec_pooling.kernels import max_pool_forward

        argmax = call.workspace.get("argmax", _NO_ARGMAX) if call.training else _NO_ARGMAX
        return [(max_pool_forward, (call.inputs[0], *_window(call), call.output, argmax))]

    def backward(self, call: Call) -> list[BoundCall]:
        from nexec_pooling.kernels import max_pool_backward

        if call.d_inputs[0] is None:  # a model input: nothing to propagate to
            return []
        return [(max_pool_backward, (call.d_output, call.workspace["argmax"],
                                     call.d_inputs[0]))]


class AveragePooling2DKernel(Kernel):
    """Window means; backward spreads each gradient over its window's real inputs."""

    layer_type = "AveragePooling2D"
    saves_inputs = False
    saves_output = False
    strided_output = True

    def forward(self, call: Call) -> list[BoundCall]:
        from nexec_pooling.kernels import avg_pool_forward

        return [(avg_pool_forward, (call.inputs[0], *_window(call), call.output))]

    def backward(self, call: Call) -> list[BoundCall]:
        from nexec_pooling.kernels import avg_pool_backward

        if call.d_inputs[0] is None:
            return []
        return [(avg_pool_backward, (call.d_output, *_window(call), call.d_inputs[0]))]


class GlobalAveragePooling2DKernel(Kernel):
    """Per-channel means over height and width (output ``(N, C)`` or ``(N, 1, 1, C)``)."""

    layer_type = "GlobalAveragePooling2D"
    saves_inputs = False
    saves_output = False
    strided_output = True

    def forward(self, call: Call) -> list[BoundCall]:
        from nexec_pooling.kernels import global_avg_pool_forward

        return [(global_avg_pool_forward, (call.inputs[0], rows(call.output)))]

    def backward(self, call: Call) -> list[BoundCall]:
        from nexec_pooling.kernels import global_avg_pool_backward

        if call.d_inputs[0] is None:
            return []
        return [(global_avg_pool_backward, (rows(call.d_output), call.d_inputs[0]))]


CPU_KERNELS = [MaxPooling2DKernel(), AveragePooling2DKernel(), GlobalAveragePooling2DKernel()]
