"""Op kernels: how Dropout and BatchNormalization run on the CPU.

Both read ``call.training`` when they are bound: the training executor binds the training
kernels, the inference and evaluation executors the inference ones, so a step makes no
mode decision. What backward needs is kept in ``saved=True`` workspaces (live from the
forward step to the backward step, then reused): Dropout's mask, BatchNormalization's batch
mean and inverse standard deviation.
"""
from __future__ import annotations

import numpy as np

from nexec.plugin import BoundCall, Call, Kernel, Workspace, rows

__all__ = ["DropoutKernel", "BatchNormalizationKernel", "CPU_KERNELS"]


def _param(call: Call, name: str, grads: bool = False) -> np.ndarray:
    table = call.d_params if grads else call.params
    return table[name] if name in table else np.empty(0, call.output.dtype)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.__array_interface__["data"][0] == b.__array_interface__["data"][0] \
        and a.strides == b.strides and a.shape == b.shape


def _dx(call: Call) -> np.ndarray:
    d = call.d_inputs[0]
    return rows(d) if d is not None else np.empty((0, call.output.shape[-1]), call.output.dtype)


class DropoutKernel(Kernel):
    """Training: draw the mask and apply it in one pass; inference: a copy."""

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
        return {"mask": Workspace((batch, *out_shape), saved=True)}

    def forward(self, call: Call) -> list[BoundCall]:
        from nexec_regularization.kernels import copy_rows, dropout_forward

        layer = call.layer
        x, out = rows(call.inputs[0]), rows(call.output)
        if not call.training:
            # the identity: nothing to do when the planner put the output over the input
            return [] if _same(x, out) else [(copy_rows, (x, out))]
        threshold = np.uint64(min(int(layer.rate * 2.0 ** 53), 2 ** 53))
        scale = 1.0 / (1.0 - layer.rate)
        return [(dropout_forward, (x, threshold, scale, layer.rng_state,
                                   rows(call.workspace["mask"]), out))]

    def backward(self, call: Call) -> list[BoundCall]:
        from nexec_regularization.kernels import dropout_backward

        if call.d_inputs[0] is None:
            return []
        return [(dropout_backward, (rows(call.d_output), rows(call.workspace["mask"]),
                                    rows(call.d_inputs[0])))]


class BatchNormalizationKernel(Kernel):
    """Batch statistics, moving-statistics update and normalization in one kernel."""

    layer_type = "BatchNormalization"
    saves_inputs = True  # backward recomputes x_hat from x and the saved statistics
    saves_output = False
    strided_output = True

    def workspaces(self, layer, in_shapes, out_shape, batch, training,  # noqa: ANN001, ANN201
                   strided_output=False):  # noqa: ANN001
        c = out_shape[-1]
        # "stats": batch mean and 1/std in training (kept for backward); in inference, or for
        # a frozen layer, the folded scale and shift.
        ws = {"stats": Workspace((2, c), saved=training)}
        if training:
            ws["sums"] = Workspace((2, c), phase="backward")
        return ws

    @staticmethod
    def _batch_mode(call: Call) -> bool:
        # As Keras: a frozen BatchNormalization runs in inference mode, even in fit().
        return bool(call.training and call.layer.trainable)

    def forward(self, call: Call) -> list[BoundCall]:
        from nexec_regularization.kernels import batchnorm_forward_infer, batchnorm_forward_train

        layer, p = call.layer, call.params
        x, out = rows(call.inputs[0]), rows(call.output)
        gamma, beta = _param(call, "gamma"), _param(call, "beta")
        stats = call.workspace["stats"]
        if self._batch_mode(call):
            return [(batchnorm_forward_train, (x, gamma, beta, layer.momentum, layer.epsilon,
                                               p["moving_mean"], p["moving_variance"], stats,
                                               out))]
        return [(batchnorm_forward_infer, (x, gamma, beta, layer.epsilon, p["moving_mean"],
                                           p["moving_variance"], stats, out))]

    def backward(self, call: Call) -> list[BoundCall]:
        from nexec_regularization.kernels import batchnorm_backward, batchnorm_backward_frozen

        stats = call.workspace["stats"]
        if not self._batch_mode(call):
            p = call.params
            return [(batchnorm_backward_frozen, (rows(call.inputs[0]), rows(call.d_output),
                                                 p["moving_mean"], p["moving_variance"],
                                                 call.layer.epsilon, stats,
                                                 _param(call, "gamma", grads=True),
                                                 _param(call, "beta", grads=True),
                                                 _dx(call)))]
        return [(batchnorm_backward, (rows(call.inputs[0]), rows(call.d_output),
                                      _param(call, "gamma"), stats, call.workspace["sums"],
                                      _param(call, "gamma", grads=True),
                                      _param(call, "beta", grads=True), _dx(call)))]


CPU_KERNELS = [DropoutKernel(), BatchNormalizationKernel()]
