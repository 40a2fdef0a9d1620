"""Pooling kernels, NHWC: max and average over windows, 1-D and global pooling included.

Every pooling is a 2-D window op on a ``(N, H, W, C)`` array: a 1-D pooling sees its
``(N, L, C)`` input as ``(N, 1, L, C)``, a global pooling is one window as large as the
image (its ``(N, C)`` output seen as ``(N, 1, 1, C)``). So four kernels serve every
pooling layer. The channel loop is the innermost one, over contiguous memory, so LLVM
vectorizes it; any array may also be a row-strided view (an output written straight into
its slice of a concatenation).

Windows: output ``(i, j)`` covers input rows ``i * sh - pt .. i * sh - pt + ph - 1``
(clipped to the image), and likewise for columns (``nexec.ops.geometry``). Every window
holds at least one real input; padded positions never count (TensorFlow's rule).

A masked global average over steps (``GlobalAveragePooling1D`` after
``Embedding(mask_zero=True)``) has kernels of its own, reading the mask source ``ids``
``(N, L)`` (a step is real where its id is not 0).

Kernels allocate nothing; backward kernels *overwrite* ``dx`` (the executor sums several
contributions itself).
"""
from __future__ import annotations

import numpy as np

from nexec.kernels.cpu.blas import as_c_layout, unit_row
from nexec.kernels.cpu.opaque import one_like
from nexec.kernels.jit import kernel

__all__ = ["max_pool_forward", "max_pool_backward", "avg_pool_forward", "avg_pool_backward",
           "masked_avg_pool1d_forward", "masked_avg_pool1d_backward"]


@kernel
def max_pool_forward(x, ph, pw, sh, sw, pt, pl, out, argmax):
    """``out[b, i, j, c]`` = max of the window; ``argmax`` gets its flat position ``y * W + x``.

    Args:
        x: ``(N, H, W, C)`` input.
        ph, pw, sh, sw: Pool size and strides.
        pt, pl: Top and left padding.
        out: ``(N, Ho, Wo, C)`` output.
        argmax: ``(N, Ho, Wo, C)`` int32, written for backward; a ``(0, 0, 0, 0)`` array at
            inference skips it. Ties go to the first maximum in row-major window order; a
            NaN never replaces a value, as Python's ``max``.
    """
    n, h, w, c = x.shape
    ho, wo = out.shape[1], out.shape[2]
    save = argmax.shape[0] != 0
    keep = one_like(out)  # ordinary stores, not masked ones (.opaque)
    keep_pos = one_like(argmax)
    for b in range(n):
        for i in range(ho):
            y0 = max(i * sh - pt, 0)
            y1 = min(i * sh - pt + ph, h)
            ob = out[b, i]
            for j in range(wo):
                x0 = max(j * sw - pl, 0)
                x1 = min(j * sw - pl + pw, w)
                o = unit_row(ob, j)  # the channels: contiguous in every NHWC view
                r = unit_row(x[b, y0], x0)
                for k in range(c):
                    o[k] = r[k]
                if save:
                    a = unit_row(argmax[b, i], j)
                    first = y0 * w + x0
                    for k in range(c):
                        a[k] = first
                    for yy in range(y0, y1):
                        for xx in range(x0, x1):
                            pos = argmax.dtype.type(yy * w + xx)  # int32 lanes, as a's
                            r = unit_row(x[b, yy], xx)
                            # two selects in two loops: in one, LLVM turns them into
                            # two masked stores per branch
                            for k in range(c):
                                a[k] = pos if r[k] > o[k] else a[k] * keep_pos
                            for k in range(c):
                                v = r[k]
                                cur = o[k]
                                o[k] = v if v > cur else cur * keep
                else:
                    for yy in range(y0, y1):
                        for xx in range(x0, x1):
                            r = unit_row(x[b, yy], xx)
                            for k in range(c):
                                v = r[k]
                                cur = o[k]
                                o[k] = v if v > cur else cur * keep


@kernel
def max_pool_backward(dy, argmax, ph, pw, sh, sw, pt, pl, dx):
    """``dx`` = each ``dy`` routed to its window's maximum (summed where windows overlap).

    The window arguments are those of the forward call (the CUDA twin gathers by window;
    here a scatter through ``argmax`` needs none of them).
    """
    n, ho, wo, c = dy.shape
    h = dx.shape[1]
    w = dx.shape[2]
    isz = dx.itemsize
    # each image's gradient one block (the usual case): positions index it without a division
    packed = ((dx.strides[3] == isz or c <= 1) and (dx.strides[2] == c * isz or w <= 1)
              and (dx.strides[1] == w * c * isz or h <= 1))
    for b in range(n):
        db = dx[b]
        for yy in range(h):
            for xx in range(w):
                z = unit_row(db[yy], xx)
                for k in range(c):
                    z[k] = 0
        if packed:
            flat = as_c_layout(db).reshape(h * w * c)
            for i in range(ho):
                for j in range(wo):
                    a = unit_row(argmax[b, i], j)
                    d = unit_row(dy[b, i], j)
                    for k in range(c):
                        flat[a[k] * c + k] += d[k]
        else:
            for i in range(ho):
                for j in range(wo):
                    for k in range(c):
                        pos = argmax[b, i, j, k]
                        db[pos // w, pos % w, k] += dy[b, i, j, k]


@kernel
def avg_pool_forward(x, ph, pw, sh, sw, pt, pl, out):
    """``out[b, i, j, c]`` = mean of the real inputs of the window (TensorFlow's rule)."""
    n, h, w, c = x.shape
    ho, wo = out.shape[1], out.shape[2]
    for b in range(n):
        for i in range(ho):
            y0 = max(i * sh - pt, 0)
            y1 = min(i * sh - pt + ph, h)
            for j in range(wo):
                x0 = max(j * sw - pl, 0)
                x1 = min(j * sw - pl + pw, w)
                inv = 1.0 / ((y1 - y0) * (x1 - x0))
                for k in range(c):
                    out[b, i, j, k] = 0
                for yy in range(y0, y1):
                    for xx in range(x0, x1):
                        for k in range(c):
                            out[b, i, j, k] += x[b, yy, xx, k]
                for k in range(c):
                    out[b, i, j, k] *= inv


@kernel
def avg_pool_backward(dy, ph, pw, sh, sw, pt, pl, dx):
    """``dx`` = each ``dy`` spread evenly over the real inputs of its window."""
    n, h, w, c = dx.shape
    ho, wo = dy.shape[1], dy.shape[2]
    for b in range(n):
        for yy in range(h):
            for xx in range(w):
                for k in range(c):
                    dx[b, yy, xx, k] = 0
        for i in range(ho):
            y0 = max(i * sh - pt, 0)
            y1 = min(i * sh - pt + ph, h)
            for j in range(wo):
                x0 = max(j * sw - pl, 0)
                x1 = min(j * sw - pl + pw, w)
                inv = 1.0 / ((y1 - y0) * (x1 - x0))
                for yy in range(y0, y1):
                    for xx in range(x0, x1):
                        for k in range(c):
                            dx[b, yy, xx, k] += dy[b, i, j, k] * inv


@kernel
def masked_avg_pool1d_forward(x, ids, out):
    """``out[b, c]`` = the mean of ``x[b, t, c]`` over the steps ``t`` with ``ids[b, t] != 0``
    (Keras 3's masked GlobalAveragePooling1D); NaN for a sample with no such step (Keras'
    ``0 / 0``).

    Args:
        x: (N, L, C) input; ids: (N, L) mask source, any numeric dtype.
        out: (N, C), may be row-strided.
    """
    n, steps, c = x.shape
    for b in range(n):
        count = 0
        for k in range(c):
            out[b, k] = 0
        for t in range(steps):
            if ids[b, t] != 0:
                count += 1
                for k in range(c):
                    out[b, k] += x[b, t, k]
        if count == 0:
            for k in range(c):
                out[b, k] = np.nan
        else:
            for k in range(c):
                out[b, k] /= count


@kernel
def masked_avg_pool1d_backward(dy, ids, dx):
    """``dx[b, t, c]`` = ``dy[b, c] / count_b`` at the real steps, 0 at the padded ones (and
    everywhere for a sample with no real step)."""
    n, steps, c = dx.shape
    for b in range(n):
        count = 0
        for t in range(steps):
            if ids[b, t] != 0:
                count += 1
        for t in range(steps):
            if ids[b, t] != 0:
                for k in range(c):
                    dx[b, t, k] = dy[b, k] / count
            else:
                for k in range(c):
                    dx[b, t, k] = 0
