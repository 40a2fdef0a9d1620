"""Depthwise and transposed 2-D convolution kernels (NHWC, Keras weight layouts).

* Depthwise: each input channel ``c`` is convolved with its own ``depth_multiplier`` filters
  ``w[:, :, c, m]`` into output channel ``c * DM + m`` (TensorFlow's order). There is no
  channel reduction to hand to a GEMM, so it is a direct loop: per output pixel and kernel
  tap, one pass along the contiguous channel axis (vectorised over channels).
* Transposed: ``y = conv2d_transpose(x, w)`` is the input gradient of the convolution that
  maps ``y``'s ``(Ho, Wo)`` back to ``x``'s ``(H, W)`` with the kernel ``w`` read as
  ``(KH, KW, F, Cin)`` (Keras' layout, unchanged): so forward is the GEMM ``x @ w.T`` into a
  column-matrix block and a col2im scatter, and backward is that convolution's forward
  (im2col of the output gradient, then ``cols @ w`` for ``dx`` and ``cols.T @ x`` for
  ``dw``, each block's added onto ``dw`` by the GEMM: :func:`.blas.gemm`) -- :mod:`.conv`'s
  own im2col and col2im, in blocks of rows.

Both end (forward) and start (backward) with the shared bias + activation epilogues of
:mod:`.activation`, so the activation bits are Dense's and Conv2D's. Kernels never allocate:
scratch comes in as workspaces (``nexec.ops.conv``).
"""
from __future__ import annotations

import numpy as np

from nexec.kernels.activations import SOFTMAX
from nexec.kernels.cpu.activation import epilogue_grad_rows, epilogue_rows, epilogue_softmax_rows
from nexec.kernels.cpu.blas import gemm
from nexec.kernels.cpu.conv import _col2im, _im2col, _pixel
from nexec.kernels.jit import kernel

__all__ = [
    "depthwise_conv2d_forward",
    "depthwise_conv2d_backward",
    "conv2d_transpose_forward",
    "conv2d_transpose_backward",
]


@kernel
def _epilogue_inplace(out, b, act):
    """out = act(out + b) on a C-contiguous 2-D array, as Dense's epilogue."""
    if act == SOFTMAX:
        epilogue_softmax_rows(out, b, out)
    else:
        epilogue_rows(out, b, act, out)


@kernel
def _zero(a):
    for j in range(a.shape[0]):
        a[j] = 0


# --------------------------------------------------------------------------- depthwise


@kernel
def depthwise_conv2d_forward(x, w, b, sh, sw, pt, pl, ho, wo, act, out):
    """out = act(depthwise_conv2d(x, w) + b).

    Args:
        x: (N, H, W, C) C-contiguous input.
        w: (KH, KW, C, DM) C-contiguous depthwise kernel (Keras).
        b: (C*DM,) bias, or shape (0,) for no bias.
        sh, sw: strides.
        pt, pl: top and left zero padding (``nexec.ops.geometry.conv2d_geometry``).
        ho, wo: output height and width.
        act: activation code; softmax is over the C*DM output channels.
        out: (N*Ho*Wo, C*DM) C-contiguous output, overwritten.
    """
    n = x.shape[0]
    h = x.shape[1]
    wd = x.shape[2]
    c = x.shape[3]
    kh = w.shape[0]
    kw = w.shape[1]
    dm = w.shape[3]
    cm = c * dm
    if w.shape[2] != c or out.shape[0] != n * ho * wo or out.shape[1] != cm:
        raise ValueError("depthwise_conv2d_forward: shapes of x, w and out do not match")
    w2 = w.reshape(kh * kw, cm)
    for r in range(n * ho * wo):
        img, oy, ox = _pixel(r, ho, wo)
        o = out[r]
        _zero(o)
        for ky in range(kh):
            iy = oy * sh - pt + ky
            if iy < 0 or iy >= h:
                continue
            for kx in range(kw):
                ix = ox * sw - pl + kx
                if ix < 0 or ix >= wd:
                    continue
                xs = x[img, iy, ix]
                ws = w2[ky * kw + kx]
                if dm == 1:
                    for j in range(c):
                        o[j] += xs[j] * ws[j]
                else:
                    for ci in range(c):
                        v = xs[ci]
                        for m in range(dm):
                            o[ci * dm + m] += v * ws[ci * dm + m]
    _epilogue_inplace(out, b, act)


@kernel
def depthwise_conv2d_backward(x, w, y, dy, sh, sw, pt, pl, ho, wo, act, dz, dx, dw, db):
    """Gradients of ``y = act(depthwise_conv2d(x, w) + b)``; every output is overwritten.

    Args:
        x: (N, H, W, C) C-contiguous forward input.
        w: (KH, KW, C, DM) C-contiguous kernel.
        y: (N*Ho*Wo, C*DM) forward output, may be row-strided.
        dy: (N*Ho*Wo, C*DM) gradient with respect to ``y``, may be row-strided.
        sh, sw, pt, pl, ho, wo, act: as in :func:`depthwise_conv2d_forward`.
        dz: (N*Ho*Wo, C*DM) C-contiguous workspace for the pre-activation gradient; may be
            ``dy`` itself when that is C-contiguous and may be overwritten.
        dx: (N, H, W, C) C-contiguous input gradient; shape (0, H, W, C) skips it.
        dw: (KH, KW, C, DM) C-contiguous kernel gradient.
        db: (C*DM,) bias gradient; shape (0,) skips it.
    """
    n = x.shape[0]
    h = x.shape[1]
    wd = x.shape[2]
    c = x.shape[3]
    kh = w.shape[0]
    kw = w.shape[1]
    dm = w.shape[3]
    cm = c * dm
    need_dx = dx.shape[0] != 0
    if dz.shape[0] != n * ho * wo or dz.shape[1] != cm or dw.shape != w.shape:
        raise ValueError("depthwise_conv2d_backward: shapes of x, w, dz and dw do not match")
    epilogue_grad_rows(y, dy, act, dz, db)
    w2 = w.reshape(kh * kw, cm)
    dw2 = dw.reshape(kh * kw, cm)
    _zero(dw.reshape(dw.size))
    if need_dx:
        _zero(dx.reshape(dx.size))
    for r in range(n * ho * wo):
        img, oy, ox = _pixel(r, ho, wo)
        g = dz[r]
        for ky in range(kh):
            iy = oy * sh - pt + ky
            if iy < 0 or iy >= h:
                continue
            for kx in range(kw):
                ix = ox * sw - pl + kx
                if ix < 0 or ix >= wd:
                    continue
                xs = x[img, iy, ix]
                gw = dw2[ky * kw + kx]
                if dm == 1:
                    for j in range(c):
                        gw[j] += xs[j] * g[j]
                else:
                    for ci in range(c):
                        v = xs[ci]
                        for m in range(dm):
                            gw[ci * dm + m] += v * g[ci * dm + m]
                if need_dx:
                    gx = dx[img, iy, ix]
                    ws = w2[ky * kw + kx]
                    if dm == 1:
                        for j in range(c):
                            gx[j] += ws[j] * g[j]
                    else:
                        for ci in range(c):
                            acc = gx[ci]
                            for m in range(dm):
                                acc += ws[ci * dm + m] * g[ci * dm + m]
                            gx[ci] = acc


# --------------------------------------------------------------------------- transposed


@kernel
def conv2d_transpose_forward(x, w, b, sh, sw, pt, pl, act, cols, out):
    """out = act(conv2d_transpose(x, w) + b).

    Args:
        x: (N, H, W, Cin) C-contiguous input.
        w: (KH, KW, F, Cin) C-contiguous kernel (Keras).
        b: (F,) bias, or shape (0,) for no bias.
        sh, sw: strides.
        pt, pl: top and left padding of the adjoint convolution
            (``nexec.ops.geometry.conv2d_transpose_geometry``).
        act: activation code; softmax is over the F channels.
        cols: (R, KH*KW*F) C-contiguous workspace, R >= 1: the column-matrix block (R input
            pixels at a time).
        out: (N, Ho, Wo, F) C-contiguous output, overwritten.
    """
    n = x.shape[0]
    h = x.shape[1]
    wd = x.shape[2]
    cin = x.shape[3]
    kh = w.shape[0]
    kw = w.shape[1]
    f = w.shape[2]
    k = kh * kw * f
    m = n * h * wd
    if w.shape[3] != cin or out.shape[0] != n or out.shape[3] != f or cols.shape[1] != k:
        raise ValueError("conv2d_transpose_forward: shapes of x, w, cols and out do not match")
    x2 = x.reshape(m, cin)
    w2 = w.reshape(k, cin)
    _zero(out.reshape(out.size))
    rows = cols.shape[0]
    for r0 in range(0, m, rows):
        r1 = min(m, r0 + rows)
        cb = cols[:r1 - r0]
        np.dot(x2[r0:r1], w2.T, cb)
        _col2im(cb, sh, sw, pt, pl, h, wd, kh, kw, r0, out)
    _epilogue_inplace(out.reshape(out.size // f, f), b, act)


@kernel
def conv2d_transpose_backward(x, w, y, dy, sh, sw, pt, pl, act, cols, dz, dx, dw, db):
    """Gradients of ``y = act(conv2d_transpose(x, w) + b)``; every output is overwritten.

    Args:
        x: (N, H, W, Cin) C-contiguous forward input.
        w: (KH, KW, F, Cin) C-contiguous kernel.
        y: (N*Ho*Wo, F) forward output, may be row-strided.
        dy: (N*Ho*Wo, F) gradient with respect to ``y``, may be row-strided.
        sh, sw, pt, pl, act: as in :func:`conv2d_transpose_forward`.
        cols: (R, KH*KW*F) C-contiguous workspace (im2col of ``dz``, R input pixels at a time).
        dz: (N, Ho, Wo, F) C-contiguous workspace: the pre-activation gradient.
        dx: (N, H, W, Cin) C-contiguous input gradient; shape (0, H, W, Cin) skips it.
        dw: (KH, KW, F, Cin) C-contiguous kernel gradient.
        db: (F,) bias gradient; shape (0,) skips it.
    """
    n = x.shape[0]
    h = x.shape[1]
    wd = x.shape[2]
    cin = x.shape[3]
    kh = w.shape[0]
    kw = w.shape[1]
    f = w.shape[2]
    k = kh * kw * f
    m = n * h * wd
    rows = cols.shape[0]
    if dz.shape[0] != n or dz.shape[3] != f or dw.shape != w.shape or cols.shape[1] != k:
        raise ValueError("conv2d_transpose_backward: shapes of x, w, dz, cols and dw do not "
                         "match")
    need_dx = dx.shape[0] != 0
    epilogue_grad_rows(y, dy, act, dz.reshape(dz.size // f, f), db)
    x2 = x.reshape(m, cin)
    w2 = w.reshape(k, cin)
    dw2 = dw.reshape(k, cin)
    for r0 in range(0, m, rows):
        r1 = min(m, r0 + rows)
        cb = cols[:r1 - r0]
        _im2col(dz, sh, sw, pt, pl, h, wd, kh, kw, r0, cb)
        gemm(1.0, cb.T, x2[r0:r1], 0.0 if r0 == 0 else 1.0, dw2)  # dw2 += cb.T @ x2 block
        if need_dx:
            np.dot(cb, w2, dx.reshape(m, cin)[r0:r1])
