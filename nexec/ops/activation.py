"""Op kernels of the activation layers with arguments and of Rescaling and Normalization.

ReLU, LeakyReLU and ELU take their derivative from the input (a general ReLU's output does
not determine its slope), so they keep it (``saves_inputs``) and never write over it. Like
``Activation``, they are split over the convolutions' intra-op shards on a large image tensor
(``ops/elementwise.py``).
Softmax is ``Activation("softmax")`` under another name, folded into its producer.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nexec.kernels.cpu.activation import PARAM_ELU, PARAM_RELU
from nexec.ops.base import BoundCall, Call, empty_like_skip, rows, view_2d
from nexec.ops.builtin import ActivationKernel, BuiltinKernel
from nexec.ops.elementwise import split_rows

__all__ = ["OP_KERNEL_CLASSES", "ReLUKernel", "LeakyReLUKernel", "ELUKernel", "PReLUKernel",
           "SoftmaxKernel", "RescalingKernel", "NormalizationKernel"]


class ReLUKernel(BuiltinKernel):
    """Keras' general ReLU (``param_activation_*`` with ``PARAM_RELU``)."""

    layer_type = "ReLU"
    kind = PARAM_RELU
    saves_inputs = True
    saves_output = False
    strided_output = True

    def forward(self, call: Call) -> list[BoundCall]:
        a, b, c = call.layer.kernel_args()
        return split_rows(self.dev, call.output, lambda part: [
            (self.k.param_activation_forward, (part(rows(call.inputs[0])), self.kind, a, b, c,
                                               part(rows(call.output))))],
            2, self.kind == PARAM_ELU)

    def backward(self, call: Call) -> list[BoundCall]:
        if call.d_inputs[0] is None:
            return []
        a, b, c = call.layer.kernel_args()
        return split_rows(self.dev, call.output, lambda part: [
            (self.k.param_activation_backward, (
                part(rows(call.inputs[0])), part(rows(call.d_output)), self.kind, a, b, c,
                part(rows(call.d_inputs[0]))))], 2, self.kind == PARAM_ELU)


class LeakyReLUKernel(ReLUKernel):
    layer_type = "LeakyReLU"


class ELUKernel(ReLUKernel):
    layer_type = "ELU"
    kind = PARAM_ELU


def _size(a: Any) -> int:
    return int(np.prod(tuple(a.shape)))


class PReLUKernel(BuiltinKernel):
    """The shared (leading) axes fold into the rows, so ``alpha`` is one value per column."""

    layer_type = "PReLU"
    saves_inputs = True
    saves_output = False

    def _views(self, call: Call, a: Any) -> Any:
        n = _size(call.params["alpha"])
        return view_2d(a, _size(a) // n, n)

    def _alpha(self, table: dict) -> Any:
        alpha = table["alpha"]
        return self.dev.reshape(alpha, (_size(alpha),))

    def forward(self, call: Call) -> list[BoundCall]:
        return [(self.k.prelu_forward, (self._views(call, call.inputs[0]),
                                        self._alpha(call.params),
                                        self._views(call, call.output)))]

    def backward(self, call: Call) -> list[BoundCall]:
        x = self._views(call, call.inputs[0])
        d = call.d_inputs[0]
        dx = self._views(call, d) if d is not None else empty_like_skip(x)
        return [(self.k.prelu_backward, (x, self._alpha(call.params),
                                         self._views(call, call.d_output), dx,
                                         self._alpha(call.d_params)))]


class SoftmaxKernel(ActivationKernel):
    """``Softmax(axis=-1)``: the layer's ``activation`` is ``"softmax"``."""

    layer_type = "Softmax"


class RescalingKernel(BuiltinKernel):
    layer_type = "Rescaling"
    saves_inputs = False
    saves_output = False
    strided_output = True
    overwrites_input = True

    def forward(self, call: Call) -> list[BoundCall]:
        layer = call.layer
        return [(self.k.rescale_forward, (rows(call.inputs[0]), layer.scale, layer.offset,
                                          rows(call.output)))]

    def backward(self, call: Call) -> list[BoundCall]:
        if call.d_inputs[0] is None:
            return []
        return [(self.k.scale_into, (rows(call.d_inputs[0]), rows(call.d_output),
                                     call.layer.scale))]


class NormalizationKernel(BuiltinKernel):
    """Per-channel affine map; the given mean/variance (no weights) go to the device once,
    at bind time."""

    layer_type = "Normalization"
    saves_inputs = False
    saves_output = False
    strided_output = True
    overwrites_input = True

    def _stats(self, call: Call) -> tuple[Any, Any]:
        if "mean" in call.params:
            return call.params["mean"], call.params["variance"]
        x = call.inputs[0]
        mean, var = call.layer.constants(int(tuple(x.shape)[-1]))
        dtype = x.dtype
        return (call.device.to_device(mean.astype(dtype)),
                call.device.to_device(var.astype(dtype)))

    def forward(self, call: Call) -> list[BoundCall]:
        mean, var = self._stats(call)
        return [(self.k.normalize_forward, (rows(call.inputs[0]), mean, var, call.layer.invert,
                                            rows(call.output)))]

    def backward(self, call: Call) -> list[BoundCall]:
        if call.d_inputs[0] is None:
            return []
        _, var = self._stats(call)
        return [(self.k.normalize_backward, (var, rows(call.d_output), call.layer.invert,
                                             rows(call.d_inputs[0])))]


OP_KERNEL_CLASSES = (ReLUKernel, LeakyReLUKernel, ELUKernel, PReLUKernel, SoftmaxKernel,
                     RescalingKernel, NormalizationKernel)
