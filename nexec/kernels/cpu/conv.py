"""2-D convolution kernels (NHWC, Keras weight layout): im2col + BLAS GEMMs, in row blocks.

A convolution is a matrix product once its input is unrolled into a column matrix (im2col),
so the work goes to the same BLAS GEMMs as Dense, one cache-sized block of output rows at a
time, and ends with the same fused bias + activation epilogue as Dense
(:mod:`.activation`): a 1x1 convolution gives exactly Dense's bits.

* ``x`` is a C-contiguous ``(N, H, W, Cin)`` array, ``w`` a C-contiguous ``(KH, KW, Cin, F)``
  array (Keras), ``b`` is ``(F,)`` or ``(0,)`` for no bias.
* The output ``out``/``y`` and its gradient ``dy`` are 2-D ``(N*Ho*Wo, F)`` views with unit
  column stride whose row stride may exceed ``F`` (a slice of a channel-concatenated buffer).
* ``pt``/``pl`` are the top/left zero padding and ``ho``/``wo`` the output size, from
  :func:`nexec.ops.geometry.conv2d_geometry`. Rows of the column matrix are ordered
  ``(n, oy, ox)`` and its columns ``(ky, kx, ci)``, so ``w.reshape(KH*KW*Cin, F)`` is the GEMM
  right-hand side without any copy.
* Kernels never allocate: all scratch space comes in as workspaces whose shapes
  :func:`nexec.ops.geometry.conv2d_workspace_shapes` gives. A 1x1, stride-1, unpadded
  convolution needs no column matrix (``x`` viewed as ``(N*H*W, Cin)`` already is one).

Why im2col + GEMM, why blocks of about 2**20 column-matrix elements, why serial loops and why
slice views in im2col/col2im: see "Convolution kernels: how they got here" in
docs/performance.md.
"""
from __future__ import annotations

import numpy as np

from nexec.kernels.activations import SOFTMAX
from nexec.kernels.cpu.activation import (
    copy_row,
    epilogue_grad_rows,
    epilogue_grad_rows_add,
    epilogue_rows,
    epilogue_softmax_rows,
    same_data,
)
from nexec.kernels.jit import kernel
from nexec.ops import geometry
from nexec.ops.geometry import conv2d_geometry, conv2d_workspace_shapes

__all__ = [
    "conv2d_forward",
    "conv2d_backward",
    # Re-exported from nexec.ops.geometry (plain Python) for existing callers.
    "conv2d_geometry",
    "conv2d_workspace_shapes",
]

# The jitted twin of geometry.is_pointwise, for the kernels only: planning code calls the
# plain-Python original and never compiles this.
_is_pointwise = kernel(geometry.is_pointwise)

_BLOCK = 256  # rows finished in place in tmp, then copied to a strided out, per step


# --------------------------------------------------------------------------- epilogue


@kernel
def _epilogue(tmp, b, act, out):
    """out = act(tmp + b) for a block of rows, with ``dense_forward``'s bits; ``tmp`` is scratch.

    Into a row-strided ``out`` (a concatenation's slice), the rows are finished in place in
    the contiguous ``tmp`` and then copied, 256 at a time while they are in cache: loops over
    a strided array do not vectorize (2-3x slower for sigmoid). Elementwise math per row,
    so the bits are those of ``epilogue_rows(tmp, b, act, out)``.
    """
    if act == SOFTMAX:
        epilogue_softmax_rows(tmp, b, out)  # tmp is contiguous scratch: the fast block form
    elif same_data(tmp, out) and tmp.strides[0] == out.strides[0]:
        epilogue_rows(tmp, b, act, out)
    else:
        if out.shape != tmp.shape:
            raise ValueError("conv2d_forward: out must be (N*Ho*Wo, F)")
        m = tmp.shape[0]
        for r0 in range(0, m, _BLOCK):
            r1 = min(m, r0 + _BLOCK)
            block = tmp[r0:r1]
            epilogue_rows(block, b, act, block)
            for r in range(r0, r1):
                copy_row(tmp[r], out[r])


# --------------------------------------------------------------------------- im2col / col2im


@kernel
def _pixel(p, ho, wo):
    """(image, output row, output column) of column-matrix row ``p = (n*ho + oy)*wo + ox``."""
    q = p // wo
    return q // ho, q % ho, p % wo


@kernel
def _im2col(x, sh, sw, pt, pl, ho, wo, kh, kw, r0, cols):
    """Rows r0 .. r0+len(cols)-1 of the column matrix into ``cols``.

    Row ``r = (n*ho + oy)*wo + ox``, column ``(ky*kw + kx)*c + ci`` holds
    ``x_padded[n, oy*sh+ky, ox*sw+kx, ci]``.  For one output pixel and kernel row ``ky`` the
    in-bounds taps are one contiguous run of ``x``, copied between 1-D views (views, not computed
    indices: docs/performance.md), with zeros either side.
    """
    n = x.shape[0]
    h = x.shape[1]
    w = x.shape[2]
    c = x.shape[3]
    xf = x.reshape(n * h * w * c)
    kwc = kw * c
    for r in range(cols.shape[0]):
        img, oy, ox = _pixel(r0 + r, ho, wo)
        row = cols[r]
        ix0 = ox * sw - pl
        lo = max(0, -ix0) * c
        hi = max(min(kw, w - ix0) * c, lo)
        for ky in range(kh):
            d = row[ky * kwc:(ky + 1) * kwc]
            iy = oy * sh - pt + ky
            if iy < 0 or iy >= h:
                for j in range(kwc):
                    d[j] = 0
                continue
            for j in range(lo):
                d[j] = 0
            s = xf[((img * h + iy) * w + ix0) * c + lo:]
            dd = d[lo:]
            for j in range(hi - lo):
                dd[j] = s[j]
            for j in range(hi, kwc):
                d[j] = 0


@kernel
def _col2im(dcols, sh, sw, pt, pl, ho, wo, kh, kw, r0, dx):
    """Scatter-adds rows r0 .. r0+len(dcols)-1 of a column-matrix gradient onto ``dx``.

    For one output pixel and kernel row ``ky`` the in-bounds taps ``kx`` hit consecutive
    input pixels, so each (pixel, ky) is one contiguous run of ``(khi - klo) * Cin`` adds
    between two 1-D slice views (views, not ``a[base + j]``: docs/performance.md).
    """
    n = dx.shape[0]
    h = dx.shape[1]
    w = dx.shape[2]
    c = dx.shape[3]
    dxf = dx.reshape(n * h * w * c)
    kwc = kw * c
    for r in range(dcols.shape[0]):
        img, oy, ox = _pixel(r0 + r, ho, wo)
        row = dcols[r]
        ix0 = ox * sw - pl
        klo = max(0, -ix0)
        khi = min(kw, w - ix0)
        run = (khi - klo) * c
        if run <= 0:
            continue
        for ky in range(kh):
            iy = oy * sh - pt + ky
            if iy < 0 or iy >= h:
                continue
            d = dxf[((img * h + iy) * w + ix0 + klo) * c:]
            s = row[ky * kwc + klo * c:]
            for j in range(run):
                d[j] += s[j]


# --------------------------------------------------------------------------- public kernels


@kernel
def conv2d_forward(x, w, b, sh, sw, pt, pl, ho, wo, act, cols, tmp, out):
    """out = act(conv2d(x, w) + b), NHWC, Keras weight layout, zero padding.

    Args:
        x: (N, H, W, Cin) C-contiguous input.
        w: (KH, KW, Cin, F) C-contiguous weights.
        b: (F,) bias, or shape (0,) for no bias.
        sh, sw: strides.
        pt, pl: top and left zero padding (``nexec.ops.geometry.conv2d_geometry``).
        ho, wo: output height and width.
        act: activation code (``nexec.kernels.activations``); softmax is over channels.
        cols: (R, KH*KW*Cin) C-contiguous workspace, R >= 1: the column matrix is built and
            multiplied R rows at a time (R = N*Ho*Wo: all at once); ignored (may be (0, 0))
            for a 1x1 stride-1 unpadded convolution.
        tmp: (N*Ho*Wo, F) C-contiguous GEMM target; pass ``out`` when ``out`` is contiguous
            (a row-strided ``tmp`` makes Numba's ``np.dot`` fail with a bare AssertionError).
        out: (N*Ho*Wo, F) output, may be row-strided; overwritten.
    """
    n = x.shape[0]
    h = x.shape[1]
    wd = x.shape[2]
    c = x.shape[3]
    kh = w.shape[0]
    kw = w.shape[1]
    f = w.shape[3]
    m = n * ho * wo
    w2 = w.reshape(kh * kw * c, f)
    if _is_pointwise(h, wd, kh, kw, ho, wo, sh, sw, pt, pl):
        np.dot(x.reshape(m, c), w2, tmp)
        _epilogue(tmp, b, act, out)
        return
    rows = cols.shape[0]
    for r0 in range(0, m, rows):
        r1 = min(m, r0 + rows)
        cb = cols[:r1 - r0]
        _im2col(x, sh, sw, pt, pl, ho, wo, kh, kw, r0, cb)
        np.dot(cb, w2, tmp[r0:r1])
        _epilogue(tmp[r0:r1], b, act, out[r0:r1])


@kernel
def conv2d_backward(x, w, y, dy, sh, sw, pt, pl, ho, wo, act, cols, dz, dcols, dx, dw, db):
    """Gradients of ``y = act(conv2d(x, w) + b)``; every output is overwritten.

    Args:
        x: (N, H, W, Cin) C-contiguous forward input.
        w: (KH, KW, Cin, F) C-contiguous weights.
        y: (N*Ho*Wo, F) forward output, may be row-strided.
        dy: (N*Ho*Wo, F) gradient with respect to ``y``, may be row-strided.
        sh, sw, pt, pl, ho, wo, act: as in :func:`conv2d_forward`.
        cols: (R, KH*KW*Cin) C-contiguous workspace (rebuilt here from ``x``).  R >= N*Ho*Wo:
            one block of all rows.  Otherwise R > F: blocks of R - F rows, the last F rows
            holding each block's partial weight gradient.  Ignored for a 1x1 stride-1
            unpadded convolution.
        dz: (N*Ho*Wo, F) C-contiguous workspace: the pre-activation gradient (may be ``dy``
            when that is contiguous and may be overwritten).
        dcols: column-gradient workspace; a (0, 0) array (or ``cols`` itself) means "reuse
            ``cols``", which is what ``conv2d_workspace_shapes`` asks for; otherwise a
            C-contiguous array shaped like ``cols``.
        dx: (N, H, W, Cin) C-contiguous input gradient; shape (0, H, W, Cin) skips it.
        dw: (KH, KW, Cin, F) C-contiguous weight gradient.
        db: (F,) bias gradient; shape (0,) skips it.
    """
    n = x.shape[0]
    h = x.shape[1]
    wd = x.shape[2]
    c = x.shape[3]
    kh = w.shape[0]
    kw = w.shape[1]
    f = w.shape[3]
    k = kh * kw * c
    m = n * ho * wo
    w2 = w.reshape(k, f)
    dw2 = dw.reshape(k, f)
    need_dx = dx.shape[0] != 0
    if _is_pointwise(h, wd, kh, kw, ho, wo, sh, sw, pt, pl):
        epilogue_grad_rows(y, dy, act, dz, db)  # then the very GEMMs of dense_backward
        x2 = x.reshape(m, c)
        np.dot(x2.T, dz, dw2)
        if need_dx:
            np.dot(dz, w2.T, dx.reshape(m, c))
        return
    for j in range(db.shape[0]):
        db[j] = 0
    if need_dx:
        dxf = dx.reshape(dx.size)
        for j in range(dxf.shape[0]):
            dxf[j] = 0
    rows = cols.shape[0]
    step = m
    part = dw2
    if rows < m:
        if rows <= f:
            raise ValueError("conv2d_backward: cols needs more than F rows")
        step = rows - f
        part = cols.reshape(rows * k)[step * k:step * k + k * f].reshape(k, f)
    for r0 in range(0, m, step):
        r1 = min(m, r0 + step)
        cb = cols[:r1 - r0]
        dzb = dz[r0:r1]
        epilogue_grad_rows_add(y[r0:r1], dy[r0:r1], act, dzb, db)
        _im2col(x, sh, sw, pt, pl, ho, wo, kh, kw, r0, cb)
        if r0 == 0:
            np.dot(cb.T, dzb, dw2)
        else:
            np.dot(cb.T, dzb, part)
            for i in range(k):
                for j in range(f):
                    dw2[i, j] += part[i, j]
        if need_dx:
            dc = dcols[:r1 - r0] if dcols.shape[0] != 0 else cb
            np.dot(dzb, w2.T, dc)
            _col2im(dc, sh, sw, pt, pl, ho, wo, kh, kw, r0, dx)
