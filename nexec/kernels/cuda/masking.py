"""CUDA twins of :mod:`nexec.kernels.cpu.masking`: the OR of merged masks, and Keras 3 masks
on the loss and metrics of a masked model output.

Same positional arguments as the CPU kernels, on device arrays, plus a keyword-only
``stream``. ``mask_or`` is a grid-stride elementwise loop; each of the others is one block
(``reduce_config``): the valid rows are counted with the shared-memory tree reduction
``block_sum`` (deterministic, no atomics), then the weights are written (losses) or the row
values summed (metrics). Rows are checked on the host.
"""
from __future__ import annotations

from typing import Any

from numba import float64, int64

from nexec.kernels import masked_rows
from nexec.kernels.cuda.backend import MAX_THREADS, config_1d, cuda, jit
from nexec.kernels.cuda.loss import _argmax_row, block_sum, reduce_config
from nexec.kernels.cuda.metric import _in_top_k

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


@jit
def _mask_weights(ids, sw, use_sw, out):
    n = ids.shape[0]
    part = cuda.shared.array(MAX_THREADS, int64)
    cnt = 0
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        if ids[i] != 0:
            cnt += 1
    valid = block_sum(part, cnt)
    scale = float64(n) / float64(valid) if valid > 0 else 0.0
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        f = scale if ids[i] != 0 else 0.0
        if use_sw:
            f *= float64(sw[i])
        out[i] = f


@jit(device=True)
def _dense_row(p, y, i, code, param):
    k = p.shape[1]
    if k == 0:
        return 0.0
    if code == CATEGORICAL_ACCURACY:
        return 1.0 if _argmax_row(p, i) == _argmax_row(y, i) else 0.0
    if code == TOP_K:
        return 1.0 if _in_top_k(p, i, _argmax_row(y, i), int64(param)) else 0.0
    total = 0.0
    for j in range(k):
        if code == BINARY_ACCURACY:
            pred = 1.0 if p[i, j] > param else 0.0
            if float64(y[i, j]) == pred:
                total += 1.0
        else:
            d = float64(p[i, j]) - float64(y[i, j])
            total += abs(d) if code == ABSOLUTE_ERROR else d * d
    return total / k


@jit
def _metric_sums(p, y, code, param, ids, out):
    n = p.shape[0]
    part = cuda.shared.array(MAX_THREADS, float64)
    acc = 0.0
    cnt = 0.0
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        if ids[i] != 0:
            cnt += 1.0
            acc += _dense_row(p, y, i, code, param)
    total = block_sum(part, acc)
    cuda.syncthreads()
    valid = block_sum(part, cnt)
    if cuda.threadIdx.x == 0:
        out[0] = total
        out[1] = valid


@jit
def _sparse_metric_sums(p, labels, code, param, ids, out):
    n = p.shape[0]
    part = cuda.shared.array(MAX_THREADS, float64)
    acc = 0.0
    cnt = 0.0
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        if ids[i] != 0:
            cnt += 1.0
            if p.shape[1] > 0:
                if code == SPARSE_ACCURACY:
                    if _argmax_row(p, i) == labels[i]:
                        acc += 1.0
                elif _in_top_k(p, i, labels[i], int64(param)):
                    acc += 1.0
    total = block_sum(part, acc)
    cuda.syncthreads()
    valid = block_sum(part, cnt)
    if cuda.threadIdx.x == 0:
        out[0] = total
        out[1] = valid


@jit
def _mask_or(a, b, out):
    m = out.shape[1]
    for k in range(cuda.grid(1), out.shape[0] * m, cuda.gridsize(1)):
        i, j = k // m, k % m
        out[i, j] = 1 if (a[i, j] != 0 or b[i, j] != 0) else 0


def mask_or(a: Any, b: Any, out: Any, *, stream: Any = 0) -> None:
    """``out[i, j] = 1 if a[i, j] != 0 or b[i, j] != 0 else 0`` (2-D masks of one shape;
    ``out`` may be ``a``): the OR of a merge's input masks."""
    if out.ndim != 2 or tuple(a.shape) != tuple(out.shape) or \
            tuple(b.shape) != tuple(out.shape):
        raise ValueError("mask_or: a, b and out must be 2-D of one shape")
    n = out.shape[0] * out.shape[1]
    if n:
        _mask_or[config_1d(n) + (stream,)](a, b, out)


def _rows(ids: Any, n: int, where: str) -> None:
    if ids.ndim != 1 or ids.shape[0] != n:
        raise ValueError(f"{where}: ids must be 1-D with one entry per row ({n})")


def loss_mask_weights(ids: Any, out: Any, *, stream: Any = 0) -> None:
    """``out[i] = (ids[i] != 0) * total / valid`` (all 0 when no row is valid)."""
    _rows(ids, out.shape[0], "loss_mask_weights")
    _mask_weights[reduce_config(ids.shape[0]) + (stream,)](ids, out, False, out)


def loss_mask_weights_times(ids: Any, sw: Any, out: Any, *, stream: Any = 0) -> None:
    """``out[i] = sw[i] * (ids[i] != 0) * total / valid`` (``out`` may be ``sw``)."""
    _rows(ids, out.shape[0], "loss_mask_weights_times")
    _rows(sw, out.shape[0], "loss_mask_weights_times")
    _mask_weights[reduce_config(ids.shape[0]) + (stream,)](ids, sw, True, out)


def masked_metric_sums(p: Any, y: Any, code: int, param: float, ids: Any, out: Any, *,
                       stream: Any = 0) -> None:
    """``out[0:2]`` = (sum of the row values over rows with ``ids != 0``, those rows)."""
    if p.ndim != 2 or p.shape != y.shape:
        raise ValueError("masked_metric_sums: p and y shapes differ")
    _rows(ids, p.shape[0], "masked_metric_sums")
    thr = p.dtype.type(param)  # Keras compares in the prediction's dtype
    _metric_sums[reduce_config(p.shape[0]) + (stream,)](p, y, int(code), thr, ids, out)


def masked_sparse_metric_sums(p: Any, labels: Any, code: int, param: float, ids: Any,
                              out: Any, *, stream: Any = 0) -> None:
    """:func:`masked_metric_sums` for integer labels."""
    if p.ndim != 2 or labels.ndim != 1 or labels.shape[0] != p.shape[0]:
        raise ValueError("masked_sparse_metric_sums: batch sizes differ")
    _rows(ids, p.shape[0], "masked_sparse_metric_sums")
    _sparse_metric_sums[reduce_config(p.shape[0]) + (stream,)](p, labels, int(code),
                                                                float(param), ids, out)
