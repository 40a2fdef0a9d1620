"""Winograd convolution F(m x m, 3 x 3) (Lavin & Gray 2016) for 3x3 stride-1 layers, NHWC.

The output is cut into ``m x m`` tiles; each reads an ``a x a`` input tile (``a = m + 2``).
With the constant matrices ``B^T`` (a x a), ``G`` (a x 3) and ``A^T`` (m x a)::

    U[xi, nu] = (G g G^T)[xi, nu]        per (input channel, filter): the filter transform
    V[xi, nu] = (B^T d B)[xi, nu]        per (tile, input channel): the input transform
    M[xi, nu] = V[xi, nu] @ U[xi, nu]    a * a GEMMs of (tiles, Cin) x (Cin, F)
    Y         = A^T M A                  per (tile, filter): the output transform

which is the cross-correlation Keras' ``Conv2D`` computes, with ``a*a / (m*m*9)`` of the
direct multiplications (4/9 for F(2x2,3x3), 1/4 for F(4x4,3x3)). The GEMMs go to BLAS through
``np.dot`` on contiguous 2-D slices, as in :mod:`.conv`. Tiles are processed in blocks
(``tiles`` rows of the ``V``/``M`` workspaces) so the transforms stay in cache.

* ``x`` is C-contiguous ``(N, H, W, C)``; ``U`` C-contiguous ``(a*a, C, F)`` from
  :func:`winograd_filter` (forward) or :func:`winograd_filter_flipped` (input gradient).
* ``pt``/``pl``: top/left zero padding; ``ho``/``wo``: output size (``conv2d_geometry``).
* ``bt``, ``g``, ``at``: the transform matrices in the arrays' dtype
  (``nexec.ops.winograd.transform_matrices``). The input and output transforms have
  ``B^T`` and ``A^T`` written out (``_bt4``/``_bt6``, ``_at4``/``_at6``); of ``bt`` and ``at``
  they read the shapes, which name the tile.
* ``V`` ``(a*a, T, C)``, ``M`` ``(a*a, T, F)``, ``yb`` ``(T*m*m, F)`` and ``scratch`` (its
  size from ``nexec.ops.winograd.winograd_workspace_shapes``) are C-contiguous workspaces:
  kernels never allocate.

The input gradient of a 3x3 stride-1 convolution is the same correlation of the
pre-activation gradient with the filter rotated by 180 degrees and transposed to
``(3, 3, F, C)``, with ``2 - pt`` / ``2 - pl`` padding: :func:`winograd_backward_input`.
The forward is linear in the filter, so the weight gradient is ``G^T (sum over tiles of
V^T (A dz A^T)) G``: the same input transform, the output transform's adjoint and ``a*a``
GEMMs (:func:`winograd_backward_filter`). :func:`winograd_backward` does a shard's whole
backward (``dz``/``db`` epilogue, ``dw``, ``dx``).
"""
from __future__ import annotations

import numpy as np

from nexec.kernels.activations import SOFTMAX
from nexec.kernels.cpu.activation import (
    copy_row,
    epilogue_grad_rows,
    epilogue_rows,
    epilogue_softmax_rows,
)
from nexec.kernels.cpu.blas import gemm
from nexec.kernels.jit import constant_arguments, inline_kernel, kernel

__all__ = [
    "winograd_filter",
    "winograd_filter_flipped",
    "winograd_forward",
    "winograd_backward_input",
    "winograd_backward_filter",
    "winograd_backward",
]


@kernel
def winograd_filter(w, g, u):
    """u[xi*a + nu, c, f] = sum_ij g[xi, i] w[i, j, c, f] g[nu, j]: the filter transform.

    Args:
        w: (3, 3, C, F) C-contiguous weights (Keras layout).
        g: (a, 3) transform matrix ``G``.
        u: (a*a, C, F) C-contiguous, overwritten.
    """
    a = g.shape[0]
    c = w.shape[2]
    f = w.shape[3]
    for xi in range(a):
        for nu in range(a):
            dst = u[xi * a + nu]
            for ci in range(c):
                for fi in range(f):
                    dst[ci, fi] = 0
            for i in range(3):
                for j in range(3):
                    coef = g[xi, i] * g[nu, j]
                    if coef == 0:
                        continue
                    src = w[i, j]
                    for ci in range(c):
                        d = dst[ci]
                        s = src[ci]
                        for fi in range(f):
                            d[fi] += coef * s[fi]


@kernel
def winograd_filter_flipped(w, g, u):
    """The filter transform of ``w`` rotated 180 degrees and transposed to ``(3, 3, F, C)``.

    ``u[xi*a + nu, f, c] = sum_ij g[xi, i] w[2 - i, 2 - j, c, f] g[nu, j]``: the ``U`` of the
    input gradient's correlation.

    Args:
        w: (3, 3, C, F) C-contiguous weights.
        g: (a, 3) transform matrix ``G``.
        u: (a*a, F, C) C-contiguous, overwritten.
    """
    a = g.shape[0]
    c = w.shape[2]
    f = w.shape[3]
    for xi in range(a):
        for nu in range(a):
            dst = u[xi * a + nu]
            for fi in range(f):
                for ci in range(c):
                    dst[fi, ci] = 0
            for i in range(3):
                for j in range(3):
                    coef = g[xi, i] * g[nu, j]
                    if coef == 0:
                        continue
                    src = w[2 - i, 2 - j]
                    for ci in range(c):
                        s = src[ci]
                        for fi in range(f):
                            dst[fi, ci] += coef * s[fi]


# The transforms, one output row at a time: each loop reads at most five rows and writes
# one, so LLVM vectorises it over the channels (its runtime overlap checks stay few). The
# sums run in the order of the matrices' columns, as a generic matrix product would, with
# the zero coefficients left out: B^T and A^T of nexec.ops.winograd written out.

@inline_kernel
def _bt4(d0, d1, d2, d3, o0, o1, o2, o3):
    """o = B^T d of F(2x2, 3x3) along one axis, per channel."""
    for ci in range(o0.shape[0]):
        o0[ci] = d0[ci] - d2[ci]
    for ci in range(o1.shape[0]):
        o1[ci] = d1[ci] + d2[ci]
    for ci in range(o2.shape[0]):
        o2[ci] = -d1[ci] + d2[ci]
    for ci in range(o3.shape[0]):
        o3[ci] = d1[ci] - d3[ci]


@inline_kernel
def _bt6(d0, d1, d2, d3, d4, d5, o0, o1, o2, o3, o4, o5):
    """o = B^T d of F(4x4, 3x3) along one axis, per channel."""
    k2 = o0.dtype.type(2)
    k4 = o0.dtype.type(4)
    k5 = o0.dtype.type(5)
    for ci in range(o0.shape[0]):
        o0[ci] = k4 * d0[ci] - k5 * d2[ci] + d4[ci]
    for ci in range(o1.shape[0]):
        o1[ci] = -k4 * d1[ci] - k4 * d2[ci] + d3[ci] + d4[ci]
    for ci in range(o2.shape[0]):
        o2[ci] = k4 * d1[ci] - k4 * d2[ci] - d3[ci] + d4[ci]
    for ci in range(o3.shape[0]):
        o3[ci] = -k2 * d1[ci] - d2[ci] + k2 * d3[ci] + d4[ci]
    for ci in range(o4.shape[0]):
        o4[ci] = k2 * d1[ci] - d2[ci] - k2 * d3[ci] + d4[ci]
    for ci in range(o5.shape[0]):
        o5[ci] = k4 * d1[ci] - k5 * d3[ci] + d5[ci]


@inline_kernel
def _at4(m0, m1, m2, m3, y0, y1):
    """y = A^T m of F(2x2, 3x3) along one axis, per channel."""
    for fi in range(y0.shape[0]):
        y0[fi] = m0[fi] + m1[fi] + m2[fi]
    for fi in range(y1.shape[0]):
        y1[fi] = m1[fi] - m2[fi] - m3[fi]


@inline_kernel
def _at6(m0, m1, m2, m3, m4, m5, y0, y1, y2, y3):
    """y = A^T m of F(4x4, 3x3) along one axis, per channel."""
    k2 = y0.dtype.type(2)
    k4 = y0.dtype.type(4)
    k8 = y0.dtype.type(8)
    for fi in range(y0.shape[0]):
        y0[fi] = m0[fi] + m1[fi] + m2[fi] + m3[fi] + m4[fi]
    for fi in range(y1.shape[0]):
        y1[fi] = m1[fi] - m2[fi] + k2 * m3[fi] - k2 * m4[fi]
    for fi in range(y2.shape[0]):
        y2[fi] = m1[fi] + m2[fi] + k4 * m3[fi] + k4 * m4[fi]
    for fi in range(y3.shape[0]):
        y3[fi] = m1[fi] - m2[fi] + k8 * m3[fi] - k8 * m4[fi] + m5[fi]


@inline_kernel
def _image_row(flat, zero, img, h, n, iy):
    """Row ``iy`` of image ``img`` (``n`` values: its pixels' channels), or ``zero`` outside."""
    if iy < 0 or iy >= h:
        return zero
    r0 = (img * h + iy) * n
    return flat[r0:r0 + n]


@inline_kernel
def _padded(rows, xi, pl, n, c):
    """``rows[xi]`` with its ``pl`` leading and its trailing pixels zeroed; returns the ``n``
    values between them, where the image's row goes."""
    row = rows[xi]
    for e in range(pl * c):
        row[e] = 0
    for e in range(pl * c + n, row.shape[0]):
        row[e] = 0
    return row[pl * c:pl * c + n]


@kernel
def _input_rows(flat, zero, img, h, n, iy0, pl, c, a, rows):
    """rows[xi] = sum_i bt[xi, i] x[img, iy0 + i] over a whole row of pixels (``n`` values),
    ``pl`` zero pixels before and zeros after: the first half of the input transform for
    every tile of one row of tiles, as ``a`` loops over the row."""
    if a == 6:
        _bt6(_image_row(flat, zero, img, h, n, iy0), _image_row(flat, zero, img, h, n, iy0 + 1),
             _image_row(flat, zero, img, h, n, iy0 + 2),
             _image_row(flat, zero, img, h, n, iy0 + 3),
             _image_row(flat, zero, img, h, n, iy0 + 4),
             _image_row(flat, zero, img, h, n, iy0 + 5),
             _padded(rows, 0, pl, n, c), _padded(rows, 1, pl, n, c), _padded(rows, 2, pl, n, c),
             _padded(rows, 3, pl, n, c), _padded(rows, 4, pl, n, c), _padded(rows, 5, pl, n, c))
    else:
        _bt4(_image_row(flat, zero, img, h, n, iy0), _image_row(flat, zero, img, h, n, iy0 + 1),
             _image_row(flat, zero, img, h, n, iy0 + 2),
             _image_row(flat, zero, img, h, n, iy0 + 3),
             _padded(rows, 0, pl, n, c), _padded(rows, 1, pl, n, c), _padded(rows, 2, pl, n, c),
             _padded(rows, 3, pl, n, c))


@kernel
def _input_tiles(x, pt, pl, th, tw, m, bt, t0, t1, v, scratch):
    """v[:, t - t0, :] = B^T d B for the input tiles t0 .. t1-1 (zero outside ``x``).

    ``scratch`` holds the first half of the transform for one row of tiles (``a`` rows of
    ``tw * m + a - m`` pixels) and a zero row of the input (``W * C`` values).
    """
    h = x.shape[1]
    wd = x.shape[2]
    c = x.shape[3]
    a = bt.shape[0]
    width = (tw * m + a - m) * c
    if scratch.shape[0] < a * width + wd * c:
        raise ValueError("winograd: scratch smaller than a row of tiles needs")
    flat = x.reshape(x.shape[0] * h * wd * c)
    rows = scratch[:a * width].reshape(a, width)  # rows[xi] = sum_i bt[xi, i] d[i, :]
    zero = scratch[a * width:a * width + wd * c]
    for e in range(wd * c):
        zero[e] = 0
    t = t0
    while t < t1:
        q = t // tw
        img = q // th
        end = min(t1, (q + 1) * tw)
        # the pixel columns of this row of tiles start at -pl: tile tx's at tx * m
        _input_rows(flat, zero, img, h, wd * c, (q % th) * m - pt, pl, c, a, rows)
        for tt in range(t, end):
            p = (tt % tw) * m * c
            r = tt - t0
            for xi in range(a):
                k = xi * a
                row = rows[xi]
                if a == 6:
                    _bt6(row[p:p + c], row[p + c:p + 2 * c], row[p + 2 * c:p + 3 * c],
                         row[p + 3 * c:p + 4 * c], row[p + 4 * c:p + 5 * c],
                         row[p + 5 * c:p + 6 * c],
                         v[k, r], v[k + 1, r], v[k + 2, r], v[k + 3, r], v[k + 4, r],
                         v[k + 5, r])
                else:
                    _bt4(row[p:p + c], row[p + c:p + 2 * c], row[p + 2 * c:p + 3 * c],
                         row[p + 3 * c:p + 4 * c], v[k, r], v[k + 1, r], v[k + 2, r],
                         v[k + 3, r])
        t = end


@kernel
def _output_tiles(mm, at, t0, t1, yb, scratch):
    """yb[(t - t0)*m*m + y*m + x] = (A^T M A)[y, x] for tiles t0 .. t1-1."""
    m = at.shape[0]
    a = at.shape[1]
    f = mm.shape[2]
    tmp = scratch[:m * a * f].reshape(m, a, f)  # tmp[y, nu] = sum_xi at[y, xi] M[xi, nu]
    for t in range(t0, t1):
        r = t - t0
        if a == 6:
            for nu in range(6):
                _at6(mm[nu, r], mm[6 + nu, r], mm[12 + nu, r], mm[18 + nu, r],
                     mm[24 + nu, r], mm[30 + nu, r], tmp[0, nu], tmp[1, nu], tmp[2, nu],
                     tmp[3, nu])
            for y in range(4):
                k = (r * 4 + y) * 4
                _at6(tmp[y, 0], tmp[y, 1], tmp[y, 2], tmp[y, 3], tmp[y, 4], tmp[y, 5],
                     yb[k], yb[k + 1], yb[k + 2], yb[k + 3])
        else:
            for nu in range(4):
                _at4(mm[nu, r], mm[4 + nu, r], mm[8 + nu, r], mm[12 + nu, r],
                     tmp[0, nu], tmp[1, nu])
            for y in range(2):
                k = (r * 2 + y) * 2
                _at4(tmp[y, 0], tmp[y, 1], tmp[y, 2], tmp[y, 3], yb[k], yb[k + 1])


@kernel
def _block(x, u, pt, pl, th, tw, bt, at, t0, t1, v, mm, yb, scratch):
    """Tiles t0 .. t1-1 of the correlation of ``x`` with ``U``, as rows of ``yb``."""
    m = at.shape[0]
    a = bt.shape[0]
    n = t1 - t0
    _input_tiles(x, pt, pl, th, tw, m, bt, t0, t1, v, scratch)
    for k in range(a * a):
        np.dot(v[k, :n], u[k], mm[k, :n])
    _output_tiles(mm, at, t0, t1, yb, scratch)


@constant_arguments("act")
@kernel
def winograd_forward(x, u, b, pt, pl, ho, wo, act, bt, at, v, mm, yb, scratch, out):
    """out = act(conv2d(x, w) + b) for a 3x3 stride-1 convolution, through ``U``.

    Args:
        x: (N, H, W, C) C-contiguous input.
        u: (a*a, C, F) transformed filter (:func:`winograd_filter`).
        b: (F,) bias, or shape (0,) for no bias.
        pt, pl: top and left zero padding.
        ho, wo: output height and width.
        act: activation code; softmax is over channels.
        bt, at: the ``B^T`` and ``A^T`` matrices.
        v, mm, yb, scratch: workspaces (module docstring); ``v.shape[1]`` tiles per block.
        out: (N*Ho*Wo, F) output, may be row-strided (a concatenation's slice); overwritten.
    """
    m = at.shape[0]
    th = (ho + m - 1) // m
    tw = (wo + m - 1) // m
    tiles = x.shape[0] * th * tw
    block = v.shape[1]
    for t0 in range(0, tiles, block):
        t1 = min(tiles, t0 + block)
        _block(x, u, pt, pl, th, tw, bt, at, t0, t1, v, mm, yb, scratch)
        rows = yb[:(t1 - t0) * m * m]
        if act == SOFTMAX:
            epilogue_softmax_rows(rows, b, rows)
        else:
            epilogue_rows(rows, b, act, rows)
        _scatter(rows, t0, t1, th, tw, m, ho, wo, out)


@kernel
def _scatter(rows, t0, t1, th, tw, m, ho, wo, out):
    """Copies the in-range pixels of tiles t0 .. t1-1 to their rows of ``out``."""
    for t in range(t0, t1):
        q = t // tw
        img = q // th
        oy0 = (q % th) * m
        ox0 = (t % tw) * m
        base = (t - t0) * m * m
        for y in range(min(m, ho - oy0)):
            r = (img * ho + oy0 + y) * wo + ox0
            for xo in range(min(m, wo - ox0)):
                copy_row(rows[base + y * m + xo], out[r + xo])


@kernel
def winograd_backward_input(dz, u, pt, pl, bt, at, v, mm, yb, scratch, dx):
    """dx = the input gradient of a 3x3 stride-1 convolution, from its pre-activation gradient.

    Args:
        dz: (N, Ho, Wo, F) C-contiguous pre-activation gradient.
        u: (a*a, F, C) transformed flipped filter (:func:`winograd_filter_flipped`).
        pt, pl: the forward convolution's top and left padding.
        bt, at: the ``B^T`` and ``A^T`` matrices.
        v, mm, yb, scratch: workspaces sized for ``C_in = F`` and ``F_out = C``.
        dx: (N, H, W, C) C-contiguous, overwritten.
    """
    m = at.shape[0]
    h = dx.shape[1]
    wd = dx.shape[2]
    c = dx.shape[3]
    th = (h + m - 1) // m
    tw = (wd + m - 1) // m
    tiles = dz.shape[0] * th * tw
    block = v.shape[1]
    dx2 = dx.reshape(dx.shape[0] * h * wd, c)
    for t0 in range(0, tiles, block):
        t1 = min(tiles, t0 + block)
        _block(dz, u, 2 - pt, 2 - pl, th, tw, bt, at, t0, t1, v, mm, yb, scratch)
        _scatter(yb, t0, t1, th, tw, m, h, wd, dx2)


@kernel
def _grad_output_tiles(dz, th, tw, at, t0, t1, dm):
    """dm[xi*a + nu, t - t0] = (A dz_tile A^T)[xi, nu]: the output transform's adjoint, with
    zeros for a partial tile's pixels outside the output."""
    m = at.shape[0]
    a = at.shape[1]
    ho = dz.shape[1]
    wo = dz.shape[2]
    f = dz.shape[3]
    dz2 = dz.reshape(dz.shape[0] * ho * wo, f)
    for t in range(t0, t1):
        q = t // tw
        img = q // th
        oy0 = (q % th) * m
        ox0 = (t % tw) * m
        r = t - t0
        for k in range(a * a):
            row = dm[k, r]
            for fi in range(f):
                row[fi] = 0
        for y in range(min(m, ho - oy0)):
            for xo in range(min(m, wo - ox0)):
                s = dz2[(img * ho + oy0 + y) * wo + ox0 + xo]
                for xi in range(a):
                    cy = at[y, xi]
                    if cy == 0:
                        continue
                    for nu in range(a):
                        coef = cy * at[xo, nu]
                        if coef == 0:
                            continue
                        row = dm[xi * a + nu, r]
                        for fi in range(f):
                            row[fi] += coef * s[fi]


@kernel
def winograd_backward_filter(x, dz, pt, pl, bt, g, at, v, dm, du, scratch, dw):
    """dw = the weight gradient of a 3x3 stride-1 convolution, by Winograd.

    The forward is linear in the filter, so ``dw = G^T (sum over tiles of V^T dM) G`` with
    ``dM = A dz_tile A^T``: ``a*a`` GEMMs ``(Cin, tiles) @ (tiles, F)`` per block of tiles.

    Args:
        x: (N, H, W, C) C-contiguous forward input.
        dz: (N, Ho, Wo, F) C-contiguous pre-activation gradient.
        pt, pl: top and left padding.
        bt, g, at: the transform matrices.
        v: (a*a, T, C) and dm (a*a, T, F) workspaces: ``T`` tiles per block.
        du: (a*a, C, F) workspace: the transformed gradient, summed over blocks by the GEMMs
            themselves (:func:`.blas.gemm` with ``beta = 1``).
        scratch: workspace (``winograd_workspace_shapes``).
        dw: (3, 3, C, F) C-contiguous, overwritten.
    """
    m = at.shape[0]
    a = bt.shape[0]
    ho = dz.shape[1]
    wo = dz.shape[2]
    th = (ho + m - 1) // m
    tw = (wo + m - 1) // m
    tiles = x.shape[0] * th * tw
    block = v.shape[1]
    c = x.shape[3]
    f = dz.shape[3]
    for t0 in range(0, tiles, block):
        t1 = min(tiles, t0 + block)
        n = t1 - t0
        _input_tiles(x, pt, pl, th, tw, m, bt, t0, t1, v, scratch)
        _grad_output_tiles(dz, th, tw, at, t0, t1, dm)
        for k in range(a * a):
            gemm(1.0, v[k, :n].T, dm[k, :n], 0.0 if t0 == 0 else 1.0, du[k])
    for i in range(3):
        for j in range(3):
            dst = dw[i, j]
            for ci in range(c):
                for fi in range(f):
                    dst[ci, fi] = 0
            for xi in range(a):
                for nu in range(a):
                    coef = g[xi, i] * g[nu, j]
                    if coef == 0:
                        continue
                    src = du[xi * a + nu]
                    for ci in range(c):
                        d = dst[ci]
                        s = src[ci]
                        for fi in range(f):
                            d[fi] += coef * s[fi]


@constant_arguments("act")
@kernel
def winograd_backward(x, y, dy, act, pt, pl, ho, wo, bt, g, at, dz, db, v, mm, wu, scratch,
                      dw, du, dv, dmm, dyb, dscratch, dx):
    """All gradients of ``y = act(conv2d(x, w) + b)`` (3x3, stride 1) for one shard.

    ``dz = dy * act'(y)`` and ``db`` in one pass, then :func:`winograd_backward_filter` and,
    unless ``dx`` has no rows, :func:`winograd_backward_input`.

    Args:
        x: (N, H, W, C) C-contiguous forward input.
        y, dy: (N*Ho*Wo, F) forward output and its gradient, may be row-strided.
        act: activation code.
        pt, pl: top and left padding.
        ho, wo: output height and width.
        bt, g, at: the transform matrices.
        dz: (N*Ho*Wo, F) C-contiguous workspace: the pre-activation gradient.
        db: (F,) bias gradient, overwritten; shape (0,) skips it.
        v, mm, wu, scratch: :func:`winograd_backward_filter`'s workspaces.
        dw: (3, 3, C, F) weight gradient, overwritten.
        du: (a*a, F, C) flipped filter transform (:func:`winograd_filter_flipped`).
        dv, dmm, dyb, dscratch: :func:`winograd_backward_input`'s workspaces.
        dx: (N, H, W, C) C-contiguous, overwritten; shape (0, H, W, C) skips it.
    """
    epilogue_grad_rows(y, dy, act, dz, db)
    dz4 = dz.reshape(x.shape[0], ho, wo, dz.shape[1])
    winograd_backward_filter(x, dz4, pt, pl, bt, g, at, v, mm, wu, scratch, dw)
    if dx.shape[0] != 0:
        winograd_backward_input(dz4, du, pt, pl, bt, at, dv, dmm, dyb, dscratch, dx)
