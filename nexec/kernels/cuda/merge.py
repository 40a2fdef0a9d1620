"""CUDA kernels for the merge layers and the gradient plumbing between layers.

Mirrors :mod:`nexec.kernels.cpu.merge` (same launcher signatures on device arrays, plus an
optional keyword-only ``stream``). All kernels are elementwise, one thread per element,
grid-stride over ``rows * channels``; ``add_forward`` with softmax adds first and then runs
the row-wise softmax pass in place. Dot is one thread per row (float64 sums).

Layout: 2-D ``(rows, channels)`` device arrays. The planner's default is C-contiguous; the
kernels index ``a[i, j]`` and so also accept a row-strided device view (a slice of a
channel-concatenated buffer, ``buf[:, c0:c1]``). That is exercised in the simulator tests
but has not yet been run on a real GPU, so the executor should treat row-strided views on
CUDA as unverified until the GPU check covers them.
"""
from __future__ import annotations

import math
from typing import Any

from numba import float64

from nexec.kernels.activations import LINEAR, ROW_WISE
from nexec.kernels.cuda.activation import act_value, check_act, row_activation
from nexec.kernels.cuda.backend import config_1d, cuda, jit

__all__ = ["accumulate", "add_accumulate", "add_forward", "copy_into", "fill_zero",
           "merge_forward", "merge_accumulate", "scale_into", "extreme_grad", "dot_forward",
           "dot_backward"]

# The codes of nexec.kernels.cpu.merge (MERGE_SUM ... MERGE_MIN) and Keras' l2 epsilon.
_SUM, _SUB, _MUL, _MAX, _MIN = 0, 1, 2, 3, 4
_DOT_EPSILON = 1e-12


@jit
def _add(a, b, act, out):
    rows = a.shape[0]
    cols = a.shape[1]
    for idx in range(cuda.grid(1), rows * cols, cuda.gridsize(1)):
        i = idx // cols
        j = idx - i * cols
        out[i, j] = act_value(a[i, j] + b[i, j], act)


@jit
def _copy(dst, src):
    rows = dst.shape[0]
    cols = dst.shape[1]
    for idx in range(cuda.grid(1), rows * cols, cuda.gridsize(1)):
        i = idx // cols
        j = idx - i * cols
        dst[i, j] = src[i, j]


@jit
def _accumulate(dst, src):
    rows = dst.shape[0]
    cols = dst.shape[1]
    for idx in range(cuda.grid(1), rows * cols, cuda.gridsize(1)):
        i = idx // cols
        j = idx - i * cols
        dst[i, j] += src[i, j]


@jit
def _fill_zero(dst):
    rows = dst.shape[0]
    cols = dst.shape[1]
    for idx in range(cuda.grid(1), rows * cols, cuda.gridsize(1)):
        i = idx // cols
        j = idx - i * cols
        dst[i, j] = 0


def _config(a: Any) -> tuple[int, int] | None:
    n = a.shape[0] * a.shape[1]
    return None if n == 0 else config_1d(n)


def add_forward(a: Any, b: Any, act: int, out: Any, *, stream: Any = 0) -> None:
    """out = act(a + b), softmax row-wise.

    Args:
        a, b: 2-D (rows, channels) device arrays of one shape.
        act: Activation code (``nexec.kernels.activations``).
        out: 2-D device array like ``a``; may be the same array as ``a`` or ``b``.
        stream: CUDA stream (keyword only; CUDA addition).
    """
    act = check_act(act, "add_forward")
    if b.shape != a.shape or out.shape != a.shape:
        raise ValueError("add_forward: a, b and out shapes differ")
    cfg = _config(a)
    if cfg is None:
        return
    _add[cfg[0], cfg[1], stream](a, b, LINEAR if act in ROW_WISE else act, out)
    if act in ROW_WISE:
        row_activation(out, act, out, stream)


def add_accumulate(out: Any, x: Any, act: int, *, stream: Any = 0) -> None:
    """out = act(out + x): the 3rd..nth input of an Add (activation on the last call only)."""
    add_forward(out, x, act, out, stream=stream)


def copy_into(dst: Any, src: Any, *, stream: Any = 0) -> None:
    """dst[:] = src for 2-D device arrays of one shape."""
    if src.shape != dst.shape:
        raise ValueError("copy_into: dst and src shapes differ")
    cfg = _config(dst)
    if cfg is not None:
        _copy[cfg[0], cfg[1], stream](dst, src)


def accumulate(dst: Any, src: Any, *, stream: Any = 0) -> None:
    """dst += src (sums the gradient contributions of a tensor read by several layers)."""
    if src.shape != dst.shape:
        raise ValueError("accumulate: dst and src shapes differ")
    cfg = _config(dst)
    if cfg is not None:
        _accumulate[cfg[0], cfg[1], stream](dst, src)


def fill_zero(dst: Any, *, stream: Any = 0) -> None:
    """dst[:] = 0 for a 2-D device array."""
    cfg = _config(dst)
    if cfg is not None:
        _fill_zero[cfg[0], cfg[1], stream](dst)


@jit
def _merge(a, b, op, out):
    rows = a.shape[0]
    cols = a.shape[1]
    for idx in range(cuda.grid(1), rows * cols, cuda.gridsize(1)):
        i = idx // cols
        j = idx - i * cols
        u = a[i, j]
        v = b[i, j]
        if op == _SUM:
            out[i, j] = u + v
        elif op == _SUB:
            out[i, j] = u - v
        elif op == _MUL:
            out[i, j] = u * v
        elif op == _MAX:
            out[i, j] = u if u >= v else v
        else:
            out[i, j] = u if u <= v else v


@jit
def _scale(dst, src, s):
    rows = dst.shape[0]
    cols = dst.shape[1]
    for idx in range(cuda.grid(1), rows * cols, cuda.gridsize(1)):
        i = idx // cols
        j = idx - i * cols
        dst[i, j] = src[i, j] * s


@jit
def _extreme_grad(x, y, rest, dx, write):
    rows = x.shape[0]
    cols = x.shape[1]
    for idx in range(cuda.grid(1), rows * cols, cuda.gridsize(1)):
        i = idx // cols
        j = idx - i * cols
        g = 0.0
        if x[i, j] == y[i, j]:
            g = rest[i, j]
            rest[i, j] = 0
        if write:
            dx[i, j] = g


@jit(device=True)
def _inv_norm(a, i, normalize):
    if not normalize:
        return 1.0
    s = 0.0
    for j in range(a.shape[1]):
        s += float64(a[i, j]) * a[i, j]
    return 1.0 / math.sqrt(s if s > _DOT_EPSILON else _DOT_EPSILON)


@jit(device=True)
def _row_dot(a, b, i):
    s = 0.0
    for j in range(a.shape[1]):
        s += float64(a[i, j]) * b[i, j]
    return s


@jit
def _dot_forward(a, b, normalize, out):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        out[i, 0] = _row_dot(a, b, i) * (_inv_norm(a, i, normalize) * _inv_norm(b, i, normalize))


@jit(device=True)
def _dot_grad_row(u, v, i, g, nu, nv, y, normalize, d):
    unclamped = normalize and _row_dot(u, u, i) > _DOT_EPSILON
    for j in range(u.shape[1]):
        t = v[i, j] * (nu * nv)
        if unclamped:
            t -= y * u[i, j] * (nu * nu)
        d[i, j] = g * t


@jit
def _dot_backward(a, b, dy, normalize, da, db, wa, wb):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        na = _inv_norm(a, i, normalize)
        nb = _inv_norm(b, i, normalize)
        y = _row_dot(a, b, i) * (na * nb)
        g = float64(dy[i, 0])
        if wa:
            _dot_grad_row(a, b, i, g, na, nb, y, normalize, da)
        if wb:
            _dot_grad_row(b, a, i, g, nb, na, y, normalize, db)


def merge_forward(a: Any, b: Any, op: int, out: Any, *, stream: Any = 0) -> None:
    """out = a <op> b elementwise (codes of ``nexec.kernels.cpu.merge``); ``out`` may be
    ``a`` or ``b``."""
    if b.shape != a.shape or out.shape != a.shape:
        raise ValueError("merge_forward: a, b and out shapes differ")
    if int(op) not in (_SUM, _SUB, _MUL, _MAX, _MIN):
        raise ValueError("merge_forward: unknown operation code")
    cfg = _config(a)
    if cfg is not None:
        _merge[cfg[0], cfg[1], stream](a, b, int(op), out)


def merge_accumulate(out: Any, x: Any, op: int, *, stream: Any = 0) -> None:
    """out = out <op> x."""
    merge_forward(out, x, op, out, stream=stream)


def scale_into(dst: Any, src: Any, s: float, *, stream: Any = 0) -> None:
    """dst = src * s; ``dst`` may be ``src``."""
    if src.shape != dst.shape:
        raise ValueError("scale_into: dst and src shapes differ")
    cfg = _config(dst)
    if cfg is not None:
        _scale[cfg[0], cfg[1], stream](dst, src, float(s))


def extreme_grad(x: Any, y: Any, rest: Any, dx: Any, *, stream: Any = 0) -> None:
    """Maximum/Minimum backward for one input (see the CPU kernel); ``dx`` of zero rows is
    skipped."""
    if y.shape != x.shape or rest.shape != x.shape:
        raise ValueError("extreme_grad: x, y and rest shapes differ")
    write = dx.shape[0] != 0
    if write and dx.shape != x.shape:
        raise ValueError("extreme_grad: dx shape differs from x")
    cfg = _config(x)
    if cfg is not None:
        _extreme_grad[cfg[0], cfg[1], stream](x, y, rest, dx if write else rest, write)


def dot_forward(a: Any, b: Any, normalize: bool, out: Any, *, stream: Any = 0) -> None:
    """out[i, 0] = dot(a[i], b[i]), rows L2-normalised first with ``normalize``."""
    if b.shape != a.shape or out.shape[0] != a.shape[0] or out.shape[1] != 1:
        raise ValueError("dot_forward: a, b must match and out be (rows, 1)")
    if a.shape[0] == 0:
        return
    blocks, threads = config_1d(a.shape[0])
    _dot_forward[blocks, threads, stream](a, b, bool(normalize), out)


def dot_backward(a: Any, b: Any, dy: Any, normalize: bool, da: Any, db: Any, *,
                 stream: Any = 0) -> None:
    """Gradients of :func:`dot_forward`; ``da``/``db`` of zero rows are skipped."""
    if b.shape != a.shape or dy.shape[0] != a.shape[0] or dy.shape[1] != 1:
        raise ValueError("dot_backward: a, b must match and dy be (rows, 1)")
    wa, wb = da.shape[0] != 0, db.shape[0] != 0
    if (wa and da.shape != a.shape) or (wb and db.shape != b.shape):
        raise ValueError("dot_backward: da/db shapes differ from a/b")
    if a.shape[0] == 0:
        return
    blocks, threads = config_1d(a.shape[0])
    _dot_backward[blocks, threads, stream](a, b, dy, bool(normalize), da if wa else a,
                                           db if wb else b, wa, wb)
