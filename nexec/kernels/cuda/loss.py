"""CUDA losses, their gradients, and accuracy counts, with the Keras 3 semantics of
:mod:`nexec.kernels.cpu.loss` (read its docstring: clipping to the dtype-rounded
``[eps, 1 - eps]``, zero gradient through clipped entries, the fused ``*_softmax_*`` /
``sigmoid_*`` logit gradients ``scale * (p * sum(y) - y)`` and ``scale * (p - y) / C``).

Signatures: the same positional arguments as the CPU kernels, on device arrays, plus an
optional keyword-only ``stream``. Reductions write into a 1-element device array ``out``
(last positional argument) and return None, on both devices:

* **loss values** (``categorical_crossentropy``, ``sparse_categorical_crossentropy``,
  ``binary_crossentropy``, ``mean_squared_error``): ``out`` is float64 and receives the
  batch mean (a float32 one would get the float64 result rounded). An empty batch writes
  NaN.
* **weighted values** (``*_weighted``, for ``fit(sample_weight=...)``): the value kernel's
  arguments with ``w`` (one weight per row) before ``out``, which receives
  ``sum_i w_i * loss_i / N``; ``scale_rows(dp, w)`` scales a loss gradient's rows in place.
* **counts** (``*_accuracy_count``): ``out`` is int64 and receives the count.
* ``check_finite(x, out)``: ``out`` is int64 and receives 1 when every element of ``x``
  is finite and 0 otherwise; ``x`` must be C-contiguous (any rank) or 1-D (the CPU kernel
  also takes any strided view).

Differences from the CPU kernels:

* **labels are not validated on the device** (a kernel cannot raise): the CPU kernels
  raise ValueError for a label outside ``[0, C)``, the CUDA ones make that row's loss NaN
  (so the batch mean is NaN), its gradient row zero, and never count it as correct. The
  trainer's data checks (``nexec/training/data.py``) reject such labels on the host before
  they reach a device. A row of ``p`` summing to zero (CPU: ZeroDivisionError) likewise
  gives NaN.

Parallel layout: values and counts are one block (up to 256 threads, one row per thread,
grid-stride over rows) with a float64 (int64 for counts) shared-memory tree reduction and
a single store by thread 0: deterministic, no atomics and no zeroing launch; loss work is
tiny next to the layers. Gradients run one thread per row (kernels that need a row sum)
or per element, grid-stride over any number of blocks. Arithmetic is in float64, rounded
once on store; the clip bounds are computed on the host in the prediction's dtype.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import float64, int64

from nexec.kernels import loss_rows
from nexec.kernels.cuda.backend import MAX_THREADS, config_1d, cuda, jit, max_threads, pow2_at_least

__all__ = [
    "binary_accuracy_count",
    "binary_crossentropy",
    "binary_crossentropy_grad",
    "block_sum",
    "categorical_accuracy_count",
    "categorical_crossentropy",
    "categorical_crossentropy_grad",
    "check_finite",
    "check_out",
    "mean_squared_error",
    "mean_squared_error_grad",
    "reduce_config",
    "row_loss",
    "row_loss_grad",
    "sigmoid_binary_crossentropy_grad",
    "softmax_crossentropy_grad",
    "sparse_categorical_accuracy_count",
    "sparse_categorical_crossentropy",
    "sparse_categorical_crossentropy_grad",
    "sparse_categorical_crossentropy_logits",
    "sparse_categorical_crossentropy_logits_grad",
    "sparse_softmax_crossentropy_grad",
    "categorical_crossentropy_weighted",
    "sparse_categorical_crossentropy_weighted",
    "binary_crossentropy_weighted",
    "mean_squared_error_weighted",
    "row_loss_weighted",
    "sparse_categorical_crossentropy_logits_weighted",
    "scale_rows",
]


# --------------------------------------------------------------------------- helpers


def _clip_bounds(dtype: Any, eps: float) -> tuple[float, float]:
    """``(eps, 1 - eps)`` rounded to the prediction dtype, as floats (CPU ``_clip_bounds``)."""
    t = np.dtype(dtype).type
    e = t(eps)
    return float(e), float(t(1.0) - e)


def reduce_config(n: int) -> tuple[int, int]:
    """One block, a power of two of threads (the tree reduction needs it), for ``n`` rows."""
    return 1, pow2_at_least(n, max_threads())


def check_out(out: Any, where: str) -> None:
    """Host check that ``out`` can take a reduction's result in ``out[0]``."""
    if out.ndim != 1 or out.shape[0] < 1:
        raise ValueError(f"{where}: out must be a 1-element device array")


@jit(device=True)
def block_sum(part, v):
    """Sum of ``v`` over the threads of a one-dimensional, power-of-two block (every
    thread must call it; ``part`` is a shared array of at least ``blockDim.x`` entries)."""
    t = cuda.threadIdx.x
    part[t] = v
    cuda.syncthreads()
    s = cuda.blockDim.x // 2
    while s > 0:
        if t < s:
            part[t] += part[t + s]
        cuda.syncthreads()
        s //= 2
    return part[0]


@jit(device=True)
def _argmax_row(a, i):
    """First index of the row maximum, like ``np.argmax`` (a NaN wins, as in NumPy)."""
    k = a.shape[1]
    best = 0
    bv = a[i, 0]
    if math.isnan(bv):
        return 0
    for j in range(1, k):
        v = a[i, j]
        if math.isnan(v):
            return j
        if v > bv:
            bv = v
            best = j
    return best


@jit(device=True)
def _clip(q, lo, hi):
    """clip(q, lo, hi) with NaN passed through (the builtin min/max do not type on the
    CUDA target for these arguments)."""
    if q < lo:
        return lo
    if q > hi:
        return hi
    return q


@jit(device=True)
def _row_sum(p, i):
    s = 0.0
    for j in range(p.shape[1]):
        s += p[i, j]
    return s


# --------------------------------------------------------------------------- row losses


@jit(device=True)
def _cce_row(p, y, i, lo, hi):
    """Categorical crossentropy of row ``i`` (a row summing to zero gives NaN)."""
    k = p.shape[1]
    s = _row_sum(p, i)
    row = 0.0
    for j in range(k):
        yj = float64(y[i, j])
        if yj != 0.0:
            q = p[i, j] / s if s != 0.0 else math.nan
            c = _clip(q, lo, hi)
            row -= yj * math.log(c)
    return row


@jit(device=True)
def _sparse_cce_neg_row(p, labels, i, lo, hi):
    """Minus the sparse crossentropy of row ``i`` (NaN for a bad label or a zero row)."""
    lab = labels[i]
    s = _row_sum(p, i)
    if lab < 0 or lab >= p.shape[1] or s == 0.0:
        return math.nan
    return math.log(_clip(p[i, lab] / s, lo, hi))


@jit(device=True)
def _bce_row(p, y, i, lo, hi):
    """Sum over row ``i`` of the elementwise binary crossentropy (not yet over ``C``)."""
    row = 0.0
    for j in range(p.shape[1]):
        c = _clip(float64(p[i, j]), lo, hi)
        yj = float64(y[i, j])
        row -= yj * math.log(c) + (1.0 - yj) * math.log(1.0 - c)
    return row


@jit(device=True)
def _mse_row(p, y, i):
    row = 0.0
    for j in range(p.shape[1]):
        d = float64(p[i, j]) - float64(y[i, j])
        row += d * d
    return row


# --------------------------------------------------------------------------- value kernels


@jit
def _cce_value(p, y, lo, hi, out):
    n = p.shape[0]
    part = cuda.shared.array(MAX_THREADS, float64)
    acc = 0.0
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        acc += _cce_row(p, y, i, lo, hi)
    total = block_sum(part, acc)
    if cuda.threadIdx.x == 0:
        out[0] = total / n if n > 0 else math.nan


@jit
def _sparse_cce_value(p, labels, lo, hi, out):
    n = p.shape[0]
    part = cuda.shared.array(MAX_THREADS, float64)
    acc = 0.0
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        acc -= _sparse_cce_neg_row(p, labels, i, lo, hi)
    total = block_sum(part, acc)
    if cuda.threadIdx.x == 0:
        out[0] = total / n if n > 0 else math.nan


@jit
def _bce_value(p, y, lo, hi, out):
    n = p.shape[0]
    k = p.shape[1]
    part = cuda.shared.array(MAX_THREADS, float64)
    acc = 0.0
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        acc += _bce_row(p, y, i, lo, hi)
    total = block_sum(part, acc)
    if cuda.threadIdx.x == 0:
        out[0] = total / (n * k) if n * k > 0 else math.nan


@jit
def _mse_value(p, y, out):
    n = p.shape[0]
    k = p.shape[1]
    part = cuda.shared.array(MAX_THREADS, float64)
    acc = 0.0
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        for j in range(k):
            d = float64(p[i, j]) - float64(y[i, j])
            acc += d * d
    total = block_sum(part, acc)
    if cuda.threadIdx.x == 0:
        out[0] = total / (n * k) if n * k > 0 else math.nan


# --------------------------------------------------------------------------- gradient kernels


@jit
def _cce_grad(p, y, lo, hi, scale, dp):
    n = p.shape[0]
    k = p.shape[1]
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        s = _row_sum(p, i)
        inv_s = 1.0 / s if s != 0.0 else math.nan
        gq = 0.0  # sum_j g_j q_j = -(sum of y over unclipped entries)
        for j in range(k):
            q = p[i, j] * inv_s
            if q >= lo and q <= hi:
                gq -= y[i, j]
        f = scale * inv_s
        for j in range(k):
            q = p[i, j] * inv_s
            g = 0.0
            if q >= lo and q <= hi:  # q >= lo > 0: no division by zero
                g = -float64(y[i, j]) / q
            dp[i, j] = f * (g - gq)


@jit
def _softmax_ce_grad(p, y, scale, dz):
    n = p.shape[0]
    k = p.shape[1]
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        sy = _row_sum(y, i)
        for j in range(k):
            dz[i, j] = scale * (p[i, j] * sy - y[i, j])


@jit
def _sparse_cce_grad(p, labels, lo, hi, scale, dp):
    n = p.shape[0]
    k = p.shape[1]
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        lab = labels[i]
        s = _row_sum(p, i)
        q = math.nan
        if lab >= 0 and lab < k and s != 0.0:
            q = p[i, lab] / s
        if q >= lo and q <= hi:
            a = scale / (q * s)  # scale * |g_l| / S
            for j in range(k):
                dp[i, j] = a * q
            dp[i, lab] = a * (q - 1.0)
        else:
            for j in range(k):
                dp[i, j] = 0.0


@jit
def _sparse_softmax_ce_grad(p, labels, scale, dz):
    n = p.shape[0]
    k = p.shape[1]
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        lab = labels[i]
        for j in range(k):
            dz[i, j] = scale * p[i, j]
        if lab >= 0 and lab < k:
            dz[i, lab] = scale * (p[i, lab] - 1.0)
        else:
            for j in range(k):
                dz[i, j] = 0.0


@jit
def _bce_grad(p, y, lo, hi, f, dp):
    n = p.shape[0]
    k = p.shape[1]
    for idx in range(cuda.grid(1), n * k, cuda.gridsize(1)):
        i = idx // k
        j = idx - i * k
        pj = float64(p[i, j])
        yj = float64(y[i, j])
        d = 0.0
        if pj >= lo and pj <= hi:  # 0 < pj < 1: no division by zero
            d = f * ((1.0 - yj) / (1.0 - pj) - yj / pj)
        dp[i, j] = d


@jit
def _diff_grad(p, y, f, dz):
    """dz = f * (p - y): sigmoid-binary-crossentropy (f = scale / C) and MSE (2 scale / C)."""
    n = p.shape[0]
    k = p.shape[1]
    for idx in range(cuda.grid(1), n * k, cuda.gridsize(1)):
        i = idx // k
        j = idx - i * k
        dz[i, j] = f * (float64(p[i, j]) - float64(y[i, j]))


# --------------------------------------------------------------------------- count kernels


@jit
def _cat_acc(p, y, out):
    n = p.shape[0]
    k = p.shape[1]
    part = cuda.shared.array(MAX_THREADS, int64)
    cnt = 0
    if k > 0:
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            if _argmax_row(p, i) == _argmax_row(y, i):
                cnt += 1
    total = block_sum(part, cnt)
    if cuda.threadIdx.x == 0:
        out[0] = total


@jit
def _sparse_cat_acc(p, labels, out):
    n = p.shape[0]
    k = p.shape[1]
    part = cuda.shared.array(MAX_THREADS, int64)
    cnt = 0
    if k > 0:
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            if _argmax_row(p, i) == labels[i]:
                cnt += 1
    total = block_sum(part, cnt)
    if cuda.threadIdx.x == 0:
        out[0] = total


@jit
def _bin_acc(p, y, thr, out):
    n = p.shape[0]
    k = p.shape[1]
    part = cuda.shared.array(MAX_THREADS, int64)
    cnt = 0
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        for j in range(k):
            pred = 1.0 if p[i, j] > thr else 0.0
            if float64(y[i, j]) == pred:
                cnt += 1
    total = block_sum(part, cnt)
    if cuda.threadIdx.x == 0:
        out[0] = total


@jit
def _store_first(out, value):
    if cuda.grid(1) == 0:
        out[0] = value


@jit
def _clear_if_not_finite(x, out):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = x[i]
        if v - v != 0:  # nan - nan and inf - inf are nan; finite - itself is exactly 0
            out[0] = 0  # every writer stores the same value: a benign race


# --------------------------------------------------------------------------- by code
# One block: the hinge losses first need "every target is 0 or 1" over the whole batch.

_row_value = jit(device=True)(loss_rows.row_value) if cuda is not None else None
_row_grad = jit(device=True)(loss_rows.row_grad) if cuda is not None else None


@jit(device=True)
def _hinge_pm(part, code, y):
    """1.0 when the hinge targets are all 0/1 (every thread of the block must call it)."""
    bad = 0.0
    if code == loss_rows.HINGE or code == loss_rows.SQUARED_HINGE:
        k = y.shape[1]
        for i in range(cuda.threadIdx.x, y.shape[0], cuda.blockDim.x):
            for j in range(k):
                v = float64(y[i, j])
                if v != 0.0 and v != 1.0:
                    bad += 1.0
    total = block_sum(part, bad)
    cuda.syncthreads()
    if code == loss_rows.HINGE or code == loss_rows.SQUARED_HINGE:
        return 1.0 if total == 0.0 else 0.0
    return 0.0


@jit
def _row_loss_value(p, y, code, a, eps, out):
    n = p.shape[0]
    part = cuda.shared.array(MAX_THREADS, float64)
    pm = _hinge_pm(part, code, y)
    acc = 0.0
    if p.shape[1] > 0:
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            acc += _row_value(code, p, y, i, a, eps, pm)
    total = block_sum(part, acc)
    if cuda.threadIdx.x == 0:
        out[0] = total / n if n * p.shape[1] > 0 else math.nan


@jit
def _row_loss_grad(p, y, code, a, eps, scale, dp):
    part = cuda.shared.array(MAX_THREADS, float64)
    pm = _hinge_pm(part, code, y)
    for i in range(cuda.threadIdx.x, p.shape[0], cuda.blockDim.x):
        _row_grad(code, p, y, i, a, eps, pm, scale, dp)


@jit(device=True)
def _logsumexp_row(z, i):
    m = -math.inf
    for j in range(z.shape[1]):
        zj = float64(z[i, j])
        m = zj if zj > m else m  # not max(): the CUDA target does not type it for floats
    se = 0.0
    for j in range(z.shape[1]):
        se += math.exp(float64(z[i, j]) - m)
    return m + math.log(se)


@jit(device=True)
def _sparse_logits_row(z, labels, i):
    lab = labels[i]
    if lab >= 0 and lab < z.shape[1]:
        return _logsumexp_row(z, i) - float64(z[i, lab])
    return math.nan


@jit
def _sparse_logits_value(z, labels, out):
    n = z.shape[0]
    part = cuda.shared.array(MAX_THREADS, float64)
    acc = 0.0
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        acc += _sparse_logits_row(z, labels, i)
    total = block_sum(part, acc)
    if cuda.threadIdx.x == 0:
        out[0] = total / n if n > 0 else math.nan


@jit
def _sparse_logits_grad(z, labels, scale, dz):
    k = z.shape[1]
    for i in range(cuda.grid(1), z.shape[0], cuda.gridsize(1)):
        lab = labels[i]
        lse = _logsumexp_row(z, i)
        for j in range(k):
            dz[i, j] = scale * math.exp(float64(z[i, j]) - lse) if lab >= 0 and lab < k else 0.0
        if lab >= 0 and lab < k:
            dz[i, lab] -= scale


# --------------------------------------------------------------------------- weighted
# ``fit(sample_weight=...)``: ``sum_i w_i * loss_i / N`` (Keras' "sum_over_batch_size"),
# one block as the unweighted values; ``scale_rows`` scales a loss gradient's rows by ``w``.


@jit
def _cce_value_w(p, y, lo, hi, w, out):
    n = p.shape[0]
    part = cuda.shared.array(MAX_THREADS, float64)
    acc = 0.0
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        acc += float64(w[i]) * _cce_row(p, y, i, lo, hi)
    total = block_sum(part, acc)
    if cuda.threadIdx.x == 0:
        out[0] = total / n if n > 0 else math.nan


@jit
def _sparse_cce_value_w(p, labels, lo, hi, w, out):
    n = p.shape[0]
    part = cuda.shared.array(MAX_THREADS, float64)
    acc = 0.0
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        acc -= float64(w[i]) * _sparse_cce_neg_row(p, labels, i, lo, hi)
    total = block_sum(part, acc)
    if cuda.threadIdx.x == 0:
        out[0] = total / n if n > 0 else math.nan


@jit
def _bce_value_w(p, y, lo, hi, w, out):
    n = p.shape[0]
    k = p.shape[1]
    part = cuda.shared.array(MAX_THREADS, float64)
    acc = 0.0
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        acc += float64(w[i]) * _bce_row(p, y, i, lo, hi)
    total = block_sum(part, acc)
    if cuda.threadIdx.x == 0:
        out[0] = total / (n * k) if n * k > 0 else math.nan


@jit
def _mse_value_w(p, y, w, out):
    n = p.shape[0]
    k = p.shape[1]
    part = cuda.shared.array(MAX_THREADS, float64)
    acc = 0.0
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        acc += float64(w[i]) * _mse_row(p, y, i)
    total = block_sum(part, acc)
    if cuda.threadIdx.x == 0:
        out[0] = total / (n * k) if n * k > 0 else math.nan


@jit
def _row_loss_value_w(p, y, code, a, eps, w, out):
    n = p.shape[0]
    part = cuda.shared.array(MAX_THREADS, float64)
    pm = _hinge_pm(part, code, y)
    acc = 0.0
    if p.shape[1] > 0:
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            acc += float64(w[i]) * _row_value(code, p, y, i, a, eps, pm)
    total = block_sum(part, acc)
    if cuda.threadIdx.x == 0:
        out[0] = total / n if n * p.shape[1] > 0 else math.nan


@jit
def _sparse_logits_value_w(z, labels, w, out):
    n = z.shape[0]
    part = cuda.shared.array(MAX_THREADS, float64)
    acc = 0.0
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        acc += float64(w[i]) * _sparse_logits_row(z, labels, i)
    total = block_sum(part, acc)
    if cuda.threadIdx.x == 0:
        out[0] = total / n if n > 0 else math.nan


@jit
def _scale_rows(dp, w):
    cols = dp.shape[1]
    for idx in range(cuda.grid(1), dp.shape[0] * cols, cuda.gridsize(1)):
        i = idx // cols
        j = idx - i * cols
        dp[i, j] = float64(dp[i, j]) * float64(w[i])


# --------------------------------------------------------------------------- launch helpers


def _same_shape(p: Any, y: Any, where: str, *more: Any) -> None:
    if p.ndim != 2 or p.shape != y.shape or any(a.shape != p.shape for a in more):
        raise ValueError(f"{where}: shapes differ")


def _labels_shape(p: Any, labels: Any, where: str) -> None:
    if p.ndim != 2 or labels.ndim != 1 or labels.shape[0] != p.shape[0]:
        raise ValueError(f"{where}: labels and p have different batch sizes")


def _rows(n: int) -> tuple[int, int]:
    return config_1d(n)


# --------------------------------------------------------------------------- categorical


def categorical_crossentropy(p: Any, y: Any, eps: float, out: Any, *, stream: Any = 0) -> None:
    """Keras ``categorical_crossentropy`` (probabilities), batch mean written to ``out[0]``.

    Per row: ``q = p / sum(p)``, ``c = clip(q, eps, 1 - eps)``, ``-sum(y * log(c))``.
    """
    _same_shape(p, y, "categorical_crossentropy")
    check_out(out, "categorical_crossentropy")
    lo, hi = _clip_bounds(p.dtype, eps)
    _cce_value[reduce_config(p.shape[0]) + (stream,)](p, y, lo, hi, out)


def categorical_crossentropy_grad(p: Any, y: Any, eps: float, scale: float, dp: Any, *,
                                  stream: Any = 0) -> None:
    """Exact gradient of :func:`categorical_crossentropy` w.r.t. ``p``, times ``scale``."""
    _same_shape(p, y, "categorical_crossentropy_grad", dp)
    lo, hi = _clip_bounds(p.dtype, eps)
    if p.shape[0] * p.shape[1] == 0:
        return
    _cce_grad[_rows(p.shape[0]) + (stream,)](p, y, lo, hi, float(scale), dp)


def softmax_crossentropy_grad(p: Any, y: Any, scale: float, dz: Any, *,
                              stream: Any = 0) -> None:
    """``dz = scale * (p * sum_row(y) - y)``: crossentropy w.r.t. the softmax logits."""
    _same_shape(p, y, "softmax_crossentropy_grad", dz)
    if p.shape[0] * p.shape[1] == 0:
        return
    _softmax_ce_grad[_rows(p.shape[0]) + (stream,)](p, y, float(scale), dz)


# --------------------------------------------------------------------------- sparse


def sparse_categorical_crossentropy(p: Any, labels: Any, eps: float, out: Any, *,
                                    stream: Any = 0) -> None:
    """Keras ``sparse_categorical_crossentropy``, batch mean written to ``out[0]``.

    A label outside ``[0, C)`` makes the result NaN (the CPU kernel raises ValueError).
    """
    _labels_shape(p, labels, "sparse_categorical_crossentropy")
    check_out(out, "sparse_categorical_crossentropy")
    lo, hi = _clip_bounds(p.dtype, eps)
    _sparse_cce_value[reduce_config(p.shape[0]) + (stream,)](p, labels, lo, hi, out)


def sparse_categorical_crossentropy_grad(p: Any, labels: Any, eps: float, scale: float,
                                         dp: Any, *, stream: Any = 0) -> None:
    """Exact gradient of :func:`sparse_categorical_crossentropy` w.r.t. ``p``.

    Rows with a clipped ``q_label`` (or an invalid label) get a zero gradient.
    """
    _labels_shape(p, labels, "sparse_categorical_crossentropy_grad")
    if dp.shape != p.shape:
        raise ValueError("sparse_categorical_crossentropy_grad: shapes differ")
    lo, hi = _clip_bounds(p.dtype, eps)
    if p.shape[0] * p.shape[1] == 0:
        return
    _sparse_cce_grad[_rows(p.shape[0]) + (stream,)](p, labels, lo, hi, float(scale), dp)


def sparse_softmax_crossentropy_grad(p: Any, labels: Any, scale: float, dz: Any, *,
                                     stream: Any = 0) -> None:
    """``dz = scale * (p - one_hot(labels))``; a row with an invalid label gets zeros."""
    _labels_shape(p, labels, "sparse_softmax_crossentropy_grad")
    if dz.shape != p.shape:
        raise ValueError("sparse_softmax_crossentropy_grad: shapes differ")
    if p.shape[0] * p.shape[1] == 0:
        return
    _sparse_softmax_ce_grad[_rows(p.shape[0]) + (stream,)](p, labels, float(scale), dz)


# --------------------------------------------------------------------------- binary


def binary_crossentropy(p: Any, y: Any, eps: float, out: Any, *, stream: Any = 0) -> None:
    """Keras ``binary_crossentropy``: mean over the last axis, then rows, into ``out[0]``."""
    _same_shape(p, y, "binary_crossentropy")
    check_out(out, "binary_crossentropy")
    lo, hi = _clip_bounds(p.dtype, eps)
    _bce_value[reduce_config(p.shape[0]) + (stream,)](p, y, lo, hi, out)


def binary_crossentropy_grad(p: Any, y: Any, eps: float, scale: float, dp: Any, *,
                             stream: Any = 0) -> None:
    """``dp = scale / C * ((1 - y) / (1 - p) - y / p)``, zero where ``p`` is clipped."""
    _same_shape(p, y, "binary_crossentropy_grad", dp)
    n, k = p.shape
    if n * k == 0:
        return
    lo, hi = _clip_bounds(p.dtype, eps)
    _bce_grad[config_1d(n * k) + (stream,)](p, y, lo, hi, float(scale) / k, dp)


def sigmoid_binary_crossentropy_grad(p: Any, y: Any, scale: float, dz: Any, *,
                                     stream: Any = 0) -> None:
    """``dz = scale * (p - y) / C``: binary crossentropy w.r.t. the sigmoid logits."""
    _same_shape(p, y, "sigmoid_binary_crossentropy_grad", dz)
    n, k = p.shape
    if n * k == 0:
        return
    _diff_grad[config_1d(n * k) + (stream,)](p, y, float(scale) / k, dz)


# --------------------------------------------------------------------------- mse


def mean_squared_error(p: Any, y: Any, out: Any, *, stream: Any = 0) -> None:
    """Keras ``mean_squared_error``: mean of ``(p - y)^2`` over all elements, into ``out[0]``."""
    _same_shape(p, y, "mean_squared_error")
    check_out(out, "mean_squared_error")
    _mse_value[reduce_config(p.shape[0]) + (stream,)](p, y, out)


def mean_squared_error_grad(p: Any, y: Any, scale: float, dp: Any, *, stream: Any = 0) -> None:
    """``dp = scale * 2 (p - y) / C``."""
    _same_shape(p, y, "mean_squared_error_grad", dp)
    n, k = p.shape
    if n * k == 0:
        return
    _diff_grad[config_1d(n * k) + (stream,)](p, y, 2.0 * float(scale) / k, dp)


# --------------------------------------------------------------------------- by code


def row_loss(p: Any, y: Any, code: int, a: float, eps: float, out: Any, *,
             stream: Any = 0) -> None:
    """The Keras loss ``code`` of :mod:`nexec.kernels.loss_rows`, batch mean into ``out[0]``."""
    _same_shape(p, y, "row_loss")
    check_out(out, "row_loss")
    _row_loss_value[reduce_config(p.shape[0]) + (stream,)](p, y, int(code), float(a),
                                                            float(eps), out)


def row_loss_grad(p: Any, y: Any, code: int, a: float, eps: float, scale: float, dp: Any, *,
                  stream: Any = 0) -> None:
    """Exact gradient of :func:`row_loss` w.r.t. ``p``, times ``scale``."""
    _same_shape(p, y, "row_loss_grad", dp)
    if p.shape[0] * p.shape[1] == 0:
        return
    _row_loss_grad[reduce_config(p.shape[0]) + (stream,)](p, y, int(code), float(a),
                                                           float(eps), float(scale), dp)


def sparse_categorical_crossentropy_logits(z: Any, labels: Any, out: Any, *,
                                           stream: Any = 0) -> None:
    """``logsumexp(z) - z[label]`` per row, batch mean into ``out[0]`` (bad label: NaN)."""
    _labels_shape(z, labels, "sparse_categorical_crossentropy_logits")
    check_out(out, "sparse_categorical_crossentropy_logits")
    _sparse_logits_value[reduce_config(z.shape[0]) + (stream,)](z, labels, out)


def sparse_categorical_crossentropy_logits_grad(z: Any, labels: Any, scale: float, dz: Any, *,
                                                stream: Any = 0) -> None:
    """``dz = scale * (softmax(z) - one_hot(labels))``; a bad label's row gets zeros."""
    _labels_shape(z, labels, "sparse_categorical_crossentropy_logits_grad")
    if dz.shape != z.shape:
        raise ValueError("sparse_categorical_crossentropy_logits_grad: shapes differ")
    if z.shape[0] * z.shape[1] == 0:
        return
    _sparse_logits_grad[_rows(z.shape[0]) + (stream,)](z, labels, float(scale), dz)


# --------------------------------------------------------------------------- metrics


def categorical_accuracy_count(p: Any, y: Any, out: Any, *, stream: Any = 0) -> None:
    """Number of rows with ``argmax(p) == argmax(y)`` (first index on ties) into ``out[0]``."""
    _same_shape(p, y, "categorical_accuracy_count")
    check_out(out, "categorical_accuracy_count")
    _cat_acc[reduce_config(p.shape[0]) + (stream,)](p, y, out)


def sparse_categorical_accuracy_count(p: Any, labels: Any, out: Any, *,
                                      stream: Any = 0) -> None:
    """Number of rows whose ``argmax(p)`` equals the integer label, into ``out[0]``."""
    if p.ndim != 2 or labels.ndim != 1 or labels.shape[0] != p.shape[0]:
        raise ValueError("sparse_categorical_accuracy_count: batch sizes differ")
    check_out(out, "sparse_categorical_accuracy_count")
    _sparse_cat_acc[reduce_config(p.shape[0]) + (stream,)](p, labels, out)


def binary_accuracy_count(p: Any, y: Any, threshold: float, out: Any, *,
                          stream: Any = 0) -> None:
    """Number of elements where ``float(p > threshold) == y``, into ``out[0]``.

    The threshold is rounded to ``p``'s dtype on the host, as Keras compares.
    """
    _same_shape(p, y, "binary_accuracy_count")
    check_out(out, "binary_accuracy_count")
    thr = float(np.dtype(p.dtype).type(threshold))
    _bin_acc[reduce_config(p.shape[0]) + (stream,)](p, y, thr, out)


def check_finite(x: Any, out: Any, *, stream: Any = 0) -> None:
    """``out[0] = 1`` (int64) when every element of ``x`` is finite, else 0 (two launches).

    ``x``: a C-contiguous device array of any rank (viewed flat), or any 1-D array.
    """
    check_out(out, "check_finite")
    flat = x if x.ndim == 1 else x.reshape(x.size)
    _store_first[1, 1, stream](out, 1)
    if flat.shape[0] == 0:
        return
    _clear_if_not_finite[config_1d(flat.shape[0]) + (stream,)](flat, out)


# --------------------------------------------------------------------------- weighted


def _weights(p: Any, w: Any, where: str) -> None:
    if w.ndim != 1 or w.shape[0] != p.shape[0]:
        raise ValueError(f"{where}: w must hold one weight per row of p")


def categorical_crossentropy_weighted(p: Any, y: Any, eps: float, w: Any, out: Any, *,
                                      stream: Any = 0) -> None:
    """``sum_i w_i * cce_i / N`` into ``out[0]`` (the CPU kernel of the same name)."""
    _same_shape(p, y, "categorical_crossentropy_weighted")
    _weights(p, w, "categorical_crossentropy_weighted")
    check_out(out, "categorical_crossentropy_weighted")
    lo, hi = _clip_bounds(p.dtype, eps)
    _cce_value_w[reduce_config(p.shape[0]) + (stream,)](p, y, lo, hi, w, out)


def sparse_categorical_crossentropy_weighted(p: Any, labels: Any, eps: float, w: Any,
                                             out: Any, *, stream: Any = 0) -> None:
    """``sum_i w_i * scce_i / N`` into ``out[0]`` (a bad label makes it NaN)."""
    _labels_shape(p, labels, "sparse_categorical_crossentropy_weighted")
    _weights(p, w, "sparse_categorical_crossentropy_weighted")
    check_out(out, "sparse_categorical_crossentropy_weighted")
    lo, hi = _clip_bounds(p.dtype, eps)
    _sparse_cce_value_w[reduce_config(p.shape[0]) + (stream,)](p, labels, lo, hi, w, out)


def binary_crossentropy_weighted(p: Any, y: Any, eps: float, w: Any, out: Any, *,
                                 stream: Any = 0) -> None:
    """``sum_i w_i * bce_i / N`` (``bce_i`` the mean over row ``i``) into ``out[0]``."""
    _same_shape(p, y, "binary_crossentropy_weighted")
    _weights(p, w, "binary_crossentropy_weighted")
    check_out(out, "binary_crossentropy_weighted")
    lo, hi = _clip_bounds(p.dtype, eps)
    _bce_value_w[reduce_config(p.shape[0]) + (stream,)](p, y, lo, hi, w, out)


def mean_squared_error_weighted(p: Any, y: Any, w: Any, out: Any, *, stream: Any = 0) -> None:
    """``sum_i w_i * mse_i / N`` (``mse_i`` the mean over row ``i``) into ``out[0]``."""
    _same_shape(p, y, "mean_squared_error_weighted")
    _weights(p, w, "mean_squared_error_weighted")
    check_out(out, "mean_squared_error_weighted")
    _mse_value_w[reduce_config(p.shape[0]) + (stream,)](p, y, w, out)


def row_loss_weighted(p: Any, y: Any, code: int, a: float, eps: float, w: Any, out: Any, *,
                      stream: Any = 0) -> None:
    """``sum_i w_i * loss_i / N`` for the loss ``code`` of :func:`row_loss`."""
    _same_shape(p, y, "row_loss_weighted")
    _weights(p, w, "row_loss_weighted")
    check_out(out, "row_loss_weighted")
    _row_loss_value_w[reduce_config(p.shape[0]) + (stream,)](p, y, int(code), float(a),
                                                              float(eps), w, out)


def sparse_categorical_crossentropy_logits_weighted(z: Any, labels: Any, w: Any, out: Any, *,
                                                    stream: Any = 0) -> None:
    """``sum_i w_i * (logsumexp(z_i) - z_i[label_i]) / N`` into ``out[0]``."""
    _labels_shape(z, labels, "sparse_categorical_crossentropy_logits_weighted")
    _weights(z, w, "sparse_categorical_crossentropy_logits_weighted")
    check_out(out, "sparse_categorical_crossentropy_logits_weighted")
    _sparse_logits_value_w[reduce_config(z.shape[0]) + (stream,)](z, labels, w, out)


def scale_rows(dp: Any, w: Any, *, stream: Any = 0) -> None:
    """``dp[i, :] *= w[i]`` in place: a loss gradient made that of the weighted loss."""
    if dp.ndim != 2:
        raise ValueError("scale_rows: dp must be 2-D")
    _weights(dp, w, "scale_rows")
    if dp.shape[0] * dp.shape[1]:
        _scale_rows[config_1d(dp.shape[0] * dp.shape[1]) + (stream,)](dp, w)
