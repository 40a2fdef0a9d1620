"""How BatchNormalization and LayerNormalization run, on every device.

BatchNormalization reads ``call.training`` (and the layer's ``trainable``: a frozen layer
runs in inference mode, as Keras) when it is bound; training binds one kernel that takes the
batch statistics, updates the moving ones in place and normalises. What backward needs is
kept in ``saved=True`` workspaces: the batch mean and inverse standard deviation per channel
(BatchNormalization), per row (LayerNormalization).

A masked BatchNormalization in training (``Call.mask``: the ids of the input's mask, one per
row) takes its batch statistics over the real rows, as Keras 3 (the ``*_masked`` kernels);
in inference the moving statistics make the mask irrelevant.

In inference, a BatchNormalization right after a layer whose output is linear in its weights
(Conv2D, Dense) is folded into that layer's weights (``applies_channel_affine``,
``nexec.planner.fusion.fold_channel_affines``): it then runs no pass of its own.
Otherwise, its inference pass (also a frozen layer's in training) is elementwise once
its per-channel scale and shift are known: on a large image tensor it is split over the
convolutions' intra-op shards (``ops/elementwise.py``). Its training passes reduce over the
batch and stay one call (a split would change the order of the sums).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nexec.ops.base import BoundCall, Call, Workspace, empty_like_skip, rows, view_2d
from nexec.ops.builtin import BuiltinKernel
from nexec.ops.elementwise import row_slices, shard_count

__all__ = ["OP_KERNEL_CLASSES", "BatchNormalizationKernel", "LayerNormalizationKernel"]


def _param(call: Call, name: str, grads: bool = False) -> Any:
    """A parameter (or its gradient), or an empty array for one the layer does not have."""
    table = call.d_params if grads else call.params
    if name in table:
        return table[name]
    return call.device.zeros((0,), call.output.dtype)


def _ids(call: Call, n_rows: int) -> Any:
    """The mask source as ``(rows, 1)``: one id per row of the input's 2-D view."""
    return view_2d(call.mask, n_rows, 1)


def _dx(call: Call) -> Any:
    d = call.d_inputs[0]
    return rows(d) if d is not None else empty_like_skip(rows(call.inputs[0]))


class BatchNormalizationKernel(BuiltinKernel):
    """Batch statistics, moving-statistics update and normalisation in one kernel."""

    layer_type = "BatchNormalization"
    saves_inputs = True  # backward recomputes x_hat from x and the saved statistics
    saves_output = False
    strided_output = True
    applies_channel_affine = True

    def workspaces(self, layer, in_shapes, out_shape, batch, training,  # noqa: ANN001, ANN201
                   strided_output=False):  # noqa: ANN001
        c = out_shape[-1]
        # "stats": batch mean and 1/std in training (kept for backward); in inference, or for
        # a frozen layer, the folded scale and shift.
        ws = {"stats": Workspace((2, c), saved=training)}
        if training:
            ws["sums"] = Workspace((2, c), phase="backward")
        shards = shard_count(self.dev, (batch, *out_shape), 8)  # as many as any dtype
        if shards > 1 and not (training and layer.trainable):
            # the inference pass split over the shards: each computes its own copy of the
            # folded scale and shift (shard 0 into "stats"), so no two threads write one array
            ws["coef_parts"] = Workspace((shards - 1, 2, c), phase="forward")
        return ws

    @staticmethod
    def _batch_mode(call: Call) -> bool:
        return bool(call.training and call.layer.trainable)

    def forward(self, call: Call) -> list[BoundCall]:
        layer, p = call.layer, call.params
        x, out = rows(call.inputs[0]), rows(call.output)
        gamma, beta = _param(call, "gamma"), _param(call, "beta")
        stats = call.workspace["stats"]
        if self._batch_mode(call) and call.mask is not None:
            return [(self.k.batchnorm_forward_train_masked,
                     (x, _ids(call, x.shape[0]), gamma, beta, layer.momentum, layer.epsilon,
                      p["moving_mean"], p["moving_variance"], stats, out))]
        if self._batch_mode(call):
            return [(self.k.batchnorm_forward_train,
                     (x, gamma, beta, layer.momentum, layer.epsilon, p["moving_mean"],
                      p["moving_variance"], stats, out))]
        slices = row_slices(self.dev, call.output)
        if len(slices) == 1 or len(slices) - 1 > len(call.workspace.get("coef_parts", ())):
            return [(self.k.batchnorm_forward_infer,
                     (x, gamma, beta, layer.epsilon, p["moving_mean"], p["moving_variance"],
                      stats, out))]
        coefs = [stats] + list(call.workspace["coef_parts"])
        return self.dev.parallel([
            (self.k.batchnorm_forward_infer, (x[s], gamma, beta, layer.epsilon,
                                              p["moving_mean"], p["moving_variance"], coef,
                                              out[s]))
            for s, coef in zip(slices, coefs)])

    def channel_affine(self, call: Call) -> list[BoundCall]:
        p = call.params
        return [(self.k.batchnorm_affine, (_param(call, "gamma"), _param(call, "beta"),
                                           call.layer.epsilon, p["moving_mean"],
                                           p["moving_variance"], call.output))]

    def backward(self, call: Call) -> list[BoundCall]:
        p = call.params
        stats = call.workspace["stats"]
        x, dy = rows(call.inputs[0]), rows(call.d_output)
        dgamma, dbeta = _param(call, "gamma", grads=True), _param(call, "beta", grads=True)
        if not self._batch_mode(call):
            return [(self.k.batchnorm_backward_frozen,
                     (x, dy, p["moving_mean"], p["moving_variance"], call.layer.epsilon, stats,
                      dgamma, dbeta, _dx(call)))]
        if call.mask is not None:
            return [(self.k.batchnorm_backward_masked,
                     (x, _ids(call, x.shape[0]), dy, _param(call, "gamma"), stats,
                      call.workspace["sums"], dgamma, dbeta, _dx(call)))]
        return [(self.k.batchnorm_backward, (x, dy, _param(call, "gamma"), stats,
                                             call.workspace["sums"], dgamma, dbeta,
                                             _dx(call)))]


class LayerNormalizationKernel(BuiltinKernel):
    """Row statistics and normalisation in one pass; backward from the saved statistics."""

    layer_type = "LayerNormalization"
    saves_inputs = True
    saves_output = False
    strided_output = True

    def workspaces(self, layer, in_shapes, out_shape, batch, training,  # noqa: ANN001, ANN201
                   strided_output=False):  # noqa: ANN001
        per_sample = int(np.prod(out_shape[:-1], dtype=np.int64))
        return {"stats": Workspace((batch * per_sample, 2), saved=training)}

    def forward(self, call: Call) -> list[BoundCall]:
        return [(self.k.layernorm_forward, (rows(call.inputs[0]), _param(call, "gamma"),
                                            _param(call, "beta"), call.layer.epsilon,
                                            call.workspace["stats"], rows(call.output)))]

    def backward(self, call: Call) -> list[BoundCall]:
        return [(self.k.layernorm_backward,
                 (rows(call.inputs[0]), rows(call.d_output), _param(call, "gamma"),
                  call.workspace["stats"], _param(call, "gamma", grads=True),
                  _param(call, "beta", grads=True), _dx(call)))]


OP_KERNEL_CLASSES = (BatchNormalizationKernel, LayerNormalizationKernel)
