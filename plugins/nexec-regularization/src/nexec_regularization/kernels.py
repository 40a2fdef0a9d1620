"""Numba kernels of Dropout and BatchNormalization.

Every array is a 2-D ``(rows, channels)`` view (``nexec.plugin.rows``) whose row stride may
exceed its width; kernels write into the arrays they are given and allocate nothing.
Backward kernels *overwrite* ``dx``. An empty array (zero rows) for an optional output or
parameter means "skip it".
"""
from __future__ import annotations

import math

import numpy as np

from nexec.plugin import kernel

__all__ = ["splitmix64", "dropout_forward", "dropout_backward", "copy_rows",
           "batchnorm_forward_train", "batchnorm_forward_infer", "batchnorm_backward",
           "batchnorm_backward_frozen"]

# SplitMix64 (Steele, Lea & Flood 2014): a 64-bit state advanced by the golden gamma and
# hashed; statistically strong, tiny, and the same numbers on every platform.
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)


@kernel
def _mix(s):
    """SplitMix64's output function: the 53 high bits of the hashed state ``s``."""
    z = (s ^ (s >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return (z ^ (z >> _S31)) >> _S11


@kernel
def splitmix64(state):
    """Advances ``state[0]`` and returns the next 53-bit integer (as uint64) of the stream."""
    s = state[0] + _GAMMA
    state[0] = s
    return _mix(s)


@kernel
def dropout_forward(x, threshold, scale, state, mask, out):
    """Training forward: ``mask = scale`` where the stream's next 53-bit number is at least
    ``threshold`` (``rate * 2**53``), else 0; ``out = x * mask``. Row-major draw order.

    The ``i``-th draw of the stream is ``mix(state + (i + 1) * gamma)``, so every value is
    computed independently (the loop vectorizes) and ``state`` moves on by the count at the
    end: the same numbers as calling :func:`splitmix64` once per value.
    """
    s0 = state[0]
    cols = x.shape[1]
    for r in range(x.shape[0]):
        base = s0 + np.uint64(r * cols) * _GAMMA
        for c in range(cols):
            m = scale if _mix(base + np.uint64(c + 1) * _GAMMA) >= threshold else 0.0
            mask[r, c] = m
            out[r, c] = x[r, c] * m
    state[0] = s0 + np.uint64(x.shape[0] * cols) * _GAMMA


@kernel
def dropout_backward(dy, mask, dx):
    """``dx = dy * mask`` (the mask already holds the ``1 / (1 - rate)`` scale)."""
    for r in range(dy.shape[0]):
        for c in range(dy.shape[1]):
            dx[r, c] = dy[r, c] * mask[r, c]


@kernel
def copy_rows(x, out):
    """``out = x``: Dropout at inference."""
    for r in range(x.shape[0]):
        for c in range(x.shape[1]):
            out[r, c] = x[r, c]


@kernel
def batchnorm_forward_train(x, gamma, beta, momentum, epsilon, moving_mean, moving_var,
                            stats, out):
    """Batch statistics per channel, the moving-statistics update, and the normalization.

    Args:
        x: ``(M, C)`` input rows (every axis but the channels flattened into rows).
        gamma, beta: ``(C,)``, or empty when the layer has no scale / no center.
        momentum, epsilon: Layer constants.
        moving_mean, moving_var: ``(C,)``, updated in place with the biased batch variance.
        stats: ``(2, C)``; gets the batch mean and ``1 / sqrt(var + epsilon)`` for backward.
        out: ``(M, C)`` output rows.
    """
    m, c = x.shape
    mean = stats[0]
    inv = stats[1]
    for k in range(c):
        mean[k] = 0.0
        inv[k] = 0.0
    for r in range(m):
        for k in range(c):
            mean[k] += x[r, k]
    for k in range(c):
        mean[k] /= m
    for r in range(m):
        for k in range(c):
            d = x[r, k] - mean[k]
            inv[k] += d * d
    for k in range(c):
        var = inv[k] / m
        moving_mean[k] = momentum * moving_mean[k] + (1.0 - momentum) * mean[k]
        moving_var[k] = momentum * moving_var[k] + (1.0 - momentum) * var
        inv[k] = 1.0 / math.sqrt(var + epsilon)
    has_gamma = gamma.shape[0] != 0
    has_beta = beta.shape[0] != 0
    for r in range(m):
        for k in range(c):
            y = (x[r, k] - mean[k]) * inv[k]
            if has_gamma:
                y *= gamma[k]
            if has_beta:
                y += beta[k]
            out[r, k] = y


@kernel
def batchnorm_forward_infer(x, gamma, beta, epsilon, moving_mean, moving_var, coef, out):
    """Inference: ``out = x * a + b`` with ``a = gamma / sqrt(moving_var + epsilon)`` and
    ``b = beta - moving_mean * a`` per channel, computed into ``coef`` ``(2, C)`` first."""
    m, c = x.shape
    a = coef[0]
    b = coef[1]
    for k in range(c):
        s = 1.0 / math.sqrt(moving_var[k] + epsilon)
        if gamma.shape[0] != 0:
            s *= gamma[k]
        a[k] = s
        b[k] = -moving_mean[k] * s
        if beta.shape[0] != 0:
            b[k] += beta[k]
    for r in range(m):
        for k in range(c):
            out[r, k] = x[r, k] * a[k] + b[k]


@kernel
def batchnorm_backward(x, dy, gamma, stats, sums, dgamma, dbeta, dx):
    """Training backward through the batch statistics.

    With ``xhat = (x - mean) * inv``: ``dbeta = sum(dy)``, ``dgamma = sum(dy * xhat)`` and
    ``dx = gamma * inv / M * (M * dy - dbeta - xhat * dgamma)``.

    Args:
        x, dy: ``(M, C)``.
        gamma: ``(C,)`` or empty (no scale: gamma = 1).
        stats: ``(2, C)`` mean and inverse standard deviation saved by forward.
        sums: ``(2, C)`` scratch.
        dgamma, dbeta: ``(C,)`` parameter gradients, or empty when absent.
        dx: ``(M, C)``, or zero rows when the input needs no gradient.
    """
    m, c = x.shape
    mean = stats[0]
    inv = stats[1]
    sdy = sums[0]
    sdyx = sums[1]
    for k in range(c):
        sdy[k] = 0.0
        sdyx[k] = 0.0
    for r in range(m):
        for k in range(c):
            g = dy[r, k]
            sdy[k] += g
            sdyx[k] += g * (x[r, k] - mean[k]) * inv[k]
    if dgamma.shape[0] != 0:
        for k in range(c):
            dgamma[k] = sdyx[k]
    if dbeta.shape[0] != 0:
        for k in range(c):
            dbeta[k] = sdy[k]
    if dx.shape[0] == 0:
        return
    # Fold the per-channel constants: dx = f * dy - f/M * (sdy + xhat * sdyx).
    for k in range(c):
        f = inv[k]
        if gamma.shape[0] != 0:
            f *= gamma[k]
        sdy[k] = f * sdy[k] / m
        sdyx[k] = f * sdyx[k] / m
    for r in range(m):
        for k in range(c):
            f = inv[k]
            if gamma.shape[0] != 0:
                f *= gamma[k]
            dx[r, k] = f * dy[r, k] - sdy[k] - (x[r, k] - mean[k]) * inv[k] * sdyx[k]


@kernel
def batchnorm_backward_frozen(x, dy, moving_mean, moving_var, epsilon, coef, dgamma, dbeta, dx):
    """Backward of the inference form (a frozen layer in ``fit``): ``dx = dy * a`` with the
    forward's folded scale ``a = coef[0]``; ``dbeta = sum(dy)`` and
    ``dgamma = sum(dy * (x - moving_mean) / sqrt(moving_var + epsilon))`` when present."""
    m, c = dy.shape
    if dgamma.shape[0] != 0:
        for k in range(c):
            dgamma[k] = 0.0
    if dbeta.shape[0] != 0:
        for k in range(c):
            dbeta[k] = 0.0
    for r in range(m):
        for k in range(c):
            if dgamma.shape[0] != 0:
                dgamma[k] += dy[r, k] * (x[r, k] - moving_mean[k]) \
                    / math.sqrt(moving_var[k] + epsilon)
            if dbeta.shape[0] != 0:
                dbeta[k] += dy[r, k]
    if dx.shape[0] == 0:
        return
    a = coef[0]
    for r in range(m):
        for k in range(c):
            dx[r, k] = dy[r, k] * a[k]
