"""Kernels of the shape layers that move data: nearest upsampling (and RepeatVector), zero
padding and cropping, and axis permutation.

Upsampling, padding and cropping work on ``(N, H, W, C)`` arrays (a 1-D layer's
``(N, L, C)`` seen as ``(N, 1, L, C)``; RepeatVector's ``(N, F)`` input as
``(N, 1, 1, F)``, repeated ``n`` times along H). Padding and cropping are one kernel,
:func:`pad_shift`, a shifted copy with zeros outside the source: zero padding shifts by
``+pad``, cropping by ``-crop``, and each one's backward is the other shift. Permute copies
between ``(N, A, B, C, D)`` arrays (fewer feature axes padded with size-1 ones).

Kernels allocate nothing and overwrite their outputs; any array may be row-strided.
"""
from __future__ import annotations

from nexec.kernels.jit import kernel

__all__ = ["upsample_forward", "upsample_backward", "pad_shift", "permute_copy"]


@kernel
def upsample_forward(x, sh, sw, out):
    """``out[b, i, j, c] = x[b, i // sh, j // sw, c]`` (nearest neighbour).

    Args:
        x: ``(N, H, W, C)`` input.
        sh, sw: Repeats along H and W.
        out: ``(N, H * sh, W * sw, C)`` output.
    """
    n, h, w, c = x.shape
    for b in range(n):
        for i in range(h * sh):
            for j in range(w * sw):
                src = x[b, i // sh, j // sw]
                dst = out[b, i, j]
                for k in range(c):
                    dst[k] = src[k]


@kernel
def upsample_backward(dy, sh, sw, dx):
    """``dx[b, y, x, c]`` = sum of ``dy`` over the ``sh x sw`` block that copied it."""
    n, h, w, c = dx.shape
    for b in range(n):
        for y in range(h):
            for x in range(w):
                d = dx[b, y, x]
                for k in range(c):
                    d[k] = 0
                for i in range(y * sh, y * sh + sh):
                    for j in range(x * sw, x * sw + sw):
                        g = dy[b, i, j]
                        for k in range(c):
                            d[k] += g[k]


@kernel
def pad_shift(src, top, left, dst):
    """``dst[b, i, j, c] = src[b, i - top, j - left, c]``, 0 where that is outside ``src``.

    Args:
        src: ``(N, H, W, C)``.
        top, left: Shift (negative: a crop).
        dst: ``(N, H2, W2, C)``, any size.
    """
    n, h, w, c = src.shape
    for b in range(n):
        for i in range(dst.shape[1]):
            y = i - top
            for j in range(dst.shape[2]):
                xx = j - left
                d = dst[b, i, j]
                if y >= 0 and y < h and xx >= 0 and xx < w:
                    s = src[b, y, xx]
                    for k in range(c):
                        d[k] = s[k]
                else:
                    for k in range(c):
                        d[k] = 0


@kernel
def permute_copy(src, q1, q2, q3, q4, dst):
    """``dst[b, i1, i2, i3, i4] = src[b, i[q1], i[q2], i[q3], i[q4]]``, ``i = (i1..i4)``.

    Args:
        src: ``(N, A, B, C, D)``.
        q1, q2, q3, q4: For each axis of ``src`` (0-based over the feature axes), the axis
            of ``dst`` it becomes.
        dst: ``src``'s axes permuted.
    """
    n = dst.shape[0]
    for b in range(n):
        for i1 in range(dst.shape[1]):
            for i2 in range(dst.shape[2]):
                for i3 in range(dst.shape[3]):
                    for i4 in range(dst.shape[4]):
                        i = (i1, i2, i3, i4)
                        dst[b, i1, i2, i3, i4] = src[b, i[q1], i[q2], i[q3], i[q4]]
