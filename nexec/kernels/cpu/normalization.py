"""Kernels of BatchNormalization and LayerNormalization over the last axis.

Every tensor is a 2-D ``(rows, channels)`` view (every axis but the channels flattened into
rows; row stride may exceed the width). Kernels write into given outputs and allocate
nothing; backward kernels *overwrite* ``dx`` and the parameter gradients. An empty array for
``gamma``/``beta`` (or their gradients) means the layer has none (``scale=False`` /
``center=False``); ``dx`` with zero rows means the input needs no gradient.

The masked BatchNormalization kernels take Keras 3's mask as its source, ``ids`` ``(M, 1)``
(one id per row; a row is real where its id is not 0). As Keras 3.15's ``_moments``, the
batch statistics are then the mask-weighted mean and (biased) variance, each divided by
``valid + KERAS_EPSILON`` (``valid`` the real rows; Keras' ``backend.epsilon()``), and
every row, padding included, is normalised with them.
"""
from __future__ import annotations

import math

from nexec.kernels.jit import kernel

__all__ = ["batchnorm_forward_train", "batchnorm_forward_infer", "batchnorm_affine",
           "fold_channel_affine", "batchnorm_backward",
           "batchnorm_backward_frozen", "batchnorm_forward_train_masked",
           "batchnorm_backward_masked", "layernorm_forward", "layernorm_backward"]

#: Keras' ``backend.epsilon()`` (its default), added to the weight sum of masked moments.
KERAS_EPSILON = 1e-7


@kernel
def _update_and_normalise(x, gamma, beta, momentum, epsilon, moving_mean, moving_var, stats,
                          divisor, out):
    """The batch statistics' tail: ``stats`` holds the mean and the sum of squared
    deviations per channel; the variance is that sum / ``divisor``. Updates the moving
    statistics, leaves ``1 / sqrt(var + epsilon)`` in ``stats[1]`` and normalises every row."""
    m, c = x.shape
    mean = stats[0]
    inv = stats[1]
    for k in range(c):
        var = inv[k] / divisor
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
    _update_and_normalise(x, gamma, beta, momentum, epsilon, moving_mean, moving_var, stats,
                          m, out)


@kernel
def _valid_weight(ids):
    """Real rows of ``ids`` ``(M, 1)`` plus Keras' epsilon: the masked moments' divisor."""
    w = 0.0
    for r in range(ids.shape[0]):
        if ids[r, 0] != 0:
            w += 1.0
    return w + KERAS_EPSILON


@kernel
def batchnorm_forward_train_masked(x, ids, gamma, beta, momentum, epsilon, moving_mean,
                                   moving_var, stats, out):
    """:func:`batchnorm_forward_train` with the statistics over the real rows (Keras 3).

    ``mean = sum(m * x) / (valid + eps_k)``, ``var = sum(m * (x - mean)**2) / (valid +
    eps_k)`` with ``m = ids != 0`` and ``eps_k`` = :data:`KERAS_EPSILON`; the moving
    statistics are updated from them and every row (padding too) is normalised.

    Args:
        x: ``(M, C)`` input rows.
        ids: ``(M, 1)`` the mask source, one id per row.
        gamma, beta, momentum, epsilon, moving_mean, moving_var, stats, out: As
            :func:`batchnorm_forward_train`.
    """
    m, c = x.shape
    if ids.shape[0] != m:
        raise ValueError("batchnorm_forward_train_masked: ids and x rows differ")
    mean = stats[0]
    inv = stats[1]
    for k in range(c):
        mean[k] = 0.0
        inv[k] = 0.0
    wp = _valid_weight(ids)
    for r in range(m):
        if ids[r, 0] != 0:
            for k in range(c):
                mean[k] += x[r, k]
    for k in range(c):
        mean[k] /= wp
    for r in range(m):
        if ids[r, 0] != 0:
            for k in range(c):
                d = x[r, k] - mean[k]
                inv[k] += d * d
    _update_and_normalise(x, gamma, beta, momentum, epsilon, moving_mean, moving_var, stats,
                          wp, out)


@kernel
def _parameter_grads(x, dy, stats, sums, dgamma, dbeta):
    """``sums`` = (sum(dy), sum(dy * xhat)) per channel over every row, which are ``dbeta``
    and ``dgamma`` (each skipped when empty); backward's shared first pass."""
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


@kernel
def batchnorm_backward_masked(x, ids, dy, gamma, stats, sums, dgamma, dbeta, dx):
    """Backward of :func:`batchnorm_forward_train_masked`.

    With ``W = valid + eps_k``, ``xhat = (x - mean) * inv``, ``A = gamma * sum(dy)`` and
    ``B = gamma * sum(dy * xhat)`` (over every row: padded rows are normalised too), and
    ``sum(m * (x - mean)) = mean * eps_k`` (the epsilon keeps the mean off the exact
    weighted mean): ``dx = inv * (gamma * dy - m / W * (A + B * xhat - inv * B * mean *
    eps_k / W))``; ``dgamma = sum(dy * xhat)``, ``dbeta = sum(dy)``.

    Args:
        x, dy: ``(M, C)``.
        ids: ``(M, 1)`` the mask source.
        gamma, stats, sums, dgamma, dbeta, dx: As :func:`batchnorm_backward`.
    """
    m, c = x.shape
    if ids.shape[0] != m:
        raise ValueError("batchnorm_backward_masked: ids and x rows differ")
    mean = stats[0]
    inv = stats[1]
    _parameter_grads(x, dy, stats, sums, dgamma, dbeta)
    sdy = sums[0]
    sdyx = sums[1]
    if dx.shape[0] == 0:
        return
    wp = _valid_weight(ids)
    # Fold the per-channel constants: dx = f * dy - m * (sdy' + xhat * sdyx').
    for k in range(c):
        g = gamma[k] if gamma.shape[0] != 0 else 1.0
        a = g * sdy[k]
        b = g * sdyx[k]
        sdy[k] = inv[k] * (a - inv[k] * b * mean[k] * KERAS_EPSILON / wp) / wp
        sdyx[k] = inv[k] * b / wp
    for r in range(m):
        real = ids[r, 0] != 0
        for k in range(c):
            f = inv[k]
            if gamma.shape[0] != 0:
                f *= gamma[k]
            d = f * dy[r, k]
            if real:
                d -= sdy[k] + (x[r, k] - mean[k]) * inv[k] * sdyx[k]
            dx[r, k] = d


@kernel
def batchnorm_affine(gamma, beta, epsilon, moving_mean, moving_var, coef):
    """The inference form's per-channel scale and shift into ``coef`` ``(2, C)``:
    ``a = gamma / sqrt(moving_var + epsilon)`` and ``b = beta - moving_mean * a``."""
    a = coef[0]
    b = coef[1]
    for k in range(coef.shape[1]):
        s = 1.0 / math.sqrt(moving_var[k] + epsilon)
        if gamma.shape[0] != 0:
            s *= gamma[k]
        a[k] = s
        b[k] = -moving_mean[k] * s
        if beta.shape[0] != 0:
            b[k] += beta[k]


@kernel
def batchnorm_forward_infer(x, gamma, beta, epsilon, moving_mean, moving_var, coef, out):
    """Inference: ``out = x * a + b`` with ``a`` and ``b`` per channel from
    :func:`batchnorm_affine`, computed into ``coef`` ``(2, C)`` first."""
    batchnorm_affine(gamma, beta, epsilon, moving_mean, moving_var, coef)
    m, c = x.shape
    a = coef[0]
    b = coef[1]
    for r in range(m):
        for k in range(c):
            out[r, k] = x[r, k] * a[k] + b[k]


@kernel
def fold_channel_affine(w, bias, coef, w_out, bias_out):
    """Folds a per-channel ``y * a + b`` (``coef`` ``(2, F)``) into the weights of the layer
    producing ``y = x @ w + bias``: ``w_out = w * a`` column by column and
    ``bias_out = bias * a + b``.

    Args:
        w: ``(R, F)``, output channel ``j`` in column ``j``.
        bias: ``(F,)``, or empty (no bias: 0).
        coef: ``(2, F)`` scale and shift.
        w_out, bias_out: ``(R, F)`` and ``(F,)``, written.
    """
    a = coef[0]
    b = coef[1]
    for r in range(w.shape[0]):
        for k in range(w.shape[1]):
            w_out[r, k] = w[r, k] * a[k]
    for k in range(w.shape[1]):
        bias_out[k] = b[k]
        if bias.shape[0] != 0:
            bias_out[k] += bias[k] * a[k]


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
    _parameter_grads(x, dy, stats, sums, dgamma, dbeta)
    sdy = sums[0]
    sdyx = sums[1]
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


@kernel
def layernorm_forward(x, gamma, beta, epsilon, stats, out):
    """Normalises each row: ``out = gamma * (x - mean) / sqrt(var + epsilon) + beta``.

    Args:
        x: ``(R, C)`` rows (the normalised axis last).
        gamma, beta: ``(C,)``, or empty.
        epsilon: Added to the (biased) row variance.
        stats: ``(R, 2)``; gets each row's mean and ``1 / sqrt(var + epsilon)``.
        out: ``(R, C)``; may be ``x`` itself.
    """
    m, c = x.shape
    has_gamma = gamma.shape[0] != 0
    has_beta = beta.shape[0] != 0
    for r in range(m):
        xr = x[r]
        mean = 0.0
        for k in range(c):
            mean += xr[k]
        mean /= c
        var = 0.0
        for k in range(c):
            d = xr[k] - mean
            var += d * d
        inv = 1.0 / math.sqrt(var / c + epsilon)
        stats[r, 0] = mean
        stats[r, 1] = inv
        o = out[r]
        for k in range(c):
            y = (xr[k] - mean) * inv
            if has_gamma:
                y *= gamma[k]
            if has_beta:
                y += beta[k]
            o[k] = y


@kernel
def layernorm_backward(x, dy, gamma, stats, dgamma, dbeta, dx):
    """Backward of :func:`layernorm_forward` with its saved row statistics.

    With ``xhat = (x - mean) * inv`` and ``g = dy * gamma``: ``dbeta = sum_rows(dy)``,
    ``dgamma = sum_rows(dy * xhat)`` and ``dx = inv * (g - mean(g) - xhat * mean(g * xhat))``.
    """
    m, c = x.shape
    has_gamma = gamma.shape[0] != 0
    if dgamma.shape[0] != 0:
        for k in range(c):
            dgamma[k] = 0.0
    if dbeta.shape[0] != 0:
        for k in range(c):
            dbeta[k] = 0.0
    for r in range(m):
        xr = x[r]
        gr = dy[r]
        mean = stats[r, 0]
        inv = stats[r, 1]
        if dgamma.shape[0] != 0:
            for k in range(c):
                dgamma[k] += gr[k] * (xr[k] - mean) * inv
        if dbeta.shape[0] != 0:
            for k in range(c):
                dbeta[k] += gr[k]
        if dx.shape[0] == 0:
            continue
        sg = 0.0
        sgx = 0.0
        for k in range(c):
            g = gr[k] * gamma[k] if has_gamma else gr[k]
            sg += g
            sgx += g * (xr[k] - mean) * inv
        sg /= c
        sgx /= c
        d = dx[r]
        for k in range(c):
            g = gr[k] * gamma[k] if has_gamma else gr[k]
            d[k] = inv * (g - sg - (xr[k] - mean) * inv * sgx)
