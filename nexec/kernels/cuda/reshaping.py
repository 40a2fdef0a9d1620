"""CUDA kernels of the shape layers that move data: the twins of
:mod:`nexec.kernels.cpu.reshaping` (same launchers and layouts, plus a keyword-only
``stream``). One thread per output element, grid-stride; upsampling's backward gathers its
block of gradients, so there are no atomics and every element is written.
"""
from __future__ import annotations

from typing import Any

from nexec.kernels.cuda.backend import config_1d, cuda, jit

__all__ = ["upsample_forward", "upsample_backward", "pad_shift", "permute_copy"]


@jit
def _upsample_fwd(x, sh, sw, out):
    ho = out.shape[1]
    wo = out.shape[2]
    c = out.shape[3]
    total = out.shape[0] * ho * wo * c
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        k = idx % c
        p = idx // c
        j = p % wo
        p = p // wo
        i = p % ho
        b = p // ho
        out[b, i, j, k] = x[b, i // sh, j // sw, k]


@jit
def _upsample_bwd(dy, sh, sw, dx):
    h = dx.shape[1]
    w = dx.shape[2]
    c = dx.shape[3]
    total = dx.shape[0] * h * w * c
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        k = idx % c
        p = idx // c
        x = p % w
        p = p // w
        y = p % h
        b = p // h
        acc = 0.0
        for i in range(y * sh, y * sh + sh):
            for j in range(x * sw, x * sw + sw):
                acc += dy[b, i, j, k]
        dx[b, y, x, k] = acc


@jit
def _pad_shift(src, top, left, dst):
    h = src.shape[1]
    w = src.shape[2]
    ho = dst.shape[1]
    wo = dst.shape[2]
    c = dst.shape[3]
    total = dst.shape[0] * ho * wo * c
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        k = idx % c
        p = idx // c
        j = p % wo
        p = p // wo
        i = p % ho
        b = p // ho
        y = i - top
        x = j - left
        if y >= 0 and y < h and x >= 0 and x < w:
            dst[b, i, j, k] = src[b, y, x, k]
        else:
            dst[b, i, j, k] = 0


@jit
def _permute(src, q1, q2, q3, q4, dst):
    d1 = dst.shape[1]
    d2 = dst.shape[2]
    d3 = dst.shape[3]
    d4 = dst.shape[4]
    total = dst.shape[0] * d1 * d2 * d3 * d4
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        i4 = idx % d4
        p = idx // d4
        i3 = p % d3
        p = p // d3
        i2 = p % d2
        p = p // d2
        i1 = p % d1
        b = p // d1
        i = (i1, i2, i3, i4)
        dst[b, i1, i2, i3, i4] = src[b, i[q1], i[q2], i[q3], i[q4]]


def _launch(kernel: Any, size: int, stream: Any, *args: Any) -> None:
    if size:
        blocks, threads = config_1d(size)
        kernel[blocks, threads, stream](*args)


def upsample_forward(x: Any, sh: int, sw: int, out: Any, *, stream: Any = 0) -> None:
    """``out[b, i, j, c] = x[b, i // sh, j // sw, c]``."""
    _launch(_upsample_fwd, out.size, stream, x, sh, sw, out)


def upsample_backward(dy: Any, sh: int, sw: int, dx: Any, *, stream: Any = 0) -> None:
    """``dx`` = the sum of ``dy`` over the block each input was copied to."""
    _launch(_upsample_bwd, dx.size, stream, dy, sh, sw, dx)


def pad_shift(src: Any, top: int, left: int, dst: Any, *, stream: Any = 0) -> None:
    """``dst[b, i, j] = src[b, i - top, j - left]``, 0 outside ``src``."""
    _launch(_pad_shift, dst.size, stream, src, top, left, dst)


def permute_copy(src: Any, q1: int, q2: int, q3: int, q4: int, dst: Any, *,
                 stream: Any = 0) -> None:
    """``dst[b, i1, i2, i3, i4] = src[b, i[q1], i[q2], i[q3], i[q4]]``."""
    _launch(_permute, dst.size, stream, src, q1, q2, q3, q4, dst)
