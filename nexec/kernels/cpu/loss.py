"""Losses, their gradients, and accuracy counts, with Keras 3 semantics.

Conventions:

* predictions ``p`` and dense targets ``y`` are 2-D C-contiguous arrays ``(N, C)``; sparse
  labels are 1-D integer arrays ``(N,)``; float32 and float64 both work;
* loss values are batch means accumulated in float64 and written into ``out[0]``, a
  1-element float64 array (an empty batch writes NaN, like ``np.mean`` of nothing);
  accuracy counts go into ``out[0]`` of a 1-element int64 array and ``check_finite``
  writes 1 or 0 there. Nothing is returned, so every device has the same signatures
  (``nexec.kernels.cuda.loss``) and a step never reads a result back between kernels;
* gradient kernels take ``scale = loss_weight / N`` from the caller and write
  ``d(loss_weight * batch_mean_loss) / d(input)`` into the given output, arithmetic in
  float64, rounded once on store;
* ``eps`` is Keras' ``backend.epsilon()`` (1e-7) and is passed in, not hard-coded.
* ``*_weighted`` value kernels (``fit(sample_weight=...)``) take ``w``, one weight per row,
  before ``out`` and write ``sum_i w_i * loss_i / N``; ``scale_rows(dp, w)`` turns any loss
  gradient into that of the weighted loss.

Clipping follows ``clip(x, eps, 1 - eps)`` as Keras' backends do it, with both bounds
rounded to the prediction's dtype (float32: ``[1.0000000117e-7, 0.99999988]``); the
gradient is zero through an entry strictly outside the bounds and passes through at or
between them.

The ``*_softmax_*`` and ``sigmoid_*`` gradients are with respect to the *logits* of the
activation that produced ``p`` (the activation's Jacobian folded into the loss gradient,
so the output layer skips its own activation backward). They ignore the clipping: they
equal the exact gradient of the clipped loss as long as every probability lies within
``[eps, 1 - eps]``; once one saturates, the exact gradient through it would be zero while
the fused form keeps pushing it (``p - y``), which is what training wants anyway.
"""
from __future__ import annotations

import math

import numpy as np

from nexec.kernels import loss_rows
from nexec.kernels.cpu.stack import stack_array
from nexec.kernels.jit import kernel

__all__ = [
    "categorical_crossentropy",
    "categorical_crossentropy_grad",
    "softmax_crossentropy_grad",
    "sparse_categorical_crossentropy",
    "sparse_categorical_crossentropy_grad",
    "sparse_softmax_crossentropy_grad",
    "binary_crossentropy",
    "binary_crossentropy_grad",
    "sigmoid_binary_crossentropy_grad",
    "mean_squared_error",
    "mean_squared_error_grad",
    "row_loss",
    "row_loss_grad",
    "sparse_categorical_crossentropy_logits",
    "sparse_categorical_crossentropy_logits_grad",
    "categorical_accuracy_count",
    "sparse_categorical_accuracy_count",
    "binary_accuracy_count",
    "check_finite",
    "categorical_crossentropy_weighted",
    "sparse_categorical_crossentropy_weighted",
    "binary_crossentropy_weighted",
    "mean_squared_error_weighted",
    "row_loss_weighted",
    "sparse_categorical_crossentropy_logits_weighted",
    "scale_rows",
]


# ------------------------------------------------------------------------------ scratch

_CHUNK = 256  # float64 entries of a loss kernel's stack buffer (2 KiB)


# ------------------------------------------------------------------------------ log

_SQRT2 = 1.4142135623730951
_LN2 = 0.6931471805599453


@kernel
def _log(x):
    """Natural log of a positive float64, branch-free and call-free so that LLVM vectorises
    the loops calling it (Numba has no vector ``log`` without Intel SVML; glibc's scalar
    ``log`` made the value of categorical crossentropy on 128x10 cost ~12 us).

    ``x = m * 2**e`` with ``m`` in ``[sqrt(1/2), sqrt(2))`` from the bits, then
    ``log(m) = 2 atanh(s)``, ``s = (m - 1) / (m + 1)``, ``|s| < 0.172``, summed to ``s**21``
    (truncation below 1e-17): within a few float64 ulps of ``math.log`` for normal ``x``, and
    the same bits on every run. NaN gives NaN; zero, negative, subnormal or infinite ``x``
    are not supported (the callers clip to ``[eps, 1 - eps]`` first).
    """
    bits = np.float64(x).view(np.int64)
    e = (bits >> 52) - 1023
    m = np.int64((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000).view(np.float64)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    e = e + 1 if big else e
    s = np.divide(m - 1.0, m + 1.0)
    z = s * s
    poly = 1.0 / 21.0
    poly = poly * z + 1.0 / 19.0
    poly = poly * z + 1.0 / 17.0
    poly = poly * z + 1.0 / 15.0
    poly = poly * z + 1.0 / 13.0
    poly = poly * z + 1.0 / 11.0
    poly = poly * z + 1.0 / 9.0
    poly = poly * z + 1.0 / 7.0
    poly = poly * z + 1.0 / 5.0
    poly = poly * z + 1.0 / 3.0
    return float(e) * _LN2 + 2.0 * s + 2.0 * s * (z * poly) + (x - x)


# --------------------------------------------------------------------------- categorical


@kernel
def _clip_bounds(p, eps):
    """``(eps, 1 - eps)`` rounded to ``p``'s dtype, as Keras' backends clip (returned as
    float64): for float32, ``1 - 1e-7`` becomes 0.99999988, which decides the loss of a
    saturated prediction ``p == 1``."""
    e = p.dtype.type(eps)
    return float(e), float(p.dtype.type(1.0) - e)


@kernel
def _check_out(out):
    if out.shape[0] < 1:
        raise ValueError("loss/metric kernel: out must be a 1-element array")


@kernel
def categorical_crossentropy(p, y, eps, out):
    """Keras ``categorical_crossentropy`` (probabilities), batch mean written to ``out[0]``.

    Per row: ``q = p / sum(p)``, ``c = clip(q, eps, 1 - eps)``, ``-sum(y * log(c))``.
    """
    if p.shape != y.shape:
        raise ValueError("categorical_crossentropy: p and y shapes differ")
    _check_out(out)
    n = p.shape[0]
    if n == 0:
        out[0] = np.nan
        return
    out[0] = _cce_total(p, y, eps, None) / n


_CCE_ROWS = 32  # rows per transposed block of _cce_total_transposed
_CCE_COLS = 32  # the widest row it transposes; wider rows take _cce_total_rows
_CCE_SCRATCH = _CCE_ROWS * _CCE_COLS  # float64 entries (8 KiB) of its stack buffer


@kernel
def _cce_total(p, y, eps, w):
    """``sum_i w_i * cce_i`` (``w`` None: all 1); the same bits for any row width."""
    if p.shape[1] <= _CCE_COLS:
        return _cce_total_transposed(p, y, eps, w)
    return _cce_total_rows(p, y, eps, w)


@kernel
def _cce_total_transposed(p, y, eps, w):
    """:func:`_cce_total_rows` for rows of at most ``_CCE_COLS`` classes, same bits.

    A short row's float64 sum is a chain of dependent adds and its reciprocal a division:
    each block of 32 rows is copied into stack scratch with the columns outermost, so that
    the sums, reciprocals and clipped quotients run across the rows (vectorised) and the
    logs in one flat loop; then each row's ``-sum(y * log(c))`` in ``j`` order and the total
    in row order, as before (1.3x faster on 128 x 10 float32; the logs are most of the rest).
    """
    n, k = p.shape
    lo, hi = _clip_bounds(p, eps)
    r = _CCE_ROWS
    buf = stack_array(0.0, _CCE_SCRATCH)  # buf[j * r + i] = entry j of row i0 + i
    inv = stack_array(0.0, _CCE_ROWS)
    total = 0.0
    for i0 in range(0, n, r):
        nb = min(n - i0, r)
        for i in range(nb):
            for j in range(k):
                buf[j * r + i] = float(p[i0 + i, j])
        for i in range(nb):
            inv[i] = 0.0
        for j in range(k):
            bj = buf[j * r:j * r + nb]
            for i in range(nb):
                inv[i] += bj[i]
        for i in range(nb):
            inv[i] = np.divide(1.0, inv[i])
        for j in range(k):
            bj = buf[j * r:j * r + nb]
            for i in range(nb):
                bj[i] = min(max(bj[i] * inv[i], lo), hi)
        for t in range((k - 1) * r + nb):  # past nb in a short block: unused, harmless
            buf[t] = _log(buf[t])
        for i in range(nb):
            row = 0.0
            for j in range(k):
                row -= float(y[i0 + i, j]) * buf[j * r + i]
            total += row if w is None else float(w[i0 + i]) * row
    return total


@kernel
def _cce_total_rows(p, y, eps, w):
    """``sum_i w_i * cce_i`` (``w`` None: all 1), row by row.

    Rows go in chunks of up to :data:`_CHUNK` entries through a stack buffer: first the
    clipped quotients, then their logs in one flat loop (vectorised; a log inside the row's
    sum would not be, the sum's order being fixed), then each row's sum in ``j`` order. No
    heap allocation: a compiled training step allocates nothing.
    """
    n, k = p.shape
    lo, hi = _clip_bounds(p, eps)
    buf = stack_array(0.0, _CHUNK)
    step = max(1, _CHUNK // max(k, 1))
    total = 0.0
    for i0 in range(0, n, step):
        i1 = min(n, i0 + step)
        for j0 in range(0, k, _CHUNK):  # one pass unless a row is longer than a chunk
            j1 = min(k, j0 + _CHUNK)
            kk = j1 - j0
            for i in range(i0, i1):
                s = 0.0
                for j in range(k):
                    s += p[i, j]
                inv = np.divide(1.0, s)
                qrow = buf[(i - i0) * kk:(i - i0 + 1) * kk]
                for j in range(kk):
                    qrow[j] = min(max(float(p[i, j0 + j]) * inv, lo), hi)
            for t in range((i1 - i0) * kk):
                buf[t] = _log(buf[t])
            for i in range(i0, i1):
                lrow = buf[(i - i0) * kk:(i - i0 + 1) * kk]
                row = 0.0
                for j in range(kk):
                    row -= float(y[i, j0 + j]) * lrow[j]
                total += row if w is None else float(w[i]) * row
    return total


@kernel
def categorical_crossentropy_grad(p, y, eps, scale, dp):
    """Exact gradient of :func:`categorical_crossentropy` with respect to ``p``.

    With ``q = p / S`` and ``g_j = -y_j / q_j`` (zero where ``q_j`` is clipped):
    ``dL/dp_i = (g_i - sum_j g_j q_j) / S``, times ``scale``.
    """
    if p.shape != y.shape or dp.shape != p.shape:
        raise ValueError("categorical_crossentropy_grad: shapes differ")
    n, k = p.shape
    lo, hi = _clip_bounds(p, eps)
    for i in range(n):
        s = 0.0
        for j in range(k):
            s += p[i, j]
        inv_s = 1.0 / s
        gq = 0.0  # sum_j g_j q_j = -(sum of y over unclipped entries)
        for j in range(k):
            q = p[i, j] * inv_s
            if q >= lo and q <= hi:
                gq -= y[i, j]
        f = scale * inv_s
        for j in range(k):
            q = p[i, j] * inv_s
            # np.divide: no zero check (a plain ``/`` raises on 0 and blocks SIMD); a
            # q of 0 is clipped, so its NaN is never selected.
            g = np.divide(-float(y[i, j]), q)
            dp[i, j] = f * ((g if (q >= lo and q <= hi) else 0.0) - gq)


@kernel
def softmax_crossentropy_grad(p, y, scale, dz):
    """Gradient of categorical crossentropy w.r.t. the logits of ``p = softmax(z)``.

    ``dz = scale * (p * sum_row(y) - y)``: exact for any non-negative targets (not only
    rows summing to 1). The clipping of ``p`` to ``[eps, 1 - eps]`` is ignored.
    """
    if p.shape != y.shape or dz.shape != p.shape:
        raise ValueError("softmax_crossentropy_grad: shapes differ")
    n, k = p.shape
    for i in range(n):
        sy = 0.0
        for j in range(k):
            sy += y[i, j]
        for j in range(k):
            dz[i, j] = scale * (p[i, j] * sy - y[i, j])


# ------------------------------------------------------------------------------ sparse


@kernel
def _check_labels(labels, n, k):
    if labels.shape[0] != n:
        raise ValueError("sparse crossentropy: labels and p have different batch sizes")
    for i in range(n):
        if labels[i] < 0 or labels[i] >= k:
            raise ValueError("sparse crossentropy: label out of range [0, num_classes)")


@kernel
def sparse_categorical_crossentropy(p, labels, eps, out):
    """Keras ``sparse_categorical_crossentropy`` (probabilities), batch mean into ``out[0]``.

    Per row: ``-log(clip(p[label] / sum(p), eps, 1 - eps))``. Labels must lie in
    ``[0, C)`` (ValueError otherwise).
    """
    n, k = p.shape
    _check_labels(labels, n, k)
    _check_out(out)
    if n == 0:
        out[0] = np.nan
        return
    lo, hi = _clip_bounds(p, eps)
    total = 0.0
    for i in range(n):
        total -= _sparse_cce_neg_row(p, labels, i, lo, hi)
    out[0] = total / n


@kernel
def _sparse_cce_neg_row(p, labels, i, lo, hi):
    """Minus the sparse crossentropy of row ``i``: ``log(clip(q_label))``."""
    k = p.shape[1]
    s = 0.0
    for j in range(k):
        s += p[i, j]
    q = p[i, labels[i]] / s
    return math.log(min(max(q, lo), hi))


@kernel
def sparse_categorical_crossentropy_grad(p, labels, eps, scale, dp):
    """Exact gradient of :func:`sparse_categorical_crossentropy` w.r.t. ``p``.

    With ``l`` the label and ``q = p / S``: ``dL/dp_j = -(delta_jl - q_l) / (q_l S)``
    when ``q_l`` is not clipped, zero for the whole row when it is.
    """
    n, k = p.shape
    if dp.shape != p.shape:
        raise ValueError("sparse_categorical_crossentropy_grad: shapes differ")
    _check_labels(labels, n, k)
    lo, hi = _clip_bounds(p, eps)
    for i in range(n):
        s = 0.0
        for j in range(k):
            s += p[i, j]
        lab = labels[i]
        q = p[i, lab] / s
        if q >= lo and q <= hi:
            a = scale / (q * s)  # scale * |g_l| / S
            for j in range(k):
                dp[i, j] = a * q
            dp[i, lab] = a * (q - 1.0)
        else:
            for j in range(k):
                dp[i, j] = 0.0


@kernel
def sparse_softmax_crossentropy_grad(p, labels, scale, dz):
    """Gradient of sparse crossentropy w.r.t. the logits of ``p = softmax(z)``.

    ``dz = scale * (p - one_hot(labels))``; clipping is ignored.
    """
    n, k = p.shape
    if dz.shape != p.shape:
        raise ValueError("sparse_softmax_crossentropy_grad: shapes differ")
    _check_labels(labels, n, k)
    for i in range(n):
        for j in range(k):
            dz[i, j] = scale * p[i, j]
        dz[i, labels[i]] = scale * (p[i, labels[i]] - 1.0)


# ------------------------------------------------------------------------------ binary


@kernel
def binary_crossentropy(p, y, eps, out):
    """Keras ``binary_crossentropy`` (probabilities): mean over the last axis, then rows,
    written to ``out[0]``.

    Elementwise ``-(y log c + (1 - y) log(1 - c))`` with ``c = clip(p, eps, 1 - eps)``.
    """
    if p.shape != y.shape:
        raise ValueError("binary_crossentropy: p and y shapes differ")
    _check_out(out)
    n, k = p.shape
    if n == 0 or k == 0:
        out[0] = np.nan
        return
    out[0] = _bce_total(p, y, eps, None) / (n * k)


@kernel
def _bce_total(p, y, eps, w):
    """``sum_i w_i * sum_j bce_ij`` (``w`` None: all 1), chunked through stack buffers like
    :func:`_cce_total` (clipped ``p`` and ``y`` copied flat, then one vectorised loop of
    the elementwise losses, then the rows' sums in ``j`` order)."""
    n, k = p.shape
    lo, hi = _clip_bounds(p, eps)
    cb = stack_array(0.0, _CHUNK)
    yb = stack_array(0.0, _CHUNK)
    step = max(1, _CHUNK // k)
    total = 0.0
    for i0 in range(0, n, step):
        i1 = min(n, i0 + step)
        for j0 in range(0, k, _CHUNK):
            j1 = min(k, j0 + _CHUNK)
            kk = j1 - j0
            for i in range(i0, i1):
                crow = cb[(i - i0) * kk:(i - i0 + 1) * kk]
                yrow = yb[(i - i0) * kk:(i - i0 + 1) * kk]
                for j in range(kk):
                    crow[j] = min(max(float(p[i, j0 + j]), lo), hi)
                    yrow[j] = float(y[i, j0 + j])
            for t in range((i1 - i0) * kk):
                ce = cb[t]
                ye = yb[t]
                cb[t] = -(ye * _log(ce) + (1.0 - ye) * _log(1.0 - ce))
            for i in range(i0, i1):
                trow = cb[(i - i0) * kk:(i - i0 + 1) * kk]
                row = 0.0
                for j in range(kk):
                    row += trow[j]
                total += row if w is None else float(w[i]) * row
    return total


@kernel
def binary_crossentropy_grad(p, y, eps, scale, dp):
    """Exact gradient of :func:`binary_crossentropy` w.r.t. ``p``.

    ``dp = scale / C * ((1 - y) / (1 - p) - y / p)``, zero where ``p`` is clipped.
    """
    if p.shape != y.shape or dp.shape != p.shape:
        raise ValueError("binary_crossentropy_grad: shapes differ")
    n, k = p.shape
    if k == 0:
        return
    lo, hi = _clip_bounds(p, eps)
    f = scale / k
    for i in range(n):
        for j in range(k):
            pj = float(p[i, j])
            yj = float(y[i, j])
            d = np.divide(1.0 - yj, 1.0 - pj) - np.divide(yj, pj)
            dp[i, j] = f * d if (pj >= lo and pj <= hi) else 0.0


@kernel
def sigmoid_binary_crossentropy_grad(p, y, scale, dz):
    """Gradient of binary crossentropy w.r.t. the logits of ``p = sigmoid(z)``.

    ``dz = scale * (p - y) / C``; clipping is ignored.
    """
    if p.shape != y.shape or dz.shape != p.shape:
        raise ValueError("sigmoid_binary_crossentropy_grad: shapes differ")
    n, k = p.shape
    if k == 0:
        return
    f = scale / k
    for i in range(n):
        for j in range(k):
            dz[i, j] = f * (float(p[i, j]) - float(y[i, j]))


# ------------------------------------------------------------------------------ mse


@kernel
def mean_squared_error(p, y, out):
    """Keras ``mean_squared_error``: mean over the last axis of ``(p - y)^2``, then rows,
    written to ``out[0]``."""
    if p.shape != y.shape:
        raise ValueError("mean_squared_error: p and y shapes differ")
    _check_out(out)
    n, k = p.shape
    if n == 0 or k == 0:
        out[0] = np.nan
        return
    total = 0.0
    for i in range(n):
        for j in range(k):
            d = float(p[i, j]) - float(y[i, j])
            total += d * d
    out[0] = total / (n * k)


@kernel
def mean_squared_error_grad(p, y, scale, dp):
    """Gradient of :func:`mean_squared_error` w.r.t. ``p``: ``scale * 2 (p - y) / C``."""
    if p.shape != y.shape or dp.shape != p.shape:
        raise ValueError("mean_squared_error_grad: shapes differ")
    n, k = p.shape
    if k == 0:
        return
    f = 2.0 * scale / k
    for i in range(n):
        for j in range(k):
            dp[i, j] = f * (float(p[i, j]) - float(y[i, j]))


# ------------------------------------------------------------------------------ by code

_row_value = kernel(loss_rows.row_value)
_row_grad = kernel(loss_rows.row_grad)
_hinge_pm = kernel(loss_rows.hinge_targets_pm)


@kernel
def row_loss(p, y, code, a, eps, out):
    """The Keras loss ``code`` of :mod:`nexec.kernels.loss_rows` (MAE, Huber, hinge, KL
    divergence, crossentropy from logits...), batch mean of the row losses into ``out[0]``.

    ``a`` is the loss's parameter (Huber's delta, label smoothing), ``eps`` Keras' epsilon.
    """
    if p.shape != y.shape:
        raise ValueError("row_loss: p and y shapes differ")
    _check_out(out)
    n, k = p.shape
    if n == 0 or k == 0:
        out[0] = np.nan
        return
    pm = _hinge_pm(y) if code == loss_rows.HINGE or code == loss_rows.SQUARED_HINGE else 0.0
    total = 0.0
    for i in range(n):
        total += _row_value(code, p, y, i, a, eps, pm)
    out[0] = total / n


@kernel
def row_loss_grad(p, y, code, a, eps, scale, dp):
    """Exact gradient of :func:`row_loss` w.r.t. ``p``, times ``scale`` (= weight / N)."""
    if p.shape != y.shape or dp.shape != p.shape:
        raise ValueError("row_loss_grad: shapes differ")
    n, k = p.shape
    if k == 0:
        return
    pm = _hinge_pm(y) if code == loss_rows.HINGE or code == loss_rows.SQUARED_HINGE else 0.0
    for i in range(n):
        _row_grad(code, p, y, i, a, eps, pm, scale, dp)


@kernel
def sparse_categorical_crossentropy_logits(z, labels, out):
    """Keras ``sparse_categorical_crossentropy(from_logits=True)``: per row
    ``logsumexp(z) - z[label]``, batch mean into ``out[0]``."""
    n, k = z.shape
    _check_labels(labels, n, k)
    _check_out(out)
    if n == 0:
        out[0] = np.nan
        return
    total = 0.0
    for i in range(n):
        total += _sparse_logits_row(z, labels, i)
    out[0] = total / n


@kernel
def _sparse_logits_row(z, labels, i):
    """``logsumexp(z[i]) - z[i, label]``."""
    k = z.shape[1]
    m = -np.inf
    for j in range(k):
        m = max(m, float(z[i, j]))
    se = 0.0
    for j in range(k):
        se += math.exp(float(z[i, j]) - m)
    return m + math.log(se) - float(z[i, labels[i]])


@kernel
def sparse_categorical_crossentropy_logits_grad(z, labels, scale, dz):
    """``dz = scale * (softmax(z) - one_hot(labels))``: the exact gradient."""
    n, k = z.shape
    if dz.shape != z.shape:
        raise ValueError("sparse_categorical_crossentropy_logits_grad: shapes differ")
    _check_labels(labels, n, k)
    for i in range(n):
        m = -np.inf
        for j in range(k):
            m = max(m, float(z[i, j]))
        se = 0.0
        for j in range(k):
            se += math.exp(float(z[i, j]) - m)
        for j in range(k):
            dz[i, j] = scale * math.exp(float(z[i, j]) - m) / se
        dz[i, labels[i]] -= scale


# ------------------------------------------------------------------------------ weighted
# ``fit(sample_weight=...)``: Keras' "sum_over_batch_size" reduction of weighted losses,
# ``sum_i w_i * loss_i / N`` (N the number of loss rows, *not* the sum of the weights), and
# the rows of the loss gradient scaled by the same weights. ``w`` holds one weight per row.


@kernel
def _check_weights(w, n):
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError("weighted loss: w must hold one weight per row of p")


@kernel
def categorical_crossentropy_weighted(p, y, eps, w, out):
    """``sum_i w_i * cce_i / N`` (:func:`categorical_crossentropy` with row weights)."""
    if p.shape != y.shape:
        raise ValueError("categorical_crossentropy_weighted: p and y shapes differ")
    _check_out(out)
    n = p.shape[0]
    _check_weights(w, n)
    if n == 0:
        out[0] = np.nan
        return
    out[0] = _cce_total(p, y, eps, w) / n


@kernel
def sparse_categorical_crossentropy_weighted(p, labels, eps, w, out):
    """``sum_i w_i * scce_i / N`` (:func:`sparse_categorical_crossentropy`, row weights)."""
    n, k = p.shape
    _check_labels(labels, n, k)
    _check_out(out)
    _check_weights(w, n)
    if n == 0:
        out[0] = np.nan
        return
    lo, hi = _clip_bounds(p, eps)
    total = 0.0
    for i in range(n):
        total -= float(w[i]) * _sparse_cce_neg_row(p, labels, i, lo, hi)
    out[0] = total / n


@kernel
def binary_crossentropy_weighted(p, y, eps, w, out):
    """``sum_i w_i * bce_i / N``, ``bce_i`` the mean over row ``i``'s ``C`` entries."""
    if p.shape != y.shape:
        raise ValueError("binary_crossentropy_weighted: p and y shapes differ")
    _check_out(out)
    n, k = p.shape
    _check_weights(w, n)
    if n == 0 or k == 0:
        out[0] = np.nan
        return
    out[0] = _bce_total(p, y, eps, w) / (n * k)


@kernel
def mean_squared_error_weighted(p, y, w, out):
    """``sum_i w_i * mse_i / N``, ``mse_i`` the mean of ``(p - y)^2`` over row ``i``."""
    if p.shape != y.shape:
        raise ValueError("mean_squared_error_weighted: p and y shapes differ")
    _check_out(out)
    n, k = p.shape
    _check_weights(w, n)
    if n == 0 or k == 0:
        out[0] = np.nan
        return
    total = 0.0
    for i in range(n):
        row = 0.0
        for j in range(k):
            d = float(p[i, j]) - float(y[i, j])
            row += d * d
        total += float(w[i]) * row
    out[0] = total / (n * k)


@kernel
def row_loss_weighted(p, y, code, a, eps, w, out):
    """``sum_i w_i * loss_i / N`` for the loss ``code`` of :func:`row_loss`."""
    if p.shape != y.shape:
        raise ValueError("row_loss_weighted: p and y shapes differ")
    _check_out(out)
    n, k = p.shape
    _check_weights(w, n)
    if n == 0 or k == 0:
        out[0] = np.nan
        return
    pm = _hinge_pm(y) if code == loss_rows.HINGE or code == loss_rows.SQUARED_HINGE else 0.0
    total = 0.0
    for i in range(n):
        total += float(w[i]) * _row_value(code, p, y, i, a, eps, pm)
    out[0] = total / n


@kernel
def sparse_categorical_crossentropy_logits_weighted(z, labels, w, out):
    """``sum_i w_i * (logsumexp(z_i) - z_i[label_i]) / N``."""
    n, k = z.shape
    _check_labels(labels, n, k)
    _check_out(out)
    _check_weights(w, n)
    if n == 0:
        out[0] = np.nan
        return
    total = 0.0
    for i in range(n):
        total += float(w[i]) * _sparse_logits_row(z, labels, i)
    out[0] = total / n


@kernel
def scale_rows(dp, w):
    """``dp[i, :] *= w[i]``: a loss gradient (of any loss, through any fused activation)
    made the gradient of the weighted loss, in place."""
    n, k = dp.shape
    _check_weights(w, n)
    for i in range(n):
        f = float(w[i])
        for j in range(k):
            dp[i, j] = float(dp[i, j]) * f


# ------------------------------------------------------------------------------ metrics


@kernel
def _argmax_row(a, i):
    """First index of the row maximum, like ``np.argmax`` (a NaN wins, as in NumPy)."""
    k = a.shape[1]
    best = 0
    bv = a[i, 0]
    if bv != bv:
        return 0
    for j in range(1, k):
        v = a[i, j]
        if v != v:
            return j
        if v > bv:
            bv = v
            best = j
    return best


@kernel
def categorical_accuracy_count(p, y, out):
    """Number of rows whose ``argmax(p)`` equals ``argmax(y)`` (first index on ties),
    written to ``out[0]``."""
    if p.shape != y.shape:
        raise ValueError("categorical_accuracy_count: p and y shapes differ")
    _check_out(out)
    n, k = p.shape
    count = 0
    if k > 0:
        for i in range(n):
            if _argmax_row(p, i) == _argmax_row(y, i):
                count += 1
    out[0] = count


@kernel
def sparse_categorical_accuracy_count(p, labels, out):
    """Number of rows whose ``argmax(p)`` equals the integer label, written to ``out[0]``."""
    n, k = p.shape
    if labels.shape[0] != n:
        raise ValueError("sparse_categorical_accuracy_count: batch sizes differ")
    _check_out(out)
    count = 0
    if k > 0:
        for i in range(n):
            if _argmax_row(p, i) == labels[i]:
                count += 1
    out[0] = count


@kernel
def binary_accuracy_count(p, y, threshold, out):
    """Number of elements where ``float(p > threshold) == y`` (Keras ``binary_accuracy``),
    written to ``out[0]``.

    Like Keras, the target is compared exactly, so only targets equal to 0 or 1 can match.
    """
    if p.shape != y.shape:
        raise ValueError("binary_accuracy_count: p and y shapes differ")
    _check_out(out)
    n, k = p.shape
    thr = p.dtype.type(threshold)  # Keras compares in the prediction's dtype
    count = 0
    for i in range(n):
        for j in range(k):
            pred = 1.0 if p[i, j] > thr else 0.0
            if float(y[i, j]) == pred:
                count += 1
    out[0] = count


# ------------------------------------------------------------------------------ finite


@kernel
def check_finite(x, out):
    """``out[0] = 1`` when every element of ``x`` (any rank, any strides; integer arrays
    are always finite) is finite, else 0; ``out`` is a 1-element int64 array.

    ``x.flat`` is as fast as ``x.reshape(-1)`` on contiguous input and also accepts strided
    views, which ``reshape`` would reject at compile time.
    """
    _check_out(out)
    for v in x.flat:
        if not np.isfinite(v):
            out[0] = 0
            return
    out[0] = 1
