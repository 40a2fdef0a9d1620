"""CUDA kernels for Add and the gradient plumbing between layers (copies, sums, zeroing).

Mirrors :mod:`nexec.kernels.cpu.merge` (same launcher signatures on device arrays, plus an
optional keyword-only ``stream``). All kernels are elementwise, one thread per element,
grid-stride over ``rows * channels``; ``add_forward`` with softmax adds first and then runs
the row-wise softmax pass in place.

Layout: 2-D ``(rows, channels)`` device arrays. The planner's default is C-contiguous; the
kernels index ``a[i, j]`` and so also accept a row-strided device view (a slice of a
channel-concatenated buffer, ``buf[:, c0:c1]``). That is exercised in the simulator tests
but has not yet been run on a real GPU, so the executor should treat row-strided views on
CUDA as unverified until the GPU check covers them.
"""
from __future__ import annotations

from typing import Any

from nexec.kernels.activations import LINEAR, ROW_WISE
from nexec.kernels.cuda.activation import act_value, check_act, row_activation
from nexec.kernels.cuda.backend import config_1d, cuda, jit

__all__ = ["accumulate", "add_accumulate", "add_forward", "copy_into", "fill_zero"]


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
