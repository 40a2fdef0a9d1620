"""Per-batch sums of Keras 3's regression, top-k and confusion-matrix metrics.

Same conventions as the counts in :mod:`nexec.kernels.cpu.loss`: ``p`` and dense targets
``y`` are 2-D ``(N, C)``, sparse labels 1-D integers ``(N,)``; each kernel *writes* (does
not add) the batch's sums into ``out``, whose length it names, and returns nothing. The
trainer adds the slots up over the epoch and the metric's ``result`` turns them into the
logged value, so a metric that needs several sums (AUC, precision) or a final formula
(the square root of RMSE) fits the same contract.

Comparisons with a threshold happen in the prediction's dtype (Keras casts predictions and
thresholds to its float32 metric variables), so a float32 prediction of exactly 0.5 is not
above a threshold of 0.5, and AUC's bucket of a float32 prediction is computed in float32.
"""
from __future__ import annotations

import math

import numpy as np

from nexec.kernels.cpu.loss import _argmax_row
from nexec.kernels.jit import kernel

__all__ = [
    "absolute_error_sum",
    "squared_error_sum",
    "top_k_count",
    "sparse_top_k_count",
    "confusion_counts",
    "auc_buckets",
]


@kernel
def _check_len(out, n):
    if out.shape[0] < n:
        raise ValueError("metric kernel: out is shorter than the metric's slot")


@kernel
def absolute_error_sum(p, y, out):
    """``out[0] = sum |p - y|`` over all elements (float64): Keras ``mean_absolute_error``
    once divided by the element count."""
    if p.shape != y.shape:
        raise ValueError("absolute_error_sum: p and y shapes differ")
    _check_len(out, 1)
    n, k = p.shape
    total = 0.0
    for i in range(n):
        for j in range(k):
            total += abs(np.float64(p[i, j]) - np.float64(y[i, j]))
    out[0] = total


@kernel
def squared_error_sum(p, y, out):
    """``out[0] = sum (p - y)^2`` over all elements (float64): ``mean_squared_error`` once
    divided by the element count, ``root_mean_squared_error`` after a square root too."""
    if p.shape != y.shape:
        raise ValueError("squared_error_sum: p and y shapes differ")
    _check_len(out, 1)
    n, k = p.shape
    total = 0.0
    for i in range(n):
        for j in range(k):
            d = np.float64(p[i, j]) - np.float64(y[i, j])
            total += d * d
    out[0] = total


@kernel
def _in_top_k(p, i, target, k):
    """Whether column ``target`` of row ``i`` is among the ``k`` largest, as Keras' JAX
    ``in_top_k``: rank ``1 + #(p_j > p_target)`` at most ``k`` (ties are all in), and a NaN
    target score counts as ``-inf``."""
    c = p.shape[1]
    if target < 0 or target >= c:
        return False
    v = p[i, target]
    above = 0
    if v != v:  # NaN: every finite or +inf score ranks above it
        for j in range(c):
            if p[i, j] > -math.inf:
                above += 1
    else:
        for j in range(c):
            if p[i, j] > v:
                above += 1
    return above < k


@kernel
def top_k_count(p, y, k, out):
    """Number of rows whose ``argmax(y)`` is in the top ``k`` of ``p`` (Keras
    ``top_k_categorical_accuracy``), written to ``out[0]``."""
    if p.shape != y.shape:
        raise ValueError("top_k_count: p and y shapes differ")
    _check_len(out, 1)
    n, c = p.shape
    count = 0
    if c > 0:
        for i in range(n):
            if _in_top_k(p, i, _argmax_row(y, i), k):
                count += 1
    out[0] = count


@kernel
def sparse_top_k_count(p, labels, k, out):
    """Number of rows whose integer label is in the top ``k`` of ``p`` (Keras
    ``sparse_top_k_categorical_accuracy``), written to ``out[0]``; a label outside
    ``[0, C)`` never counts."""
    n = p.shape[0]
    if labels.shape[0] != n:
        raise ValueError("sparse_top_k_count: batch sizes differ")
    _check_len(out, 1)
    count = 0
    for i in range(n):
        if _in_top_k(p, i, labels[i], k):
            count += 1
    out[0] = count


@kernel
def confusion_counts(p, y, threshold, out):
    """``out[0:4] = (tp, fp, tn, fn)`` over all elements, a prediction being positive when
    ``p > threshold`` (in ``p``'s dtype) and a target when it is non-zero (Keras casts
    ``y_true`` to bool): the sums behind ``Precision`` and ``Recall``."""
    if p.shape != y.shape:
        raise ValueError("confusion_counts: p and y shapes differ")
    _check_len(out, 4)
    n, k = p.shape
    thr = p.dtype.type(threshold)
    tp = 0
    fp = 0
    tn = 0
    fn = 0
    for i in range(n):
        for j in range(k):
            pos = p[i, j] > thr
            if y[i, j] != 0:
                if pos:
                    tp += 1
                else:
                    fn += 1
            elif pos:
                fp += 1
            else:
                tn += 1
    out[0] = tp
    out[1] = fp
    out[2] = tn
    out[3] = fn


@kernel
def auc_buckets(p, y, num_thresholds, out):
    """Histograms of Keras' AUC buckets: ``out[b]`` counts the positive targets (non-zero)
    and ``out[T + b]`` the negative ones whose prediction falls in bucket ``b``
    (``T = num_thresholds``).

    As Keras' evenly-spaced path: ``b = max(ceil(clip(p, 0, 1) * (T - 1)) - 1, 0)`` in
    ``p``'s dtype, so ``p`` is above threshold ``t`` (``t/(T-1)`` for ``0 < t < T-1``, the
    end ones being ``-eps`` and ``1 + eps``) exactly when ``b >= t``. A NaN prediction is in
    no bucket. Reverse cumulative sums of the epoch's histograms give TP and FP per
    threshold.
    """
    if p.shape != y.shape:
        raise ValueError("auc_buckets: p and y shapes differ")
    t = num_thresholds
    _check_len(out, 2 * t)
    for b in range(2 * t):
        out[b] = 0
    n, k = p.shape
    zero = p.dtype.type(0.0)
    one = p.dtype.type(1.0)
    scale = p.dtype.type(t - 1)
    for i in range(n):
        for j in range(k):
            v = p[i, j]
            if v != v:
                continue
            if v < zero:
                v = zero
            elif v > one:
                v = one
            b = math.ceil(v * scale) - 1
            if b < 0:
                b = 0
            if y[i, j] != 0:
                out[b] += 1
            else:
                out[t + b] += 1
