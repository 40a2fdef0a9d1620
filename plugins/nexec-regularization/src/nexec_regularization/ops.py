"""Op kernels: how GaussianDropout and AlphaDropout run on the CPU.

Both read ``call.training`` when they are bound: the training executor binds the random
kernels, the inference and evaluation executors the identity, so a step makes no mode
decision. What backward needs (the noise, the mask) is kept in a ``saved=True`` workspace,
live from the forward step to the backward step. At inference the identity is nothing at
all when the planner put the output over the input, else the device's own ``copy_into``
(every device's kernel namespace has it), so this package duplicates no kernel of nexec.
"""
from __future__ import annotations

import numpy as np

from nexec.plugin import BoundCall, Call, Kernel, Workspace, rows

__all__ = ["GaussianDropoutKernel", "AlphaDropoutKernel", "CPU_KERNELS"]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.ctypes.data == b.ctypes.data and a.strides == b.strides and a.shape == b.shape


def _identity(call: Call) -> list[BoundCall]:
    x, out = rows(call.inputs[0]), rows(call.output)
    return [] if _same(x, out) else [(call.device.kernels.copy_into, (out, x))]


class _RandomKernel(Kernel):
    """Elementwise, with a saved ``(batch, *shape)`` workspace from forward to backward."""

    saves_inputs = False  # backward reads only the saved workspace
    saves_output = False
    strided_output = True
    overwrites_input = True  # the output may be written over the input

    def workspaces(self, layer, in_shapes, out_shape, batch, training,  # noqa: ANN001, ANN201
                   strided_output=False):  # noqa: ANN001
        return {"saved": Workspace((batch, *out_shape), saved=True)} if training else {}


class GaussianDropoutKernel(_RandomKernel):
    layer_type = "GaussianDropout"

    def forward(self, call: Call) -> list[BoundCall]:
        from nexec_regularization.kernels import gaussian_dropout_forward

        if not call.training:
            return _identity(call)
        layer = call.layer
        return [(gaussian_dropout_forward, (rows(call.inputs[0]), layer.stddev,
                                            layer.rng_state, rows(call.workspace["saved"]),
                                            rows(call.output)))]

    def backward(self, call: Call) -> list[BoundCall]:
        from nexec_regularization.kernels import gaussian_dropout_backward

        if call.d_inputs[0] is None:
            return []
        return [(gaussian_dropout_backward, (rows(call.d_output), rows(call.workspace["saved"]),
                                             rows(call.d_inputs[0])))]


class AlphaDropoutKernel(_RandomKernel):
    layer_type = "AlphaDropout"

    def forward(self, call: Call) -> list[BoundCall]:
        from nexec_regularization.kernels import alpha_dropout_forward

        if not call.training:
            return _identity(call)
        layer = call.layer
        a, b, alpha_p = layer.coefficients()
        threshold = np.uint64(int(layer.rate * 2.0 ** 53))
        return [(alpha_dropout_forward, (rows(call.inputs[0]), threshold, a, b, alpha_p,
                                         layer.rng_state, rows(call.workspace["saved"]),
                                         rows(call.output)))]

    def backward(self, call: Call) -> list[BoundCall]:
        from nexec_regularization.kernels import alpha_dropout_backward

        if call.d_inputs[0] is None:
            return []
        return [(alpha_dropout_backward, (rows(call.d_output), rows(call.workspace["saved"]),
                                          rows(call.d_inputs[0])))]


CPU_KERNELS = [GaussianDropoutKernel(), AlphaDropoutKernel()]
