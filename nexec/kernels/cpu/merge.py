"""Kernels for Add, Concatenate and the plumbing of gradients between layers.

Concatenate is normally free (each branch writes into its slice of the joined buffer), so
these kernels work on 2-D views of any row stride: copies for when that layout is
impossible, and for splitting the gradient back into branches; accumulation for a tensor
read by several layers; Add with its activation fused.
"""
from __future__ import annotations

from nexec.kernels.cpu.activation import activate_row_inplace, same_data
from nexec.kernels.jit import kernel

__all__ = ["add_forward", "add_accumulate", "copy_into", "accumulate", "fill_zero"]


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
