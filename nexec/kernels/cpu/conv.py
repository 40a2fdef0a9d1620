"""2-D convolution kernels (NHWC, Keras weight layout): im2col + BLAS GEMMs, in row blocks.

A convolution is a matrix product once its input is unrolled into a column matrix (im2col),
so the work goes to the same BLAS GEMMs as Dense, one cache-sized block of output rows at a
time, and ends with the same fused bias + activation epilogue as Dense
(:func:`.dense.epilogue_in_place`): a 1x1 convolution gives exactly Dense's bits. The GEMMs
write straight into their targets (:func:`.blas.gemm` takes leading dimensions and
``beta``): the forward into ``out`` even when that is a concatenation's row-strided slice,
and the backward adds each block's weight gradient onto ``dw`` (``beta = 1``), so neither
needs a temporary nor a copy or add pass.

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

from nexec.kernels.cpu.activation import epilogue_grad_rows_add
from nexec.kernels.cpu.blas import gemm
from nexec.kernels.cpu.dense import epilogue_in_place, linear_rows, linear_rows_grad
from nexec.kernels.jit import constant_arguments, kernel
from nexec.ops import geometry
from nexec.ops.geometry import conv2d_geometry, conv2d_workspace_shapes

__all__ = [
    "conv2d_forward",
    "conv2d_backward",
    "conv2d_im2col",
    "conv2d_forward_filters",
    # Re-exported from nexec.ops.geometry (plain Python) for existing callers.
    "conv2d_geometry",
    "conv2d_workspace_shapes",
]

# The jitted twin of geometry.is_pointwise, for the kernels only: planning code calls the
# plain-Python original and never compiles this.
_is_pointwise = kernel(geometry.is_pointwise)

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


@constant_arguments("act")
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
            multiplied R rows at a time (R = N*Ho*Wo: all at once). A 1x1 stride-1 unpadded
            convolution has no column matrix (``x`` is one): ``(R, 0)``, its GEMM and
            epilogue R rows at a time (R = 0: all at once).
        tmp: unused (as on CUDA: the GEMM writes ``out``), kept so that one instruction list
            runs on either device; pass ``out``.
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
        linear_rows(x.reshape(m, c), w2, b, act, cols.shape[0], out)  # Dense's kernel
        return
    rows = cols.shape[0]
    for r0 in range(0, m, rows):
        r1 = min(m, r0 + rows)
        cb = cols[:r1 - r0]
        _im2col(x, sh, sw, pt, pl, ho, wo, kh, kw, r0, cb)
        gemm(1.0, cb, w2, 0.0, out[r0:r1])
        epilogue_in_place(out[r0:r1], b, act)


@constant_arguments("act")
@kernel
def conv2d_backward(x, w, y, dy, sh, sw, pt, pl, ho, wo, act, cols, dz, dcols, dx, dw, db):
    """Gradients of ``y = act(conv2d(x, w) + b)``; every output is overwritten.

    Args:
        x: (N, H, W, Cin) C-contiguous forward input.
        w: (KH, KW, Cin, F) C-contiguous weights.
        y: (N*Ho*Wo, F) forward output, may be row-strided.
        dy: (N*Ho*Wo, F) gradient with respect to ``y``, may be row-strided.
        sh, sw, pt, pl, ho, wo, act: as in :func:`conv2d_forward`.
        cols: (R, KH*KW*Cin) C-contiguous workspace (rebuilt here from ``x``), R >= 1: the
            column matrix, R rows at a time; each block's weight gradient is added onto
            ``dw`` by the GEMM itself. A 1x1 stride-1 unpadded convolution: ``(R, 0)``,
            as in :func:`conv2d_forward`.
        dz: (N*Ho*Wo, F) C-contiguous workspace: the pre-activation gradient (may be ``dy``
            when that is contiguous and may be overwritten); for a 1x1 convolution in blocks
            of R rows, (R, F) is enough.
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
        linear_rows_grad(x.reshape(m, c), w2, y, dy, act, cols.shape[0], dz,
                         dx.reshape(dx.shape[0] * h * wd, c), dw2, db)
        return
    for j in range(db.shape[0]):
        db[j] = 0
    if need_dx:
        dxf = dx.reshape(dx.size)
        for j in range(dxf.shape[0]):
            dxf[j] = 0
    rows = cols.shape[0]
    if rows == 0:
        raise ValueError("conv2d_backward: cols needs at least one row")
    for r0 in range(0, m, rows):
        r1 = min(m, r0 + rows)
        cb = cols[:r1 - r0]
        dzb = dz[r0:r1]
        epilogue_grad_rows_add(y[r0:r1], dy[r0:r1], act, dzb, db)
        _im2col(x, sh, sw, pt, pl, ho, wo, kh, kw, r0, cb)
        gemm(1.0, cb.T, dzb, 0.0 if r0 == 0 else 1.0, dw2)  # dw2 += cb.T @ dzb
        if need_dx:
            dc = dcols[:r1 - r0] if dcols.shape[0] != 0 else cb
            np.dot(dzb, w2.T, dc)
            _col2im(dc, sh, sw, pt, pl, ho, wo, kh, kw, r0, dx)


# --------------------------------------------------------------- shards over output channels


@kernel
def conv2d_im2col(x, sh, sw, pt, pl, ho, wo, kh, kw, cols):
    """The whole column matrix of ``x`` into ``cols`` (N*Ho*Wo rows), once, for the filter
    shards of :func:`conv2d_forward_filters` to share.

    Args:
        x: (N, H, W, Cin) C-contiguous input.
        sh, sw, pt, pl, ho, wo: as in :func:`conv2d_forward`.
        kh, kw: kernel height and width.
        cols: (N*Ho*Wo, KH*KW*Cin) C-contiguous workspace; overwritten.
    """
    if cols.shape[0] != x.shape[0] * ho * wo or cols.shape[1] != kh * kw * x.shape[3]:
        raise ValueError("conv2d_im2col: cols is not (N*Ho*Wo, KH*KW*Cin)")
    _im2col(x, sh, sw, pt, pl, ho, wo, kh, kw, 0, cols)


@constant_arguments("act")
@kernel
def conv2d_forward_filters(cols, w, b, f0, f1, act, out):
    """Output channels f0 .. f1-1 of a convolution: ``out[:, f0:f1] = act(cols @ w2[:, f0:f1]
    + b[f0:f1])`` for every row, ``w2`` being ``w`` as (KH*KW*Cin, F).

    Why: when a convolution has few output rows for its weights (ResNet-18's 2x2x512 3x3
    layers: 4608 x 512 weights for 128 rows), shards of whole images each stream all the
    weights for a few rows; shards of output channels each stream their own part of the
    weights for all rows. Each output element is still one BLAS dot product over the same
    K, so the bits match :func:`conv2d_forward`'s (OpenBLAS; checked by the tests).

    Args:
        cols: (N*Ho*Wo, KH*KW*Cin) column matrix (:func:`conv2d_im2col`), or for a 1x1
            stride-1 unpadded convolution ``x`` viewed as (N*H*W, Cin); unit column stride.
        w: (KH, KW, Cin, F) C-contiguous weights.
        b: (F,) bias, or shape (0,) for no bias.
        f0, f1: the output channels of this shard, 0 <= f0 < f1 <= F.
        act: activation code, elementwise (not softmax: that needs every channel).
        out: (N*Ho*Wo, F) output, may be row-strided; columns f0 .. f1-1 are overwritten.
    """
    kh = w.shape[0]
    kw = w.shape[1]
    c = w.shape[2]
    f = w.shape[3]
    if not (0 <= f0 < f1 <= f) or out.shape[1] != f or cols.shape[1] != kh * kw * c:
        raise ValueError("conv2d_forward_filters: shapes or channel range do not match")
    w2 = w.reshape(kh * kw * c, f)
    o = out[:, f0:f1]
    gemm(1.0, cols, w2[:, f0:f1], 0.0, o)
    if b.shape[0] != 0:
        epilogue_in_place(o, b[f0:f1], act)
    else:
        epilogue_in_place(o, b, act)
