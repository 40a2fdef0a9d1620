"""Activation kernels and the row helpers that other CPU kernels fuse into their epilogues.

Dense, convolution and merge kernels finish with "add a bias, apply the activation"; doing
that in one pass over a row that is still in cache is what makes the fusion pay. The row
helpers here (:func:`activate_row`, :func:`activate_row_grad`, :func:`epilogue_rows`,
:func:`epilogue_grad_rows`) are ordinary ``@kernel`` functions, so other modules call them
from inside their own njit code, where LLVM inlines them.

Every 2-D argument is a ``(rows, channels)`` view with unit column stride; the row stride may
be larger than the number of channels (a slice of a concatenated buffer). Derivatives are
computed from the activation *output* ``y`` (see ``nexec.kernels.activations``).
"""
from __future__ import annotations

import numpy as np

from nexec.kernels.activations import LINEAR, RELU, SIGMOID, SOFTMAX, TANH
from nexec.kernels.jit import kernel

__all__ = [
    "activation_forward",
    "activation_backward",
    "epilogue_rows",
    "epilogue_grad_rows",
    "activate_row",
    "activate_row_grad",
]


@kernel
def _sigmoid(v):
    # Two branches so that exp never overflows.
    if v >= 0:
        return 1.0 / (1.0 + np.exp(-v))
    e = np.exp(v)
    return e / (1.0 + e)


@kernel
def _softmax_row(s, o):
    n = s.shape[0]
    if n == 0:
        return
    m = s[0]
    for j in range(1, n):
        if s[j] > m:
            m = s[j]
    total = 0.0  # float64 accumulator whatever the dtype
    for j in range(n):
        e = np.exp(s[j] - m)
        o[j] = e
        total += e
    inv = 1.0 / total
    for j in range(n):
        o[j] = o[j] * inv


@kernel
def activate_row(s, act, o):
    """o = act(s) for one row; ``o`` may be the same array as ``s``.

    Args:
        s: 1-D source row.
        act: Activation code (``nexec.kernels.activations``).
        o: 1-D destination row of the same length.
    """
    n = s.shape[0]
    if act == LINEAR:
        for j in range(n):
            o[j] = s[j]
    elif act == RELU:
        for j in range(n):
            v = s[j]
            o[j] = v if v > 0 else 0
    elif act == SIGMOID:
        for j in range(n):
            o[j] = _sigmoid(s[j])
    elif act == TANH:
        for j in range(n):
            o[j] = np.tanh(s[j])
    elif act == SOFTMAX:
        _softmax_row(s, o)
    else:
        raise ValueError("unknown activation code")


@kernel
def activate_row_grad(y, dy, act, dx):
    """dx = dy * act'(y) for one row (the softmax Jacobian-vector product for SOFTMAX).

    Args:
        y: 1-D activation output row.
        dy: 1-D gradient with respect to ``y``.
        act: Activation code.
        dx: 1-D destination; may be the same array as ``dy``.
    """
    n = y.shape[0]
    if act == LINEAR:
        for j in range(n):
            dx[j] = dy[j]
    elif act == RELU:
        for j in range(n):
            dx[j] = dy[j] if y[j] > 0 else 0
    elif act == SIGMOID:
        for j in range(n):
            v = y[j]
            dx[j] = dy[j] * (v * (1.0 - v))
    elif act == TANH:
        for j in range(n):
            v = y[j]
            dx[j] = dy[j] * (1.0 - v * v)
    elif act == SOFTMAX:
        dot = 0.0  # float64 accumulator
        for j in range(n):
            dot += dy[j] * y[j]
        for j in range(n):
            dx[j] = y[j] * (dy[j] - dot)
    else:
        raise ValueError("unknown activation code")


@kernel
def epilogue_rows(src, bias, act, out):
    """out[i, j] = act(src[i, j] + bias[j]), softmax row-wise; the fused-epilogue helper.

    Args:
        src: 2-D (rows, channels), may be row-strided; may be the same array as ``out``.
        bias: 1-D (channels,), or shape (0,) for no bias.
        act: Activation code.
        out: 2-D (rows, channels), may be row-strided.
    """
    rows = src.shape[0]
    cols = src.shape[1]
    if bias.shape[0] > 0:
        for i in range(rows):
            s = src[i]
            o = out[i]
            for j in range(cols):
                o[j] = s[j] + bias[j]
            if act != LINEAR:
                activate_row(o, act, o)
    else:
        for i in range(rows):
            activate_row(src[i], act, out[i])


@kernel
def epilogue_grad_rows(y, dy, act, dz, db):
    """dz = dy * act'(y) and, in the same pass, db = column sums of dz.

    Args:
        y: 2-D activation output, may be row-strided.
        dy: 2-D gradient with respect to ``y``, may be row-strided.
        act: Activation code.
        dz: 2-D destination, may be row-strided and may be the same array as ``dy``.
        db: 1-D (channels,), overwritten; shape (0,) skips the column sums. Summed in the
            arrays' dtype (row by row, to stay a single pass without a workspace).
    """
    rows = y.shape[0]
    cols = y.shape[1]
    nb = db.shape[0]
    for j in range(nb):
        db[j] = 0
    for i in range(rows):
        z = dz[i]
        activate_row_grad(y[i], dy[i], act, z)
        if nb > 0:
            for j in range(cols):
                db[j] += z[j]


@kernel
def activation_forward(x, act, out):
    """out = act(x), softmax row-wise over the last axis.

    Args:
        x: 2-D (rows, channels), may be row-strided.
        act: Activation code (``nexec.kernels.activations``).
        out: 2-D like ``x``, may be row-strided; may be the same array as ``x``.
    """
    for i in range(x.shape[0]):
        activate_row(x[i], act, out[i])


@kernel
def activation_backward(y, dy, act, dx):
    """dx = dy * act'(y), with act' taken from the output ``y``.

    Args:
        y: 2-D activation output, may be row-strided.
        dy: 2-D gradient with respect to ``y``, may be row-strided.
        act: Activation code.
        dx: 2-D destination, may be row-strided; may be the same array as ``dy``.
    """
    for i in range(y.shape[0]):
        activate_row_grad(y[i], dy[i], act, dx[i])
