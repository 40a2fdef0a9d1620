"""CUDA twins of :mod:`nexec.kernels.cpu.normalization` (same names and argument order,
plus keyword ``stream``).

Simple and exact rather than fast: per-channel statistics and parameter gradients take one
thread per channel looping over the rows (in the CPU kernels' order, so the sums are the
same), per-row statistics one thread per row, elementwise passes one thread per value.
"""
from __future__ import annotations

import math
from typing import Any

from nexec.kernels.cpu.normalization import KERAS_EPSILON
from nexec.kernels.cuda.backend import config_1d, cuda, jit

__all__ = ["batchnorm_forward_train", "batchnorm_forward_infer", "batchnorm_affine",
           "fold_channel_affine", "batchnorm_backward",
           "batchnorm_backward_frozen", "batchnorm_forward_train_masked",
           "batchnorm_backward_masked", "layernorm_forward", "layernorm_backward"]


@jit
def _bn_stats(x, momentum, epsilon, moving_mean, moving_var, stats):
    m = x.shape[0]
    for k in range(cuda.grid(1), x.shape[1], cuda.gridsize(1)):
        mean = 0.0
        for r in range(m):
            mean += x[r, k]
        mean /= m
        var = 0.0
        for r in range(m):
            d = x[r, k] - mean
            var += d * d
        var /= m
        moving_mean[k] = momentum * moving_mean[k] + (1.0 - momentum) * mean
        moving_var[k] = momentum * moving_var[k] + (1.0 - momentum) * var
        stats[0, k] = mean
        stats[1, k] = 1.0 / math.sqrt(var + epsilon)


@jit(device=True)
def _valid_weight(ids):
    w = 0.0
    for r in range(ids.shape[0]):
        if ids[r, 0] != 0:
            w += 1.0
    return w + KERAS_EPSILON


@jit
def _bn_stats_masked(x, ids, momentum, epsilon, moving_mean, moving_var, stats):
    m = x.shape[0]
    for k in range(cuda.grid(1), x.shape[1], cuda.gridsize(1)):
        wp = _valid_weight(ids)
        mean = 0.0
        for r in range(m):
            if ids[r, 0] != 0:
                mean += x[r, k]
        mean /= wp
        var = 0.0
        for r in range(m):
            if ids[r, 0] != 0:
                d = x[r, k] - mean
                var += d * d
        var /= wp
        moving_mean[k] = momentum * moving_mean[k] + (1.0 - momentum) * mean
        moving_var[k] = momentum * moving_var[k] + (1.0 - momentum) * var
        stats[0, k] = mean
        stats[1, k] = 1.0 / math.sqrt(var + epsilon)


@jit
def _bn_grad_sums_masked(x, ids, dy, gamma, stats, sums, dgamma, dbeta):
    m = x.shape[0]
    for k in range(cuda.grid(1), x.shape[1], cuda.gridsize(1)):
        mean = stats[0, k]
        inv = stats[1, k]
        sdy = 0.0
        sdyx = 0.0
        for r in range(m):
            g = dy[r, k]
            sdy += g
            sdyx += g * (x[r, k] - mean) * inv
        if dgamma.shape[0] != 0:
            dgamma[k] = sdyx
        if dbeta.shape[0] != 0:
            dbeta[k] = sdy
        wp = _valid_weight(ids)
        g = 1.0
        if gamma.shape[0] != 0:
            g = gamma[k]
        a = g * sdy
        b = g * sdyx
        sums[0, k] = inv * (a - inv * b * mean * KERAS_EPSILON / wp) / wp
        sums[1, k] = inv * b / wp


@jit
def _bn_dx_masked(x, ids, dy, gamma, stats, sums, dx):
    cols = x.shape[1]
    for idx in range(cuda.grid(1), x.shape[0] * cols, cuda.gridsize(1)):
        r = idx // cols
        k = idx - r * cols
        f = stats[1, k]
        if gamma.shape[0] != 0:
            f *= gamma[k]
        d = f * dy[r, k]
        if ids[r, 0] != 0:
            d -= sums[0, k] + (x[r, k] - stats[0, k]) * stats[1, k] * sums[1, k]
        dx[r, k] = d


@jit
def _bn_normalise(x, gamma, beta, stats, out):
    cols = x.shape[1]
    for idx in range(cuda.grid(1), x.shape[0] * cols, cuda.gridsize(1)):
        r = idx // cols
        k = idx - r * cols
        y = (x[r, k] - stats[0, k]) * stats[1, k]
        if gamma.shape[0] != 0:
            y *= gamma[k]
        if beta.shape[0] != 0:
            y += beta[k]
        out[r, k] = y


@jit
def _bn_fold(gamma, beta, epsilon, moving_mean, moving_var, coef):
    for k in range(cuda.grid(1), coef.shape[1], cuda.gridsize(1)):
        s = 1.0 / math.sqrt(moving_var[k] + epsilon)
        if gamma.shape[0] != 0:
            s *= gamma[k]
        coef[0, k] = s
        b = -moving_mean[k] * s
        if beta.shape[0] != 0:
            b += beta[k]
        coef[1, k] = b


@jit
def _fold_weights(w, bias, coef, w_out, bias_out):
    cols = w.shape[1]
    for idx in range(cuda.grid(1), w.shape[0] * cols, cuda.gridsize(1)):
        r = idx // cols
        k = idx - r * cols
        w_out[r, k] = w[r, k] * coef[0, k]
        if r == 0:
            b = coef[1, k]
            if bias.shape[0] != 0:
                b += bias[k] * coef[0, k]
            bias_out[k] = b


@jit
def _scale_shift(x, coef, out):
    cols = x.shape[1]
    for idx in range(cuda.grid(1), x.shape[0] * cols, cuda.gridsize(1)):
        r = idx // cols
        k = idx - r * cols
        out[r, k] = x[r, k] * coef[0, k] + coef[1, k]


@jit
def _bn_grad_sums(x, dy, gamma, stats, sums, dgamma, dbeta):
    m = x.shape[0]
    for k in range(cuda.grid(1), x.shape[1], cuda.gridsize(1)):
        mean = stats[0, k]
        inv = stats[1, k]
        sdy = 0.0
        sdyx = 0.0
        for r in range(m):
            g = dy[r, k]
            sdy += g
            sdyx += g * (x[r, k] - mean) * inv
        if dgamma.shape[0] != 0:
            dgamma[k] = sdyx
        if dbeta.shape[0] != 0:
            dbeta[k] = sdy
        f = inv
        if gamma.shape[0] != 0:
            f *= gamma[k]
        sums[0, k] = f * sdy / m
        sums[1, k] = f * sdyx / m


@jit
def _bn_dx(x, dy, gamma, stats, sums, dx):
    cols = x.shape[1]
    for idx in range(cuda.grid(1), x.shape[0] * cols, cuda.gridsize(1)):
        r = idx // cols
        k = idx - r * cols
        f = stats[1, k]
        if gamma.shape[0] != 0:
            f *= gamma[k]
        dx[r, k] = f * dy[r, k] - sums[0, k] - (x[r, k] - stats[0, k]) * stats[1, k] \
            * sums[1, k]


@jit
def _bn_frozen_param_grads(x, dy, moving_mean, moving_var, epsilon, dgamma, dbeta):
    m = x.shape[0]
    for k in range(cuda.grid(1), x.shape[1], cuda.gridsize(1)):
        sg = 0.0
        sb = 0.0
        for r in range(m):
            sg += dy[r, k] * (x[r, k] - moving_mean[k]) / math.sqrt(moving_var[k] + epsilon)
            sb += dy[r, k]
        if dgamma.shape[0] != 0:
            dgamma[k] = sg
        if dbeta.shape[0] != 0:
            dbeta[k] = sb


@jit
def _scale_only(dy, coef, dx):
    cols = dy.shape[1]
    for idx in range(cuda.grid(1), dy.shape[0] * cols, cuda.gridsize(1)):
        r = idx // cols
        k = idx - r * cols
        dx[r, k] = dy[r, k] * coef[0, k]


@jit
def _ln_rows(x, gamma, beta, epsilon, stats, out):
    c = x.shape[1]
    for r in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        mean = 0.0
        for k in range(c):
            mean += x[r, k]
        mean /= c
        var = 0.0
        for k in range(c):
            d = x[r, k] - mean
            var += d * d
        inv = 1.0 / math.sqrt(var / c + epsilon)
        stats[r, 0] = mean
        stats[r, 1] = inv
        for k in range(c):
            y = (x[r, k] - mean) * inv
            if gamma.shape[0] != 0:
                y *= gamma[k]
            if beta.shape[0] != 0:
                y += beta[k]
            out[r, k] = y


@jit
def _ln_param_grads(x, dy, stats, dgamma, dbeta):
    m = x.shape[0]
    for k in range(cuda.grid(1), x.shape[1], cuda.gridsize(1)):
        sg = 0.0
        sb = 0.0
        for r in range(m):
            sg += dy[r, k] * (x[r, k] - stats[r, 0]) * stats[r, 1]
            sb += dy[r, k]
        if dgamma.shape[0] != 0:
            dgamma[k] = sg
        if dbeta.shape[0] != 0:
            dbeta[k] = sb


@jit
def _ln_dx(x, dy, gamma, stats, dx):
    c = x.shape[1]
    for r in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        mean = stats[r, 0]
        inv = stats[r, 1]
        sg = 0.0
        sgx = 0.0
        for k in range(c):
            g = dy[r, k] * gamma[k] if gamma.shape[0] != 0 else dy[r, k]
            sg += g
            sgx += g * (x[r, k] - mean) * inv
        sg /= c
        sgx /= c
        for k in range(c):
            g = dy[r, k] * gamma[k] if gamma.shape[0] != 0 else dy[r, k]
            dx[r, k] = inv * (g - sg - (x[r, k] - mean) * inv * sgx)


def _launch(n: int) -> tuple[int, int] | None:
    return None if n == 0 else config_1d(n)


def batchnorm_forward_train(x: Any, gamma: Any, beta: Any, momentum: float, epsilon: float,
                            moving_mean: Any, moving_var: Any, stats: Any, out: Any, *,
                            stream: Any = 0) -> None:
    """Batch statistics, moving-statistics update and normalisation (see the CPU kernel)."""
    cfg = _launch(x.shape[1])
    if cfg is None or x.shape[0] == 0:
        return
    _bn_stats[cfg[0], cfg[1], stream](x, momentum, epsilon, moving_mean, moving_var, stats)
    cfg = config_1d(x.shape[0] * x.shape[1])
    _bn_normalise[cfg[0], cfg[1], stream](x, gamma, beta, stats, out)


def batchnorm_forward_infer(x: Any, gamma: Any, beta: Any, epsilon: float, moving_mean: Any,
                            moving_var: Any, coef: Any, out: Any, *, stream: Any = 0) -> None:
    """``out = x * a + b`` with the moving statistics folded into ``coef`` first."""
    cfg = _launch(x.shape[1])
    if cfg is None:
        return
    _bn_fold[cfg[0], cfg[1], stream](gamma, beta, epsilon, moving_mean, moving_var, coef)
    cfg = _launch(x.shape[0] * x.shape[1])
    if cfg is not None:
        _scale_shift[cfg[0], cfg[1], stream](x, coef, out)


def batchnorm_affine(gamma: Any, beta: Any, epsilon: float, moving_mean: Any,
                     moving_var: Any, coef: Any, *, stream: Any = 0) -> None:
    """The inference form's per-channel scale and shift into ``coef`` (see the CPU
    kernel)."""
    cfg = _launch(coef.shape[1])
    if cfg is not None:
        _bn_fold[cfg[0], cfg[1], stream](gamma, beta, epsilon, moving_mean, moving_var, coef)


def fold_channel_affine(w: Any, bias: Any, coef: Any, w_out: Any, bias_out: Any, *,
                        stream: Any = 0) -> None:
    """A per-channel affine folded into the weights before it (see the CPU kernel)."""
    cfg = _launch(w.shape[0] * w.shape[1])
    if cfg is not None:
        _fold_weights[cfg[0], cfg[1], stream](w, bias, coef, w_out, bias_out)


def batchnorm_backward(x: Any, dy: Any, gamma: Any, stats: Any, sums: Any, dgamma: Any,
                       dbeta: Any, dx: Any, *, stream: Any = 0) -> None:
    """Training backward through the batch statistics (see the CPU kernel)."""
    cfg = _launch(x.shape[1])
    if cfg is None:
        return
    _bn_grad_sums[cfg[0], cfg[1], stream](x, dy, gamma, stats, sums, dgamma, dbeta)
    cfg = _launch(dx.shape[0] * dx.shape[1])
    if cfg is not None:
        _bn_dx[cfg[0], cfg[1], stream](x, dy, gamma, stats, sums, dx)


def batchnorm_backward_frozen(x: Any, dy: Any, moving_mean: Any, moving_var: Any,
                              epsilon: float, coef: Any, dgamma: Any, dbeta: Any, dx: Any, *,
                              stream: Any = 0) -> None:
    """Backward of the inference form (a frozen layer in ``fit``)."""
    cfg = _launch(dy.shape[1])
    if cfg is None:
        return
    _bn_frozen_param_grads[cfg[0], cfg[1], stream](x, dy, moving_mean, moving_var, epsilon,
                                                   dgamma, dbeta)
    cfg = _launch(dx.shape[0] * dx.shape[1])
    if cfg is not None:
        _scale_only[cfg[0], cfg[1], stream](dy, coef, dx)


def batchnorm_forward_train_masked(x: Any, ids: Any, gamma: Any, beta: Any, momentum: float,
                                   epsilon: float, moving_mean: Any, moving_var: Any,
                                   stats: Any, out: Any, *, stream: Any = 0) -> None:
    """Statistics over the real rows (``ids`` ``(M, 1)`` not 0), the moving-statistics
    update and the normalisation of every row (see the CPU kernel)."""
    if ids.shape[0] != x.shape[0]:
        raise ValueError("batchnorm_forward_train_masked: ids and x rows differ")
    cfg = _launch(x.shape[1])
    if cfg is None:
        return
    _bn_stats_masked[cfg[0], cfg[1], stream](x, ids, momentum, epsilon, moving_mean,
                                             moving_var, stats)
    cfg = _launch(x.shape[0] * x.shape[1])
    if cfg is not None:
        _bn_normalise[cfg[0], cfg[1], stream](x, gamma, beta, stats, out)


def batchnorm_backward_masked(x: Any, ids: Any, dy: Any, gamma: Any, stats: Any, sums: Any,
                              dgamma: Any, dbeta: Any, dx: Any, *, stream: Any = 0) -> None:
    """Backward of :func:`batchnorm_forward_train_masked` (see the CPU kernel)."""
    if ids.shape[0] != x.shape[0]:
        raise ValueError("batchnorm_backward_masked: ids and x rows differ")
    cfg = _launch(x.shape[1])
    if cfg is None:
        return
    _bn_grad_sums_masked[cfg[0], cfg[1], stream](x, ids, dy, gamma, stats, sums, dgamma,
                                                 dbeta)
    cfg = _launch(dx.shape[0] * dx.shape[1])
    if cfg is not None:
        _bn_dx_masked[cfg[0], cfg[1], stream](x, ids, dy, gamma, stats, sums, dx)


def layernorm_forward(x: Any, gamma: Any, beta: Any, epsilon: float, stats: Any, out: Any, *,
                      stream: Any = 0) -> None:
    """Normalises each row (see the CPU kernel)."""
    cfg = _launch(x.shape[0])
    if cfg is not None:
        _ln_rows[cfg[0], cfg[1], stream](x, gamma, beta, epsilon, stats, out)


def layernorm_backward(x: Any, dy: Any, gamma: Any, stats: Any, dgamma: Any, dbeta: Any,
                       dx: Any, *, stream: Any = 0) -> None:
    """Backward of :func:`layernorm_forward` (see the CPU kernel)."""
    cfg = _launch(x.shape[1])
    if cfg is not None and (dgamma.shape[0] or dbeta.shape[0]):
        _ln_param_grads[cfg[0], cfg[1], stream](x, dy, stats, dgamma, dbeta)
    cfg = _launch(dx.shape[0])
    if cfg is not None:
        _ln_dx[cfg[0], cfg[1], stream](x, dy, gamma, stats, dx)
