"""Numba kernels of the 3-D pooling layers, NDHWC.

Every kernel writes into arrays it is given and allocates nothing. The channel loop is the
innermost one, over contiguous memory, so LLVM vectorizes it; the output may also be a
row-strided view (written straight into its slice of a concatenation).

Windows follow ``layers.pool_geometry_3d``: output ``(a, i, j)`` covers input depths
``a * sd - pd .. a * sd - pd + kd - 1`` (clipped to the volume), and likewise for rows and
columns. Every window holds at least one real input; padded positions never count. A global
pooling is one window as large as the volume.

Backward kernels *overwrite* ``dx`` (the executor sums several contributions itself).
"""
from __future__ import annotations

from nexec.plugin import kernel

__all__ = ["max_pool3d_forward", "max_pool3d_backward", "avg_pool3d_forward",
           "avg_pool3d_backward"]


@kernel
def max_pool3d_forward(x, window, out, argmax):
    """``out[b, a, i, j, c]`` = max of the window; ``argmax`` its flat position in the volume.

    Args:
        x: ``(N, D, H, W, C)`` input.
        window: ``(kd, kh, kw, sd, sh, sw, pd, pt, pl)``: pool size, strides, front/top/left
            padding.
        out: ``(N, Do, Ho, Wo, C)`` output.
        argmax: like ``out``, int32, written for backward; a zero-length array at inference
            skips it. Ties go to the first maximum in (depth, row, column) order.
    """
    kd, kh, kw, sd, sh, sw, pd, pt, pl = window
    n, d, h, w, c = x.shape
    do, ho, wo = out.shape[1], out.shape[2], out.shape[3]
    save = argmax.shape[0] != 0
    for b in range(n):
        for a in range(do):
            z0 = max(a * sd - pd, 0)
            z1 = min(a * sd - pd + kd, d)
            for i in range(ho):
                y0 = max(i * sh - pt, 0)
                y1 = min(i * sh - pt + kh, h)
                for j in range(wo):
                    x0 = max(j * sw - pl, 0)
                    x1 = min(j * sw - pl + kw, w)
                    o = out[b, a, i, j]
                    first = x[b, z0, y0, x0]
                    for k in range(c):
                        o[k] = first[k]
                    if save:
                        am = argmax[b, a, i, j]
                        for k in range(c):
                            am[k] = (z0 * h + y0) * w + x0
                    for zz in range(z0, z1):
                        for yy in range(y0, y1):
                            for xx in range(x0, x1):
                                v = x[b, zz, yy, xx]
                                if save:
                                    pos = (zz * h + yy) * w + xx
                                    for k in range(c):
                                        if v[k] > o[k]:
                                            o[k] = v[k]
                                            am[k] = pos
                                else:
                                    for k in range(c):
                                        o[k] = max(o[k], v[k])


@kernel
def max_pool3d_backward(dy, argmax, dx):
    """``dx`` = each ``dy`` routed to its window's maximum (summed where windows overlap)."""
    n, do, ho, wo, c = dy.shape
    h, w = dx.shape[2], dx.shape[3]
    for b in range(n):
        dxb = dx[b]
        for zz in range(dx.shape[1]):
            for yy in range(h):
                for xx in range(w):
                    for k in range(c):
                        dxb[zz, yy, xx, k] = 0
        for a in range(do):
            for i in range(ho):
                for j in range(wo):
                    for k in range(c):
                        pos = argmax[b, a, i, j, k]
                        zz, rest = divmod(pos, h * w)
                        yy, xx = divmod(rest, w)
                        dxb[zz, yy, xx, k] += dy[b, a, i, j, k]


@kernel
def avg_pool3d_forward(x, window, out):
    """``out[b, a, i, j, c]`` = mean of the real inputs of the window (TensorFlow's rule)."""
    kd, kh, kw, sd, sh, sw, pd, pt, pl = window
    n, d, h, w, c = x.shape
    do, ho, wo = out.shape[1], out.shape[2], out.shape[3]
    for b in range(n):
        for a in range(do):
            z0 = max(a * sd - pd, 0)
            z1 = min(a * sd - pd + kd, d)
            for i in range(ho):
                y0 = max(i * sh - pt, 0)
                y1 = min(i * sh - pt + kh, h)
                for j in range(wo):
                    x0 = max(j * sw - pl, 0)
                    x1 = min(j * sw - pl + kw, w)
                    o = out[b, a, i, j]
                    for k in range(c):
                        o[k] = 0
                    for zz in range(z0, z1):
                        for yy in range(y0, y1):
                            for xx in range(x0, x1):
                                v = x[b, zz, yy, xx]
                                for k in range(c):
                                    o[k] += v[k]
                    inv = 1.0 / ((z1 - z0) * (y1 - y0) * (x1 - x0))
                    for k in range(c):
                        o[k] *= inv


@kernel
def avg_pool3d_backward(dy, window, dx):
    """``dx`` = each ``dy`` spread evenly over the real inputs of its window."""
    kd, kh, kw, sd, sh, sw, pd, pt, pl = window
    n, d, h, w, c = dx.shape
    do, ho, wo = dy.shape[1], dy.shape[2], dy.shape[3]
    for b in range(n):
        dxb = dx[b]
        for zz in range(d):
            for yy in range(h):
                for xx in range(w):
                    for k in range(c):
                        dxb[zz, yy, xx, k] = 0
        for a in range(do):
            z0 = max(a * sd - pd, 0)
            z1 = min(a * sd - pd + kd, d)
            for i in range(ho):
                y0 = max(i * sh - pt, 0)
                y1 = min(i * sh - pt + kh, h)
                for j in range(wo):
                    x0 = max(j * sw - pl, 0)
                    x1 = min(j * sw - pl + kw, w)
                    inv = 1.0 / ((z1 - z0) * (y1 - y0) * (x1 - x0))
                    g = dy[b, a, i, j]
                    for zz in range(z0, z1):
                        for yy in range(y0, y1):
                            for xx in range(x0, x1):
                                t = dxb[zz, yy, xx]
                                for k in range(c):
                                    t[k] += g[k] * inv
