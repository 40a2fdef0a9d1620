"""CUDA pooling kernels, NHWC: the twins of :mod:`nexec.kernels.cpu.pooling`.

Same launcher names, arguments and layouts (C-contiguous device arrays; a 1-D or global
pooling is a 2-D one on ``(N, 1, L, C)`` / a whole-image window), plus a keyword-only
``stream``. One thread per output element, grid-stride. Backward kernels *gather*: one
thread per element of ``dx`` sums the gradients of the windows that hold it (for max
pooling, of those whose recorded maximum it is), so there are no atomics, the result is
deterministic and every element of ``dx`` is written (no zeroing pass).
"""
from __future__ import annotations

import math
from typing import Any

from nexec.kernels.cuda.backend import config_1d, cuda, jit

__all__ = ["max_pool_forward", "max_pool_backward", "avg_pool_forward", "avg_pool_backward",
           "masked_avg_pool1d_forward", "masked_avg_pool1d_backward"]


@jit(device=True)
def _span(i, s, p, k, size):
    """First and one-past-last input index of window ``i`` (clipped)."""
    lo = i * s - p
    hi = lo + k
    if lo < 0:  # (no max/min: the CUDA target does not type them on ints here)
        lo = 0
    if hi > size:
        hi = size
    return lo, hi


@jit(device=True)
def _windows(y, s, p, k, n_out):
    """First and one-past-last window holding input index ``y``."""
    t = y + p - k
    lo = 0
    if t >= 0:
        lo = t // s + 1
    hi = (y + p) // s + 1
    if hi > n_out:
        hi = n_out
    return lo, hi


@jit
def _max_fwd(x, ph, pw, sh, sw, pt, pl, out, argmax):
    h = x.shape[1]
    w = x.shape[2]
    c = x.shape[3]
    ho = out.shape[1]
    wo = out.shape[2]
    save = argmax.shape[0] != 0
    total = out.shape[0] * ho * wo * c
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        k = idx % c
        p = idx // c
        j = p % wo
        p = p // wo
        i = p % ho
        b = p // ho
        y0, y1 = _span(i, sh, pt, ph, h)
        x0, x1 = _span(j, sw, pl, pw, w)
        best = x[b, y0, x0, k]
        pos = y0 * w + x0
        for yy in range(y0, y1):
            for xx in range(x0, x1):
                v = x[b, yy, xx, k]
                if v > best:
                    best = v
                    pos = yy * w + xx
        out[b, i, j, k] = best
        if save:
            argmax[b, i, j, k] = pos


@jit
def _max_bwd(dy, argmax, ph, pw, sh, sw, pt, pl, dx):
    h = dx.shape[1]
    w = dx.shape[2]
    c = dx.shape[3]
    ho = dy.shape[1]
    wo = dy.shape[2]
    total = dx.shape[0] * h * w * c
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        k = idx % c
        p = idx // c
        xx = p % w
        p = p // w
        yy = p % h
        b = p // h
        i0, i1 = _windows(yy, sh, pt, ph, ho)
        j0, j1 = _windows(xx, sw, pl, pw, wo)
        pos = yy * w + xx
        acc = 0.0
        for i in range(i0, i1):
            for j in range(j0, j1):
                if argmax[b, i, j, k] == pos:
                    acc += dy[b, i, j, k]
        dx[b, yy, xx, k] = acc


@jit
def _avg_fwd(x, ph, pw, sh, sw, pt, pl, out):
    h = x.shape[1]
    w = x.shape[2]
    c = x.shape[3]
    ho = out.shape[1]
    wo = out.shape[2]
    total = out.shape[0] * ho * wo * c
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        k = idx % c
        p = idx // c
        j = p % wo
        p = p // wo
        i = p % ho
        b = p // ho
        y0, y1 = _span(i, sh, pt, ph, h)
        x0, x1 = _span(j, sw, pl, pw, w)
        acc = 0.0
        for yy in range(y0, y1):
            for xx in range(x0, x1):
                acc += x[b, yy, xx, k]
        out[b, i, j, k] = acc / ((y1 - y0) * (x1 - x0))


@jit
def _avg_bwd(dy, ph, pw, sh, sw, pt, pl, dx):
    h = dx.shape[1]
    w = dx.shape[2]
    c = dx.shape[3]
    ho = dy.shape[1]
    wo = dy.shape[2]
    total = dx.shape[0] * h * w * c
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        k = idx % c
        p = idx // c
        xx = p % w
        p = p // w
        yy = p % h
        b = p // h
        i0, i1 = _windows(yy, sh, pt, ph, ho)
        j0, j1 = _windows(xx, sw, pl, pw, wo)
        acc = 0.0
        for i in range(i0, i1):
            y0, y1 = _span(i, sh, pt, ph, h)
            for j in range(j0, j1):
                x0, x1 = _span(j, sw, pl, pw, w)
                acc += dy[b, i, j, k] / ((y1 - y0) * (x1 - x0))
        dx[b, yy, xx, k] = acc


@jit
def _masked_avg_fwd(x, ids, out):
    steps = x.shape[1]
    c = x.shape[2]
    total = out.shape[0] * c
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        k = idx % c
        b = idx // c
        acc = 0.0
        count = 0
        for t in range(steps):
            if ids[b, t] != 0:
                count += 1
                acc += x[b, t, k]
        if count == 0:
            out[b, k] = math.nan
        else:
            out[b, k] = acc / count


@jit
def _masked_avg_bwd(dy, ids, dx):
    steps = dx.shape[1]
    c = dx.shape[2]
    total = dx.shape[0] * steps * c
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        k = idx % c
        p = idx // c
        t = p % steps
        b = p // steps
        if ids[b, t] == 0:
            dx[b, t, k] = 0.0
        else:
            count = 0
            for s in range(steps):
                if ids[b, s] != 0:
                    count += 1
            dx[b, t, k] = dy[b, k] / count


def _launch(kernel: Any, size: int, stream: Any, *args: Any) -> None:
    if size:
        blocks, threads = config_1d(size)
        kernel[blocks, threads, stream](*args)


def max_pool_forward(x: Any, ph: int, pw: int, sh: int, sw: int, pt: int, pl: int, out: Any,
                     argmax: Any, *, stream: Any = 0) -> None:
    """Window maxima into ``out``; their flat positions into ``argmax`` unless it is empty."""
    _launch(_max_fwd, out.size, stream, x, ph, pw, sh, sw, pt, pl, out, argmax)


def max_pool_backward(dy: Any, argmax: Any, ph: int, pw: int, sh: int, sw: int, pt: int,
                      pl: int, dx: Any, *, stream: Any = 0) -> None:
    """``dx`` = the gradients of the windows whose maximum each input was."""
    _launch(_max_bwd, dx.size, stream, dy, argmax, ph, pw, sh, sw, pt, pl, dx)


def avg_pool_forward(x: Any, ph: int, pw: int, sh: int, sw: int, pt: int, pl: int, out: Any,
                     *, stream: Any = 0) -> None:
    """Means of the real inputs of each window."""
    _launch(_avg_fwd, out.size, stream, x, ph, pw, sh, sw, pt, pl, out)


def avg_pool_backward(dy: Any, ph: int, pw: int, sh: int, sw: int, pt: int, pl: int, dx: Any,
                      *, stream: Any = 0) -> None:
    """``dx`` = each window's gradient shared evenly by its real inputs."""
    _launch(_avg_bwd, dx.size, stream, dy, ph, pw, sh, sw, pt, pl, dx)


def masked_avg_pool1d_forward(x: Any, ids: Any, out: Any, *, stream: Any = 0) -> None:
    """Means over the real steps (``ids != 0``) of each ``(N, L, C)`` sample; NaN for none."""
    _launch(_masked_avg_fwd, out.shape[0] * out.shape[1], stream, x, ids, out)


def masked_avg_pool1d_backward(dy: Any, ids: Any, dx: Any, *, stream: Any = 0) -> None:
    """``dx`` = each sample's gradient shared evenly by its real steps, 0 at padded ones."""
    _launch(_masked_avg_bwd, dx.size, stream, dy, ids, dx)
