"""Keras 3 masks: the OR of the masks of merged tensors (``mask_or``), and masks applied to
the losses and metrics of a masked model output.

The mask of an output is its mask source, the integer ids whose zeros are padding (Keras'
mask is ``ids != 0``), one per loss row of the output (``ids`` is 1-D here, the rows in
order). As Keras 3.15 (``keras/src/losses/loss.py``: ``apply_mask``), the loss of a masked
output is its ``"sum_over_batch_size"`` loss weighted by ``mask * total / valid`` (times
the sample weights, if any), ``total`` the rows of the batch and ``valid`` its unmasked
rows (no rows valid: weight 0, ``divide_no_nan``), so the batch loss is
``sum(loss * sample_weight * mask) / valid``. Metrics wrapped in Keras'
``MeanMetricWrapper`` (accuracies, MAE, MSE) take the mask as their sample weight
(``reduction="sum"``: no rescaling): a masked metric is the mean of its per-row value over
the valid rows, which the kernels here accumulate as two sums, ``(sum of row values over
valid rows, valid rows)``.
"""
from __future__ import annotations

from nexec.kernels import masked_rows
from nexec.kernels.cpu.loss import _argmax_row
from nexec.kernels.cpu.metric import _in_top_k
from nexec.kernels.jit import kernel

__all__ = [
    "mask_or",
    "loss_mask_weights",
    "loss_mask_weights_times",
    "masked_metric_sums",
    "masked_sparse_metric_sums",
]

CATEGORICAL_ACCURACY = masked_rows.CATEGORICAL_ACCURACY
BINARY_ACCURACY = masked_rows.BINARY_ACCURACY
ABSOLUTE_ERROR = masked_rows.ABSOLUTE_ERROR
TOP_K = masked_rows.TOP_K
SPARSE_ACCURACY = masked_rows.SPARSE_ACCURACY


@kernel
def mask_or(a, b, out):
    """``out[i, j] = 1 if a[i, j] != 0 or b[i, j] != 0 else 0`` over 2-D (rows, steps) masks
    of one shape (ids of any integer dtype, or earlier results; ``out`` may be ``a``):
    Keras 3's OR of the masks of a merge's inputs (``Merge.compute_mask``, ``Concatenate``
    along the features)."""
    n, m = out.shape
    if a.shape[0] != n or a.shape[1] != m or b.shape[0] != n or b.shape[1] != m:
        raise ValueError("mask_or: a, b and out shapes differ")
    for i in range(n):
        for j in range(m):
            out[i, j] = 1 if (a[i, j] != 0 or b[i, j] != 0) else 0


@kernel
def _valid_rows(ids):
    valid = 0
    for i in range(ids.shape[0]):
        if ids[i] != 0:
            valid += 1
    return valid


@kernel
def loss_mask_weights(ids, out):
    """``out[i] = (ids[i] != 0) * total / valid`` (0 everywhere when no row is valid):
    Keras' ``apply_mask`` for the ``"sum_over_batch_size"`` reduction, no sample weight."""
    n = ids.shape[0]
    if out.shape[0] != n:
        raise ValueError("loss_mask_weights: ids and out lengths differ")
    valid = _valid_rows(ids)
    scale = float(n) / float(valid) if valid > 0 else 0.0
    for i in range(n):
        out[i] = scale if ids[i] != 0 else 0.0


@kernel
def loss_mask_weights_times(ids, sw, out):
    """``out[i] = sw[i] * (ids[i] != 0) * total / valid``: Keras' ``apply_mask`` with
    sample weights ``sw`` (one per row; ``out`` may be ``sw`` itself)."""
    n = ids.shape[0]
    if out.shape[0] != n or sw.shape[0] != n:
        raise ValueError("loss_mask_weights_times: ids, sw and out lengths differ")
    valid = _valid_rows(ids)
    scale = float(n) / float(valid) if valid > 0 else 0.0
    for i in range(n):
        out[i] = float(sw[i]) * scale if ids[i] != 0 else 0.0


@kernel
def _dense_row(p, y, i, code, param):
    k = p.shape[1]
    if code == CATEGORICAL_ACCURACY:
        if k == 0:
            return 0.0
        return 1.0 if _argmax_row(p, i) == _argmax_row(y, i) else 0.0
    if code == TOP_K:
        if k == 0:
            return 0.0
        return 1.0 if _in_top_k(p, i, _argmax_row(y, i), int(param)) else 0.0
    if k == 0:
        return 0.0
    total = 0.0
    if code == BINARY_ACCURACY:
        thr = p.dtype.type(param)  # Keras compares in the prediction's dtype
        for j in range(k):
            pred = 1.0 if p[i, j] > thr else 0.0
            if float(y[i, j]) == pred:
                total += 1.0
    elif code == ABSOLUTE_ERROR:
        for j in range(k):
            total += abs(float(p[i, j]) - float(y[i, j]))
    else:  # SQUARED_ERROR
        for j in range(k):
            d = float(p[i, j]) - float(y[i, j])
            total += d * d
    return total / k


@kernel
def masked_metric_sums(p, y, code, param, ids, out):
    """``out[0]`` = sum over the rows with ``ids != 0`` of the metric ``code``'s row value
    (a 0/1 hit for the accuracies, the mean over the last axis for binary accuracy, MAE
    and MSE, as Keras reduces before weighting), ``out[1]`` = those rows (float64)."""
    if p.shape != y.shape:
        raise ValueError("masked_metric_sums: p and y shapes differ")
    n = p.shape[0]
    if ids.shape[0] != n:
        raise ValueError("masked_metric_sums: ids and p rows differ")
    if out.shape[0] < 2:
        raise ValueError("masked_metric_sums: out needs 2 elements")
    total = 0.0
    valid = 0
    for i in range(n):
        if ids[i] != 0:
            valid += 1
            total += _dense_row(p, y, i, code, param)
    out[0] = total
    out[1] = valid


@kernel
def masked_sparse_metric_sums(p, labels, code, param, ids, out):
    """:func:`masked_metric_sums` for integer labels (sparse accuracy, sparse top-k)."""
    n, k = p.shape
    if labels.shape[0] != n or ids.shape[0] != n:
        raise ValueError("masked_sparse_metric_sums: rows of p, labels and ids differ")
    if out.shape[0] < 2:
        raise ValueError("masked_sparse_metric_sums: out needs 2 elements")
    total = 0.0
    valid = 0
    for i in range(n):
        if ids[i] != 0:
            valid += 1
            if k == 0:
                continue
            if code == SPARSE_ACCURACY:
                if _argmax_row(p, i) == labels[i]:
                    total += 1.0
            elif _in_top_k(p, i, labels[i], int(param)):
                total += 1.0
    out[0] = total
    out[1] = valid
