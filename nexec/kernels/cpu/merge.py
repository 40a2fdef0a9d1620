"""Kernels for the merge layers and the plumbing of gradients between layers.

Concatenate is normally free (each branch writes into its slice of the joined buffer), so
these kernels work on 2-D views of any row stride: copies for when that layout is
impossible, and for splitting the gradient back into branches; accumulation for a tensor
read by several layers; Add with its activation fused; Subtract, Multiply, Average,
Maximum and Minimum as one elementwise kernel with an operation code (``MERGE_*``), and the
pieces of their gradients; Dot of two 2-D inputs (optionally cosine-normalised).
"""
from __future__ import annotations

import numpy as np

from nexec.kernels.cpu.activation import activate_row_inplace, row_dot, same_data
from nexec.kernels.jit import kernel

__all__ = ["add_forward", "add_accumulate", "copy_into", "accumulate", "fill_zero",
           "MERGE_SUM", "MERGE_SUB", "MERGE_MUL", "MERGE_MAX", "MERGE_MIN", "merge_forward",
           "merge_accumulate", "scale_into", "extreme_grad", "dot_forward", "dot_backward"]

#: Operation codes of :func:`merge_forward` (Average is a sum then :func:`scale_into`).
MERGE_SUM = 0
MERGE_SUB = 1
MERGE_MUL = 2
MERGE_MAX = 3
MERGE_MIN = 4

#: Keras' ``l2_normalize`` epsilon (Dot with ``normalize=True``): x / sqrt(max(|x|^2, eps)).
DOT_EPSILON = 1e-12


@kernel
def add_forward(a, b, act, out):
    """out = act(a + b), softmax row-wise.

    Args:
        a: 2-D (rows, channels), may be row-strided.
        b: 2-D like ``a``, may be row-strided.
        act: Activation code (``nexec.kernels.activations``).
        out: 2-D like ``a``, may be row-strided; may be the same array as ``a`` or ``b``.
    """
    rows = a.shape[0]
    cols = a.shape[1]
    if b.shape != a.shape or out.shape != a.shape:
        raise ValueError("add_forward: a, b and out shapes differ")
    for i in range(rows):
        ra = a[i]
        rb = b[i]
        o = out[i]
        # Aliased calls get loops over fewer distinct arrays, so that they vectorize.
        if same_data(o, ra):
            for j in range(cols):
                o[j] += rb[j]
        elif same_data(o, rb):
            for j in range(cols):
                o[j] += ra[j]
        else:
            for j in range(cols):
                o[j] = ra[j] + rb[j]
        activate_row_inplace(o, act)


@kernel
def add_accumulate(out, x, act):
    """out = act(out + x): the 3rd..nth input of an Add (activation on the last call only).

    Args:
        out: 2-D running sum, may be row-strided; updated in place.
        x: 2-D like ``out``, may be row-strided.
        act: Activation code; LINEAR for all but the last input.
    """
    add_forward(out, x, act, out)


@kernel
def copy_into(dst, src):
    """dst[:] = src.

    Args:
        dst: 2-D (rows, channels), may be row-strided.
        src: 2-D of the same shape, may be row-strided.
    """
    if src.shape != dst.shape:
        raise ValueError("copy_into: dst and src shapes differ")
    for i in range(dst.shape[0]):
        d = dst[i]
        s = src[i]
        for j in range(dst.shape[1]):
            d[j] = s[j]


@kernel
def accumulate(dst, src):
    """dst += src (sums gradient contributions of a tensor read by several layers).

    Args:
        dst: 2-D (rows, channels), may be row-strided; updated in place.
        src: 2-D of the same shape, may be row-strided.
    """
    if src.shape != dst.shape:
        raise ValueError("accumulate: dst and src shapes differ")
    for i in range(dst.shape[0]):
        d = dst[i]
        s = src[i]
        for j in range(dst.shape[1]):
            d[j] += s[j]


@kernel
def fill_zero(dst):
    """dst[:] = 0.

    Args:
        dst: 2-D (rows, channels), may be row-strided.
    """
    for i in range(dst.shape[0]):
        d = dst[i]
        for j in range(dst.shape[1]):
            d[j] = 0


@kernel
def _merge_value(a, b, op):
    if op == MERGE_SUM:
        return a + b
    if op == MERGE_SUB:
        return a - b
    if op == MERGE_MUL:
        return a * b
    if op == MERGE_MAX:
        return a if a >= b else b
    return a if a <= b else b


@kernel
def merge_forward(a, b, op, out):
    """out = a <op> b elementwise (``MERGE_SUM``, ``_SUB``, ``_MUL``, ``_MAX``, ``_MIN``).

    Args:
        a: 2-D (rows, channels), may be row-strided.
        b: 2-D like ``a``, may be row-strided.
        op: Operation code.
        out: 2-D like ``a``, may be row-strided; may be the same array as ``a`` or ``b``.
    """
    if b.shape != a.shape or out.shape != a.shape:
        raise ValueError("merge_forward: a, b and out shapes differ")
    if op < MERGE_SUM or op > MERGE_MIN:
        raise ValueError("merge_forward: unknown operation code")
    for i in range(a.shape[0]):
        ra = a[i]
        rb = b[i]
        o = out[i]
        for j in range(a.shape[1]):
            o[j] = _merge_value(ra[j], rb[j], op)


@kernel
def merge_accumulate(out, x, op):
    """out = out <op> x: the 3rd..nth input of a merge (and products of gradients).

    Args:
        out: 2-D running value, may be row-strided; updated in place.
        x: 2-D like ``out``, may be row-strided.
        op: Operation code.
    """
    merge_forward(out, x, op, out)


@kernel
def scale_into(dst, src, s):
    """dst = src * s (Average's 1/n, Subtract's -1).

    Args:
        dst: 2-D (rows, channels), may be row-strided; may be the same array as ``src``.
        src: 2-D of the same shape, may be row-strided.
        s: The scalar factor.
    """
    if src.shape != dst.shape:
        raise ValueError("scale_into: dst and src shapes differ")
    for i in range(dst.shape[0]):
        d = dst[i]
        r = src[i]
        for j in range(dst.shape[1]):
            d[j] = r[j] * s


@kernel
def extreme_grad(x, y, rest, dx):
    """Maximum/Minimum backward for one input, called for the inputs in order.

    Where ``x == y`` (this input attains the extreme) ``dx`` takes what is left of the
    gradient in ``rest`` and ``rest`` becomes 0, so a tie sends the whole gradient to the
    first input attaining it (TensorFlow's rule); elsewhere ``dx`` is 0.

    Args:
        x: 2-D forward input, may be row-strided.
        y: 2-D forward output.
        rest: 2-D gradient not yet given to an input; starts as a copy of dy; updated.
        dx: 2-D gradient of ``x``; zero rows (shape (0, c)) when ``x`` needs none.
    """
    if y.shape != x.shape or rest.shape != x.shape:
        raise ValueError("extreme_grad: x, y and rest shapes differ")
    write = dx.shape[0] != 0
    if write and dx.shape != x.shape:
        raise ValueError("extreme_grad: dx shape differs from x")
    for i in range(x.shape[0]):
        xr = x[i]
        yr = y[i]
        r = rest[i]
        for j in range(x.shape[1]):
            g = r[j] if xr[j] == yr[j] else 0.0
            if xr[j] == yr[j]:
                r[j] = 0.0
            if write:
                dx[i, j] = g


@kernel
def _inv_norm(v, normalize):
    """1 / max(|v|, sqrt(eps)) for a row (1 when not normalising)."""
    if not normalize:
        return 1.0
    return 1.0 / np.sqrt(max(row_dot(v, v), DOT_EPSILON))


@kernel
def dot_forward(a, b, normalize, out):
    """out[i, 0] = dot(a[i], b[i]); with ``normalize`` each row is first L2-normalised.

    Args:
        a: 2-D (rows, n), may be row-strided.
        b: 2-D like ``a``.
        normalize: Cosine similarity (Keras ``Dot(normalize=True)``).
        out: 2-D (rows, 1).
    """
    if b.shape != a.shape or out.shape[0] != a.shape[0] or out.shape[1] != 1:
        raise ValueError("dot_forward: a, b must match and out be (rows, 1)")
    for i in range(a.shape[0]):
        out[i, 0] = row_dot(a[i], b[i]) * (_inv_norm(a[i], normalize)
                                           * _inv_norm(b[i], normalize))


@kernel
def _dot_grad_row(u, v, g, nu, nv, y, normalize, d):
    """d = g * dy/du for y = <u nu, v nv>, nu = 1/max(|u|, sqrt(eps))."""
    n = u.shape[0]
    unclamped = normalize and row_dot(u, u) > DOT_EPSILON
    for j in range(n):
        t = v[j] * (nu * nv)
        if unclamped:
            t -= y * u[j] * (nu * nu)
        d[j] = g * t


@kernel
def dot_backward(a, b, dy, normalize, da, db):
    """Gradients of :func:`dot_forward`; ``da``/``db`` of zero rows are skipped.

    Args:
        a, b: 2-D (rows, n) forward inputs.
        dy: 2-D (rows, 1) gradient of the output.
        normalize: As in the forward.
        da, db: 2-D like ``a``; overwritten (or zero rows: not needed).
    """
    if b.shape != a.shape or dy.shape[0] != a.shape[0] or dy.shape[1] != 1:
        raise ValueError("dot_backward: a, b must match and dy be (rows, 1)")
    wa = da.shape[0] != 0
    wb = db.shape[0] != 0
    if (wa and da.shape != a.shape) or (wb and db.shape != b.shape):
        raise ValueError("dot_backward: da/db shapes differ from a/b")
    for i in range(a.shape[0]):
        na = _inv_norm(a[i], normalize)
        nb = _inv_norm(b[i], normalize)
        y = row_dot(a[i], b[i]) * (na * nb)
        g = dy[i, 0]
        if wa:
            _dot_grad_row(a[i], b[i], g, na, nb, y, normalize, da[i])
        if wb:
            _dot_grad_row(b[i], a[i], g, nb, na, y, normalize, db[i])
