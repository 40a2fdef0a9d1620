"""Keras 3 masks on the loss and metrics of a model output that carries a mask.

An output computed from ``Embedding(mask_zero=True)`` through layers that pass the mask on
(``LSTM(return_sequences=True)``, ``Dense``, ``TimeDistributed``) carries Keras' mask
``ids != 0``, one flag per loss row. Keras 3.15 then (``keras/src/losses/loss.py``,
``apply_mask``; ``keras/src/metrics/reduction_metrics.py``):

* weights the loss by ``mask * total / valid`` times the sample weights (the
  ``"sum_over_batch_size"`` reduction): the batch loss is ``sum(loss * sw * mask) / valid``,
  0 when no row of the batch is valid. The executor binds ``loss_mask_weights(_times)``
  before the weighted loss kernels, in the step, from the ids (``Graph.output_masks``);
* weights the metrics that wrap a function (``MeanMetricWrapper``: the accuracies, MAE,
  MSE) by the mask, without rescaling and without the sample weights (those weigh only
  ``weighted_metrics``): the metric is the mean of its per-row value over the valid rows
  of the epoch (:class:`MaskedMetric`, two sums per batch);
* leaves the mask out of ``RootMeanSquaredError``, ``Precision``, ``Recall`` and ``AUC``
  (their ``update_state`` never reads it): nexec computes them unmasked too.

Other metrics (a plugin's, ``Metric(elementwise=...)``) on a masked output are refused at
``compile``: Keras would weight them by the mask, nexec has no masked kernel for them.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nexec.checks import ArgumentError
from nexec.kernels import masked_rows
from nexec.ops.base import BoundCall
from nexec.training import metrics as m

__all__ = ["MaskedMetric", "masked_metric"]

#: Keras metrics whose ``update_state`` ignores the mask (computed unmasked, as in Keras).
UNMASKED = (m.RootMeanSquaredError, m.Precision, m.Recall, m.AUC)

#: count kernel of a builtin metric -> (masked kernel, row-value code)
_CODES = {
    "categorical_accuracy_count": ("masked_metric_sums", masked_rows.CATEGORICAL_ACCURACY),
    "binary_accuracy_count": ("masked_metric_sums", masked_rows.BINARY_ACCURACY),
    "absolute_error_sum": ("masked_metric_sums", masked_rows.ABSOLUTE_ERROR),
    "squared_error_sum": ("masked_metric_sums", masked_rows.SQUARED_ERROR),
    "top_k_count": ("masked_metric_sums", masked_rows.TOP_K),
    "sparse_categorical_accuracy_count": ("masked_sparse_metric_sums",
                                          masked_rows.SPARSE_ACCURACY),
    "sparse_top_k_count": ("masked_sparse_metric_sums", masked_rows.SPARSE_TOP_K),
}


class MaskedMetric:
    """A builtin metric weighted by the mask of its output: per batch the sum of its
    per-row value over the valid rows and their number; the result is their ratio over the
    epoch (Keras' ``Mean`` with the mask as sample weight; 0 when no row was valid).

    Args:
        base: The metric it masks (its name and class are what the logs show).
        kernel: ``masked_metric_sums`` or ``masked_sparse_metric_sums``.
        code: The row value (``nexec.kernels.masked_rows``).
        param: The threshold or ``k`` of the metric (0.0 for none).
    """

    #: The executor passes the mask source (the ids, one per row) to :meth:`bind`.
    reads_mask = True
    size = 2
    dtype = "float64"

    def __init__(self, base: Any, kernel: str, code: int, param: float) -> None:
        self.base = base
        self.name = base.name
        self.sparse = base.sparse
        self.kernel = kernel
        self.code = code
        self.param = float(param)

    def bind(self, device: Any, p: Any, y: Any, slot: Any, ids: Any) -> BoundCall:
        return (getattr(device.kernels, self.kernel), (p, y, self.code, self.param, ids, slot))

    def total(self, p: Any) -> int:
        return 0  # the valid rows are counted by the kernel (``sums[1]``)

    def result(self, sums: np.ndarray, total: int) -> float:
        return float(sums[0]) / float(sums[1]) if sums[1] else 0.0

    def __repr__(self) -> str:
        return f"<masked {self.base!r}>"


def masked_metric(metric: Any, log_name: str, output: str) -> Any:
    """What computes ``metric`` on a masked output as Keras 3.15 does: a
    :class:`MaskedMetric`, the metric itself where Keras ignores the mask, or an error.

    Args:
        metric: The resolved metric (``resolve_metric``).
        log_name: Its name in the logs, for messages.
        output: The output's name, for messages.
    """
    if isinstance(metric, UNMASKED):
        return metric
    entry = _CODES.get(metric.count) if isinstance(metric.count, str) else None
    if entry is None or metric.kernels or metric.elementwise is not None:
        raise ArgumentError(
            f"compile(metrics=...): metric {log_name!r} on output {output!r}, which carries a "
            "mask (from Embedding(mask_zero=True)): Keras 3 weights it by the mask and nexec "
            "has no masked kernel for it. Masked outputs take accuracy, "
            "categorical/sparse_categorical/binary/top-k accuracy, mae and mse (weighted by "
            "the mask) and rmse, precision, recall, auc (unmasked, as in Keras); see "
            "docs/keras.md, Masks.")
    kernel, code = entry
    return MaskedMetric(metric, kernel, code, metric.extra[0] if metric.extra else 0.0)
