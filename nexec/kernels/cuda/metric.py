"""CUDA per-batch metric sums with the semantics of :mod:`nexec.kernels.cpu.metric`.

Same positional arguments as the CPU kernels, on device arrays, plus a keyword-only
``stream``; each writes its sums into ``out`` and returns None. Sums and counts are one
block with shared-memory tree reductions (``block_sum`` of :mod:`nexec.kernels.cuda.loss`):
deterministic, no atomics. ``auc_buckets`` is a histogram instead: one launch zeroes the
``2 * num_thresholds`` counts, a grid-stride launch adds to them with integer atomics
(exact, so still deterministic).

Differences from the CPU kernels: labels are not validated (a label outside ``[0, C)``
never counts, as on the CPU, but a wrong batch size is caught on the host only).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import float64, int64

from nexec.kernels.cuda.backend import MAX_THREADS, config_1d, cuda, jit
from nexec.kernels.cuda.loss import _argmax_row, block_sum, reduce_config

__all__ = [
    "absolute_error_sum",
    "squared_error_sum",
    "top_k_count",
    "sparse_top_k_count",
    "confusion_counts",
    "auc_buckets",
]


def _check(out: Any, n: int, where: str) -> None:
    if out.ndim != 1 or out.shape[0] < n:
        raise ValueError(f"{where}: out must be a device array of at least {n} element(s)")


def _same_shape(p: Any, y: Any, where: str) -> None:
    if p.ndim != 2 or p.shape != y.shape:
        raise ValueError(f"{where}: p and y shapes differ")


# --------------------------------------------------------------------------- kernels


@jit
def _error_sum(p, y, squared, out):
    n = p.shape[0]
    k = p.shape[1]
    part = cuda.shared.array(MAX_THREADS, float64)
    acc = 0.0
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        for j in range(k):
            d = float64(p[i, j]) - float64(y[i, j])
            acc += d * d if squared else abs(d)
    total = block_sum(part, acc)
    if cuda.threadIdx.x == 0:
        out[0] = total


@jit(device=True)
def _in_top_k(p, i, target, k):
    """Keras' JAX ``in_top_k``: ``1 + #(p_j > p_target) <= k``, a NaN target as -inf."""
    c = p.shape[1]
    if target < 0 or target >= c:
        return False
    v = p[i, target]
    above = 0
    for j in range(c):
        w = p[i, j]
        if math.isnan(v):
            if w > -math.inf:
                above += 1
        elif w > v:
            above += 1
    return above < k


@jit
def _top_k(p, y, k, out):
    n = p.shape[0]
    part = cuda.shared.array(MAX_THREADS, int64)
    cnt = 0
    if p.shape[1] > 0:
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            if _in_top_k(p, i, _argmax_row(y, i), k):
                cnt += 1
    total = block_sum(part, cnt)
    if cuda.threadIdx.x == 0:
        out[0] = total


@jit
def _sparse_top_k(p, labels, k, out):
    n = p.shape[0]
    part = cuda.shared.array(MAX_THREADS, int64)
    cnt = 0
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        if _in_top_k(p, i, labels[i], k):
            cnt += 1
    total = block_sum(part, cnt)
    if cuda.threadIdx.x == 0:
        out[0] = total


@jit
def _confusion(p, y, thr, out):
    n = p.shape[0]
    k = p.shape[1]
    # One shared buffer per sum: reusing one would race with threads still reading part[0].
    p_tp = cuda.shared.array(MAX_THREADS, int64)
    p_fp = cuda.shared.array(MAX_THREADS, int64)
    p_tn = cuda.shared.array(MAX_THREADS, int64)
    p_fn = cuda.shared.array(MAX_THREADS, int64)
    tp = 0
    fp = 0
    tn = 0
    fn = 0
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
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
    s_tp = block_sum(p_tp, tp)
    s_fp = block_sum(p_fp, fp)
    s_tn = block_sum(p_tn, tn)
    s_fn = block_sum(p_fn, fn)
    if cuda.threadIdx.x == 0:
        out[0] = s_tp
        out[1] = s_fp
        out[2] = s_tn
        out[3] = s_fn


@jit
def _zero(out, m):
    for i in range(cuda.grid(1), m, cuda.gridsize(1)):
        out[i] = 0


@jit
def _buckets(p, y, t, scale, zero, one, out):
    n = p.shape[0]
    k = p.shape[1]
    for idx in range(cuda.grid(1), n * k, cuda.gridsize(1)):
        i = idx // k
        j = idx - i * k
        v = p[i, j]
        if math.isnan(v):
            continue
        if v < zero:
            v = zero
        elif v > one:
            v = one
        b = int(math.ceil(v * scale)) - 1  # in p's dtype, as Keras computes it
        if b < 0:
            b = 0
        if y[i, j] != 0:
            cuda.atomic.add(out, b, 1)
        else:
            cuda.atomic.add(out, t + b, 1)


# --------------------------------------------------------------------------- launchers


def absolute_error_sum(p: Any, y: Any, out: Any, *, stream: Any = 0) -> None:
    """``out[0] = sum |p - y|`` over all elements (float64)."""
    _same_shape(p, y, "absolute_error_sum")
    _check(out, 1, "absolute_error_sum")
    _error_sum[reduce_config(p.shape[0]) + (stream,)](p, y, False, out)


def squared_error_sum(p: Any, y: Any, out: Any, *, stream: Any = 0) -> None:
    """``out[0] = sum (p - y)^2`` over all elements (float64)."""
    _same_shape(p, y, "squared_error_sum")
    _check(out, 1, "squared_error_sum")
    _error_sum[reduce_config(p.shape[0]) + (stream,)](p, y, True, out)


def top_k_count(p: Any, y: Any, k: int, out: Any, *, stream: Any = 0) -> None:
    """Rows whose ``argmax(y)`` is in the top ``k`` of ``p``, into ``out[0]`` (int64)."""
    _same_shape(p, y, "top_k_count")
    _check(out, 1, "top_k_count")
    _top_k[reduce_config(p.shape[0]) + (stream,)](p, y, int(k), out)


def sparse_top_k_count(p: Any, labels: Any, k: int, out: Any, *, stream: Any = 0) -> None:
    """Rows whose integer label is in the top ``k`` of ``p``, into ``out[0]`` (int64)."""
    if p.ndim != 2 or labels.ndim != 1 or labels.shape[0] != p.shape[0]:
        raise ValueError("sparse_top_k_count: batch sizes differ")
    _check(out, 1, "sparse_top_k_count")
    _sparse_top_k[reduce_config(p.shape[0]) + (stream,)](p, labels, int(k), out)


def confusion_counts(p: Any, y: Any, threshold: float, out: Any, *, stream: Any = 0) -> None:
    """``out[0:4] = (tp, fp, tn, fn)``: positive when ``p > threshold`` (rounded to ``p``'s
    dtype on the host), a target positive when non-zero."""
    _same_shape(p, y, "confusion_counts")
    _check(out, 4, "confusion_counts")
    thr = float(np.dtype(p.dtype).type(threshold))
    _confusion[reduce_config(p.shape[0]) + (stream,)](p, y, thr, out)


def auc_buckets(p: Any, y: Any, num_thresholds: int, out: Any, *, stream: Any = 0) -> None:
    """Positive / negative target counts per AUC bucket into ``out[0:T]`` / ``out[T:2T]``
    (see the CPU kernel)."""
    _same_shape(p, y, "auc_buckets")
    t = int(num_thresholds)
    _check(out, 2 * t, "auc_buckets")
    _zero[config_1d(2 * t) + (stream,)](out, 2 * t)
    n = p.shape[0] * p.shape[1]
    if n == 0:
        return
    f = np.dtype(p.dtype).type
    _buckets[config_1d(n) + (stream,)](p, y, t, f(t - 1), f(0.0), f(1.0), out)
