"""2-D convolution kernels (NHWC, Keras weight layout): im2col + BLAS GEMMs, in row blocks.

Layout and conventions
----------------------
* ``x`` is a C-contiguous ``(N, H, W, Cin)`` array, ``w`` a C-contiguous ``(KH, KW, Cin, F)``
  array (Keras), ``b`` is ``(F,)`` or ``(0,)`` for no bias.
* The output ``out``/``y`` and its gradient ``dy`` are 2-D ``(N*Ho*Wo, F)`` views with unit
  column stride whose row stride may exceed ``F`` (a slice of a channel-concatenated buffer).
* ``pt``/``pl`` are the top/left zero padding; :func:`conv2d_geometry` computes them (and the
  output size) for Keras ``"valid"``/``"same"``.  Rows of the column matrix are ordered
  ``(n, oy, ox)`` and its columns ``(ky, kx, ci)``, so ``w.reshape(KH*KW*Cin, F)`` is the GEMM
  right-hand side without any copy.
* Kernels never allocate: all scratch space comes in as workspaces whose shapes
  :func:`conv2d_workspace_shapes` gives.  A 1x1, stride-1, unpadded convolution needs no
  column matrix (``x`` viewed as ``(N*H*W, Cin)`` already is one); its ``cols`` is ``(0, 0)``.

Algorithm (chosen by measurement)
---------------------------------
Both kernels walk the M = N*Ho*Wo output rows in blocks whose column matrix (R rows of
K = KH*KW*Cin, about 2**20 elements: ``cols`` is sized by :func:`conv2d_workspace_shapes`
with ``tiled=True``) stays in cache from its im2col to its GEMMs.
Forward, per block: serial im2col into ``cols``, ``np.dot(cols, w2, tmp[rows])`` (Numba hands
it to the BLAS sgemm/dgemm of SciPy's OpenBLAS, which uses both cores), then the fused
``out = act(tmp + b)`` on those rows (skipped when linear, bias-free and ``tmp is out``).
Backward, per block: ``dz = dy * act'(y)`` and ``db`` += column sums (float64 per 256 rows,
so float32 ``db`` stays at ~1e-6 relative), im2col of ``x`` again (stateless: nothing
survives from forward), ``dw += cols.T @ dz`` (the block's product goes to the last F rows of
``cols``), ``dcols = dz @ w2.T`` over the block's ``cols`` and a serial col2im (scatter-add of
contiguous runs) into ``dx``.  A ``cols`` of all M rows is one block (the CUDA layout).  A 1x1
stride-1 convolution is just whole-batch GEMMs on ``x`` viewed as (N*H*W, Cin) (blocking them
measured no gain).

Measured for the earlier whole-batch version (one im2col and one GEMM per batch; the blocks
below improve on it) (float32, batch 64, 2-core AMD EPYC Zen 4, OpenBLAS 0.3.30 from SciPy, relu + bias,
best of several interleaved runs; the machine was shared, single runs varied by up to 2x).
GF/s counts 2*N*Ho*Wo*KH*KW*Cin*F flops forward and twice that backward (dw and dx GEMMs).
"NumPy" is plain NumPy im2col (``sliding_window_view`` + ``@``, strided adds for col2im);
"direct" is the obvious 7-deep loop nest with ``prange`` over output rows (no epilogue):

==================================  =====  ======  =====  ======  =====  ======  ==========
shape (HxWxCin -> F, kernel)        GFLOP  fwd ms  GF/s   bwd ms  GF/s   no-dx   NumPy f/b
                                                                          bwd ms  (direct)
==================================  =====  ======  =====  ======  =====  ======  ==========
32x32x3  -> 32, 3x3 same            0.113   3.4     33     7.3     31     5.1    7.5 / 21
                                                                                 (3.5 / 17)
32x32x24 -> 32, 3x3 same            0.906  13.2     69    27.0     67    17.0    24 / 76
                                                                                 (24 / 150)
32x32x8  -> 16, 5x5 same            0.419  12.6     33    20.1     42    12.9    15 / 96
                                                                                 (21 / 61)
32x32x32 -> 24, 1x1                 0.101   1.6     64     4.7     43     3.0    3.1 / 9.4
                                                                                 (3.4 / 18)
32x32x80 -> 64, 3x3 stride 2 same   1.510  13.9    109    30.8     98    16.5    25 / 70
                                                                                 (61 / 204)
16x16x64 -> 64, 3x3 same            1.208  13.9     87    23.8    101    12.6    18 / 64
                                                                                 (19 / 220)
==================================  =====  ======  =====  ======  =====  ======  ==========

Why these choices:

* im2col + GEMM beats the direct prange loops everywhere except a tie on the Cin=3 stem
  (3.4 vs 3.5 ms, and the direct time has no epilogue); backward by 2-9x.
* No ``prange``.  Every non-GEMM pass here is memory bound (im2col ~3.5 ms for 56 MB of
  columns, col2im 1-3 ms, epilogues ~0.5-1.3 ms) and, with Numba's default ``omp`` threading
  layer, a parallel region followed by a BLAS call costs ~8 ms: libgomp's workers keep
  spinning (``GOMP_SPINCOUNT``) on the core OpenBLAS wants.  Measured idle, a parallel im2col
  + GEMM took 20 ms against 12 ms serial; a parallel col2im gave no net backward gain.
* Blocks of ~2**20 elements of ``cols`` (4 MiB float32), not one GEMM over the batch.
  Idle machine, batch 64, fwd/bwd ms, whole batch -> blocks: 32x32x24->32 3x3 13.2/28.5 ->
  9.3/19.6; 32x32x8->16 5x5 9.9/20.2 -> 6.9/14.0; 32x32x80->64 s2 13.5/30.3 -> 11.2/23.3;
  16x16x64->64 10.3/23.9 -> 8.4/17.3; the Cin=3 stem (one block) unchanged.  The GEMMs
  themselves get faster on cache-resident blocks (e.g. 65536x200 @ 200x16: 74 -> 155 GF/s;
  ``dw`` with its M-long reduction 40-65 -> 90-115 GF/s), and im2col/col2im write to cache.
  Blocks of 0.75-2 * 2**20 elements measured alike; ~3 * 2**20 and up lose part of it.  Cost: more
  OpenBLAS calls per layer (5-14), and each can wait a scheduler tick (~4 ms) for its worker
  thread when another process holds a core, so under such load the blocked kernels can be
  much slower than one big GEMM (measured up to 10x on one layer with a busy-loop process).
* im2col copies and col2im adds whole runs (``d[j] += s[j]``) between 1-D slice views.  Numba surprise: the
  obvious ``dx[n, iy, ix, ci] += row[base + ci]`` is 5-8x slower (16 ms instead of 3 ms at
  32x32x24), because a computed signed index keeps the negative-index wraparound in the loop
  and LLVM does not vectorize it; indexing a slice view with the bare loop counter does.
* The activation switch sits outside the row loops (per-row dispatch made the backward
  epilogue 2.4x slower: 1.3 vs 0.55 ms for 65536x32).
"""
from __future__ import annotations

import numpy as np

from nexec.kernels.activations import LINEAR, RELU, SIGMOID, SOFTMAX, TANH
from nexec.kernels.jit import kernel

__all__ = [
    "conv2d_geometry",
    "is_pointwise",
    "conv2d_workspace_shapes",
    "conv2d_forward",
    "conv2d_backward",
]

_BLOCK = 256  # rows per cache-resident block of the epilogues (and per partial sum of db)
_COLS_BLOCK = 1 << 20  # elements of a tiled column-matrix block (4 MiB float32)


# --------------------------------------------------------------------------- pure Python


def conv2d_geometry(h: int, w: int, kh: int, kw: int, sh: int, sw: int,
                    padding: str) -> tuple[int, int, int, int]:
    """Output size and top/left padding of a Keras/TF 2-D convolution.

    ``"valid"``: no padding, ``out = (in - k) // s + 1``.  ``"same"``: ``out = ceil(in / s)``,
    ``pad_total = max((out - 1) * s + k - in, 0)``, top/left get ``pad_total // 2`` (the odd
    extra row/column goes to the bottom/right, as in TensorFlow).

    Returns:
        ``(ho, wo, pad_top, pad_left)``.

    Raises:
        ValueError: unknown padding, non-positive sizes, or a "valid" kernel larger than the
            input.
    """
    if min(h, w, kh, kw, sh, sw) <= 0:
        raise ValueError(
            f"conv2d sizes must be positive, got input {h}x{w}, kernel {kh}x{kw}, "
            f"strides {sh}x{sw}")
    mode = padding.lower() if isinstance(padding, str) else padding
    if mode == "valid":
        if kh > h or kw > w:
            raise ValueError(f"conv2d 'valid': kernel {kh}x{kw} larger than input {h}x{w}")
        return (h - kh) // sh + 1, (w - kw) // sw + 1, 0, 0
    if mode == "same":
        ho = -(-h // sh)
        wo = -(-w // sw)
        pad_h = max((ho - 1) * sh + kh - h, 0)
        pad_w = max((wo - 1) * sw + kw - w, 0)
        return ho, wo, pad_h // 2, pad_w // 2
    raise ValueError(f"conv2d padding must be 'valid' or 'same', got {padding!r}")


@kernel
def is_pointwise(h, w, kh, kw, ho, wo, sh, sw, pt, pl):
    """A 1x1 stride-1 unpadded convolution: ``x`` viewed as (N*H*W, Cin) is its column
    matrix. (Keras padding of a 1x1 stride-1 convolution is always 0.)"""
    return (kh == 1 and kw == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0
            and ho == h and wo == w)


def conv2d_workspace_shapes(n: int, h: int, w: int, cin: int, kh: int, kw: int, f: int,
                            ho: int, wo: int, sh: int, sw: int, training: bool,
                            tiled: bool = False) -> dict[str, tuple[int, ...]]:
    """Shapes of the C-contiguous workspaces (same dtype as ``x``) the kernels take.

    * ``cols`` ``(R, KH*KW*Cin)``: the column matrix, used by forward and (again, from
      scratch) by backward; ``(0, 0)`` for a 1x1 stride-1 unpadded convolution.
      ``tiled=False``: all R = N*Ho*Wo rows at once (what the CUDA kernels need).
      ``tiled=True`` (CPU): a block of about ``_COLS_BLOCK`` elements, plus in training F
      rows for a block's partial weight gradient, so that each block stays in cache
      between its im2col, GEMMs and col2im; at most N*Ho*Wo rows (then one block).
    * ``tmp`` ``(N*Ho*Wo, F)``: forward GEMM target.  When ``out`` is itself C-contiguous the
      caller passes ``out`` instead and need not allocate it.
    * ``dz`` ``(N*Ho*Wo, F)`` (training only): pre-activation gradient; may be ``dy`` itself
      when ``dy`` is C-contiguous and may be overwritten.
    * ``dcols`` ``(0, 0)`` (training only): backward reuses ``cols`` for the column
      gradient, so nothing extra is needed; pass a ``(0, 0)`` array (or ``cols`` itself).

    Nothing has to survive between forward and backward: ``cols`` and ``tmp`` are plain
    scratch.
    """
    m = n * ho * wo
    k = kh * kw * cin
    rows = m
    if tiled:
        block = max(_COLS_BLOCK // k, 64)
        rows = min(m, block + f if training else block)
    pointwise = is_pointwise(h, w, kh, kw, ho, wo, sh, sw, 0, 0)
    shapes: dict[str, tuple[int, ...]] = {
        "cols": (0, 0) if pointwise else (rows, k),
        "tmp": (m, f),
    }
    if training:
        shapes["dz"] = (m, f)
        shapes["dcols"] = (0, 0)
    return shapes


# --------------------------------------------------------------------------- epilogues


@kernel
def _sigmoid(v):
    if v >= 0:
        return 1.0 / (1.0 + np.exp(-v))
    e = np.exp(v)
    return e / (1.0 + e)


@kernel
def _softmax_row(s, o):
    """o = softmax(s) for one row; ``o`` may be ``s``."""
    f = s.shape[0]
    if f == 0:
        return
    mx = s[0]
    for j in range(1, f):
        if s[j] > mx:
            mx = s[j]
    total = 0.0  # float64 accumulator
    for j in range(f):
        e = np.exp(s[j] - mx)
        o[j] = e
        total += e
    inv = 1.0 / total
    for j in range(f):
        o[j] = o[j] * inv


@kernel
def _act_rows_inplace(o, act, r0, r1):
    """o[r] = act(o[r]) for rows r0..r1-1 (the activation switch is outside the row loop)."""
    f = o.shape[1]
    if act == LINEAR:
        return
    if act == RELU:
        for r in range(r0, r1):
            z = o[r]
            for j in range(f):
                v = z[j]
                z[j] = v if v > 0 else 0
    elif act == SIGMOID:
        for r in range(r0, r1):
            z = o[r]
            for j in range(f):
                z[j] = _sigmoid(z[j])
    elif act == TANH:
        for r in range(r0, r1):
            z = o[r]
            for j in range(f):
                z[j] = np.tanh(z[j])
    elif act == SOFTMAX:
        for r in range(r0, r1):
            _softmax_row(o[r], o[r])
    else:
        raise ValueError("unknown activation code")


@kernel
def _bias_act_rows(src, b, act, out):
    """out[r, j] = act(src[r, j] + b[j]); ``src`` C-contiguous (overwritten), ``out`` may be
    ``src`` or row-strided.

    Per block of rows: bias and activation in place on ``src`` (loops over a strided ``out``
    do not vectorize: 1.5 vs 0.4 ms for 65536x32 of ReLU), then one copy into ``out`` while
    the block is still in L1/L2.
    """
    m = src.shape[0]
    f = src.shape[1]
    has_b = b.shape[0] != 0
    same = src.ctypes.data == out.ctypes.data and src.strides[0] == out.strides[0]
    if not has_b and act == LINEAR and same:
        return  # the GEMM already wrote the result in place
    for r0 in range(0, m, _BLOCK):
        r1 = min(m, r0 + _BLOCK)
        if has_b:
            for r in range(r0, r1):
                s = src[r]
                for j in range(f):
                    s[j] += b[j]
        _act_rows_inplace(src, act, r0, r1)
        if not same:
            for r in range(r0, r1):
                s = src[r]
                o = out[r]
                for j in range(f):
                    o[j] = s[j]


@kernel
def _act_grad_block(y, dy, act, dz, r0, r1):
    """dz = dy * act'(y) for rows r0..r1-1, act' taken from the output y."""
    f = y.shape[1]
    if act == LINEAR:
        for r in range(r0, r1):
            g = dy[r]
            z = dz[r]
            for j in range(f):
                z[j] = g[j]
    elif act == RELU:
        for r in range(r0, r1):
            yr = y[r]
            g = dy[r]
            z = dz[r]
            for j in range(f):
                gv = g[j]
                z[j] = gv if yr[j] > 0 else 0
    elif act == SIGMOID:
        for r in range(r0, r1):
            yr = y[r]
            g = dy[r]
            z = dz[r]
            for j in range(f):
                v = yr[j]
                z[j] = g[j] * (v * (1 - v))
    elif act == TANH:
        for r in range(r0, r1):
            yr = y[r]
            g = dy[r]
            z = dz[r]
            for j in range(f):
                v = yr[j]
                z[j] = g[j] * (1 - v * v)
    elif act == SOFTMAX:
        for r in range(r0, r1):
            yr = y[r]
            g = dy[r]
            z = dz[r]
            dot = 0.0  # float64 accumulator
            for j in range(f):
                dot += g[j] * yr[j]
            for j in range(f):
                z[j] = yr[j] * (g[j] - dot)
    else:
        raise ValueError("unknown activation code")


@kernel
def _act_grad_rows(y, dy, act, dz, db, r0, r1):
    """dz = dy * act'(y) (from the output y) for rows r0..r1-1, and db += their column sums.

    ``dz`` may be ``dy``; ``y``/``dy`` may be row-strided; ``db`` of length 0 is skipped.
    The column sums of each block of rows are taken while it is cache resident, in float64,
    and added to ``db`` once per block, so a float32 ``db`` keeps ~1e-6 relative precision
    over long batches.
    """
    f = y.shape[1]
    nb = db.shape[0]
    for b0 in range(r0, r1, _BLOCK):
        b1 = min(r1, b0 + _BLOCK)
        _act_grad_block(y, dy, act, dz, b0, b1)
        if nb == 0:
            continue
        # Eight columns at a time: row-contiguous loads into eight independent float64
        # accumulators; one column at a time strides through memory and is bound by the
        # add latency (3x slower).
        j0 = 0
        while j0 + 8 <= f:
            a0 = 0.0
            a1 = 0.0
            a2 = 0.0
            a3 = 0.0
            a4 = 0.0
            a5 = 0.0
            a6 = 0.0
            a7 = 0.0
            for r in range(b0, b1):
                z = dz[r]
                a0 += z[j0]
                a1 += z[j0 + 1]
                a2 += z[j0 + 2]
                a3 += z[j0 + 3]
                a4 += z[j0 + 4]
                a5 += z[j0 + 5]
                a6 += z[j0 + 6]
                a7 += z[j0 + 7]
            db[j0] += a0
            db[j0 + 1] += a1
            db[j0 + 2] += a2
            db[j0 + 3] += a3
            db[j0 + 4] += a4
            db[j0 + 5] += a5
            db[j0 + 6] += a6
            db[j0 + 7] += a7
            j0 += 8
        for j in range(j0, f):
            acc = 0.0
            for r in range(b0, b1):
                acc += dz[r, j]
            db[j] += acc


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
    in-bounds taps are one contiguous run of ``x``, copied between 1-D views (see the module
    notes on why views, not computed indices), with zeros either side.
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
    between two 1-D slice views (see the module notes on why views, not ``a[base + j]``).
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
        pt, pl: top and left zero padding (see :func:`conv2d_geometry`).
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
    if is_pointwise(h, wd, kh, kw, ho, wo, sh, sw, pt, pl):
        np.dot(x.reshape(m, c), w2, tmp)
        _bias_act_rows(tmp, b, act, out)
        return
    rows = cols.shape[0]
    for r0 in range(0, m, rows):
        r1 = min(m, r0 + rows)
        cb = cols[:r1 - r0]
        _im2col(x, sh, sw, pt, pl, ho, wo, kh, kw, r0, cb)
        np.dot(cb, w2, tmp[r0:r1])
        _bias_act_rows(tmp[r0:r1], b, act, out[r0:r1])


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
            ``cols``", which is what :func:`conv2d_workspace_shapes` asks for; otherwise a
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
    for j in range(db.shape[0]):
        db[j] = 0
    if is_pointwise(h, wd, kh, kw, ho, wo, sh, sw, pt, pl):
        _act_grad_rows(y, dy, act, dz, db, 0, m)
        x2 = x.reshape(m, c)
        np.dot(x2.T, dz, dw2)
        if need_dx:
            np.dot(dz, w2.T, dx.reshape(m, c))
        return
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
        _act_grad_rows(y, dy, act, dz, db, r0, r1)
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
