"""Fully connected layer kernels: BLAS GEMM plus one fused bias/activation pass.

The matrix products go to BLAS through ``np.dot`` with an output argument (no temporaries);
everything elementwise around them (bias, activation, activation derivative, bias gradient)
is done in a single pass over each row, using the helpers of :mod:`.activation`.
"""
from __future__ import annotations

import numpy as np

from nexec.kernels.activations import SOFTMAX
from nexec.kernels.cpu.activation import epilogue_grad_rows, epilogue_rows, epilogue_softmax_rows
from nexec.kernels.jit import kernel

__all__ = ["dense_forward", "dense_backward"]


@kernel
def dense_forward(x, w, b, act, out, tmp):
    """out = act(x @ w + b).

    Args:
        x: (N, I) C-contiguous input (a strided ``x`` works, but numba then copies it).
        w: (I, O) C-contiguous weights.
        b: (O,) bias, or shape (0,) for no bias.
        act: Activation code (``nexec.kernels.activations``).
        out: (N, O) output, may be row-strided.
        tmp: (N, O) C-contiguous workspace that receives the GEMM; pass ``out`` itself when
            ``out`` is contiguous.
    """
    n, o = x.shape[0], w.shape[1]
    if x.shape[1] != w.shape[0] or out.shape != (n, o) or tmp.shape != (n, o):
        raise ValueError("dense_forward: shapes of x, w, out and tmp do not match")
    np.dot(x, w, tmp)
    if act == SOFTMAX:
        epilogue_softmax_rows(tmp, b, out)  # tmp is contiguous scratch: the fast block form
    else:
        epilogue_rows(tmp, b, act, out)


@kernel
def dense_backward(x, w, y, dy, act, dz, dx, dw, db):
    """Gradients of ``y = act(x @ w + b)``; every output is overwritten, not accumulated.

    Args:
        x: (N, I) C-contiguous forward input.
        w: (I, O) C-contiguous weights.
        y: (N, O) forward output, may be row-strided.
        dy: (N, O) gradient with respect to ``y``, may be row-strided.
        act: Activation code.
        dz: (N, O) C-contiguous workspace; receives the pre-activation gradient. It may be
            ``dy`` itself when ``dy`` is C-contiguous (``dy`` is then overwritten).
        dx: (N, I) C-contiguous gradient of ``x``; shape (0, I) skips it.
        dw: (I, O) C-contiguous gradient of ``w``.
        db: (O,) gradient of the bias; shape (0,) skips it.
    """
    n, i, o = x.shape[0], x.shape[1], w.shape[1]
    if (w.shape[0] != i or y.shape != (n, o) or dz.shape != (n, o) or dw.shape != (i, o)
            or (dx.shape[0] != 0 and dx.shape != (n, i))):
        raise ValueError("dense_backward: shapes of x, w, y, dz, dx and dw do not match")
    epilogue_grad_rows(y, dy, act, dz, db)
    np.dot(x.T, dz, dw)
    if dx.shape[0] != 0:
        np.dot(dz, w.T, dx)
