"""CUDA 2-D convolution (NHWC, Keras weight layout): im2col + tiled GEMM + fused epilogue.

Mirrors :mod:`nexec.kernels.cpu.conv`: same launcher signatures (device arrays, plus an
optional keyword-only ``stream``), same layouts and workspaces. The geometry is the
device-neutral :mod:`nexec.ops.geometry`, re-exported: :func:`conv2d_geometry` (Keras
"valid"/"same" -> ``ho, wo, pt, pl``) and :func:`conv2d_workspace_shapes`.

* ``x`` (N, H, W, Cin) and ``w`` (KH, KW, Cin, F) are C-contiguous device arrays (they are
  reshaped to 2-D views); ``out``/``y``/``dy`` are (N*Ho*Wo, F).
* Forward: an im2col kernel (one thread per element of ``cols`` (M, K), M = N*Ho*Wo,
  K = KH*KW*Cin, columns ordered (ky, kx, ci) so ``w.reshape(K, F)`` is the right-hand
  side), then the tiled GEMM of :mod:`.dense` with bias + activation in its epilogue,
  writing ``out`` directly (``tmp`` is not needed; softmax gets a row pass). A 1x1,
  stride-1, unpadded convolution skips im2col: ``x`` viewed as (N*H*W, Cin) is the column
  matrix.
* Backward: the fused ``dz``/``db`` kernel, im2col of ``x`` again, ``dw = cols.T @ dz``
  and ``dcols = dz @ w2.T`` (transposed operands read in place), then col2im as a
  *gather*: one thread per element of ``dx`` sums the column-matrix entries that came from
  it (deterministic, no atomics, and every ``dx`` element is written, so no zeroing).
"""
from __future__ import annotations

from typing import Any

from nexec.kernels.cuda.activation import epilogue_grad
from nexec.kernels.cuda.backend import config_1d, cuda, jit
from nexec.kernels.cuda.dense import gemm
from nexec.ops.geometry import conv2d_geometry, conv2d_workspace_shapes, is_pointwise

__all__ = [
    "conv2d_backward",
    "conv2d_forward",
    "conv2d_geometry",
    "conv2d_workspace_shapes",
]

@jit
def _im2col(x, sh, sw, pt, pl, ho, wo, kh, kw, cols):
    """cols[(n*ho + oy)*wo + ox, (ky*kw + kx)*c + ci] = x_padded[n, oy*sh+ky, ox*sw+kx, ci]."""
    h = x.shape[1]
    w = x.shape[2]
    c = x.shape[3]
    m = cols.shape[0]
    k = cols.shape[1]
    kwc = kw * c
    hw = ho * wo
    for idx in range(cuda.grid(1), m * k, cuda.gridsize(1)):
        r = idx // k
        q = idx - r * k
        img = r // hw
        p = r - img * hw
        oy = p // wo
        ox = p - oy * wo
        ky = q // kwc
        q2 = q - ky * kwc
        kx = q2 // c
        ci = q2 - kx * c
        iy = oy * sh - pt + ky
        ix = ox * sw - pl + kx
        if iy >= 0 and iy < h and ix >= 0 and ix < w:
            cols[r, q] = x[img, iy, ix, ci]
        else:
            cols[r, q] = 0


@jit
def _col2im(dcols, sh, sw, pt, pl, ho, wo, kh, kw, dx):
    """dx[n, iy, ix, ci] = sum of the dcols entries im2col copied from that pixel (gather)."""
    h = dx.shape[1]
    w = dx.shape[2]
    c = dx.shape[3]
    total = dx.shape[0] * h * w * c
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        ci = idx % c
        p = idx // c
        ix = p % w
        p = p // w
        iy = p % h
        img = p // h
        acc = 0.0
        for ky in range(kh):
            ty = iy + pt - ky  # = oy * sh for the output row that reads (iy, ky)
            if ty < 0:
                break
            oy = ty // sh
            if oy * sh != ty or oy >= ho:
                continue
            for kx in range(kw):
                tx = ix + pl - kx
                if tx < 0:
                    break
                ox = tx // sw
                if ox * sw != tx or ox >= wo:
                    continue
                acc += dcols[(img * ho + oy) * wo + ox, (ky * kw + kx) * c + ci]
        dx[img, iy, ix, ci] = acc


def _is_pointwise(x: Any, w: Any, sh: int, sw: int, pt: int, pl: int, ho: int,
                  wo: int) -> bool:
    return is_pointwise(x.shape[1], x.shape[2], w.shape[0], w.shape[1], ho, wo, sh, sw, pt, pl)


def _check(x: Any, w: Any, ho: int, wo: int, rows_arrays: dict[str, Any], where: str) -> None:
    if x.ndim != 4 or w.ndim != 4 or w.shape[2] != x.shape[3]:
        raise ValueError(f"{where}: x must be (N, H, W, Cin) and w (KH, KW, Cin, F)")
    m = x.shape[0] * ho * wo
    f = w.shape[3]
    for name, a in rows_arrays.items():
        if a.shape != (m, f):
            raise ValueError(f"{where}: {name} has shape {a.shape}, expected {(m, f)}")


def _launch_im2col(x: Any, sh: int, sw: int, pt: int, pl: int, ho: int, wo: int, kh: int,
                   kw: int, cols: Any, stream: Any) -> None:
    m = x.shape[0] * ho * wo
    k = kh * kw * x.shape[3]
    if cols.shape != (m, k):
        raise ValueError(f"conv2d: cols has shape {cols.shape}, expected {(m, k)}")
    if m * k == 0:
        return
    blocks, threads = config_1d(m * k)
    _im2col[blocks, threads, stream](x, sh, sw, pt, pl, ho, wo, kh, kw, cols)


def conv2d_forward(x: Any, w: Any, b: Any, sh: int, sw: int, pt: int, pl: int, ho: int,
                   wo: int, act: int, cols: Any, tmp: Any, out: Any, *,
                   stream: Any = 0) -> None:
    """out = act(conv2d(x, w) + b), NHWC, Keras weight layout, zero padding.

    Args:
        x: (N, H, W, Cin) C-contiguous device input.
        w: (KH, KW, Cin, F) C-contiguous device weights.
        b: (F,) bias, or shape (0,) for no bias.
        sh, sw, pt, pl, ho, wo: strides, top/left padding, output size
            (:func:`conv2d_geometry`).
        act: activation code; softmax is over channels.
        cols: (N*Ho*Wo, KH*KW*Cin) device workspace; ignored (may be (0, 0)) for a 1x1
            stride-1 unpadded convolution.
        tmp: unused on CUDA (the GEMM writes ``out``); any device array, e.g. ``out``.
        out: (N*Ho*Wo, F) device output; overwritten.
        stream: CUDA stream (keyword only; CUDA addition).
    """
    _check(x, w, ho, wo, {"out": out}, "conv2d_forward")
    n, h, wd, c = x.shape
    kh, kw, _, f = w.shape
    if b.shape[0] not in (0, f):
        raise ValueError("conv2d_forward: bias length differs from the filter count")
    w2 = w.reshape(kh * kw * c, f)
    if _is_pointwise(x, w, sh, sw, pt, pl, ho, wo):
        gemm(x.reshape(n * h * wd, c), w2, out, bias=b, act=act, stream=stream)
        return
    _launch_im2col(x, sh, sw, pt, pl, ho, wo, kh, kw, cols, stream)
    gemm(cols, w2, out, bias=b, act=act, stream=stream)


def conv2d_backward(x: Any, w: Any, y: Any, dy: Any, sh: int, sw: int, pt: int, pl: int,
                    ho: int, wo: int, act: int, cols: Any, dz: Any, dcols: Any, dx: Any,
                    dw: Any, db: Any, *, stream: Any = 0) -> None:
    """Gradients of ``y = act(conv2d(x, w) + b)``; every output is overwritten.

    Args:
        x: (N, H, W, Cin) C-contiguous forward input (device).
        w: (KH, KW, Cin, F) C-contiguous weights.
        y: (N*Ho*Wo, F) forward output.  dy: (N*Ho*Wo, F) gradient with respect to ``y``.
        sh, sw, pt, pl, ho, wo, act: as in :func:`conv2d_forward`.
        cols: (N*Ho*Wo, KH*KW*Cin) workspace (rebuilt here from ``x``); ignored for a 1x1
            stride-1 unpadded convolution.
        dz: (N*Ho*Wo, F) workspace for the pre-activation gradient (may be ``dy``).
        dcols: a (0, 0) array (or ``cols`` itself) to reuse ``cols`` for the column
            gradient; otherwise a separate (N*Ho*Wo, KH*KW*Cin) workspace.
        dx: (N, H, W, Cin) C-contiguous input gradient; shape (0, H, W, Cin) skips it.
        dw: (KH, KW, Cin, F) C-contiguous weight gradient.
        db: (F,) bias gradient; shape (0,) skips it.
        stream: CUDA stream (keyword only; CUDA addition).
    """
    _check(x, w, ho, wo, {"y": y, "dy": dy, "dz": dz}, "conv2d_backward")
    n, h, wd, c = x.shape
    kh, kw, _, f = w.shape
    if dw.shape != w.shape:
        raise ValueError("conv2d_backward: dw and w shapes differ")
    need_dx = dx.shape[0] != 0
    if need_dx and dx.shape != x.shape:
        raise ValueError("conv2d_backward: dx and x shapes differ")
    epilogue_grad(y, dy, act, dz, db, stream)
    k = kh * kw * c
    w2 = w.reshape(k, f)
    dw2 = dw.reshape(k, f)
    if _is_pointwise(x, w, sh, sw, pt, pl, ho, wo):
        gemm(x.reshape(n * h * wd, c), dz, dw2, trans_a=True, stream=stream)
        if need_dx:
            gemm(dz, w2, dx.reshape(n * h * wd, c), trans_b=True, stream=stream)
        return
    _launch_im2col(x, sh, sw, pt, pl, ho, wo, kh, kw, cols, stream)
    gemm(cols, dz, dw2, trans_a=True, stream=stream)
    if need_dx:
        dc = dcols if dcols.shape[0] != 0 else cols
        gemm(dz, w2, dc, trans_b=True, stream=stream)
        total = dx.size
        if total == 0:
            return
        blocks, threads = config_1d(total)
        _col2im[blocks, threads, stream](dc, sh, sw, pt, pl, ho, wo, kh, kw, dx)
