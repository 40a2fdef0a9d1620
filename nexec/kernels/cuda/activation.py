"""CUDA activation kernels and the epilogue pieces that dense, conv and merge reuse.

Mirrors :mod:`nexec.kernels.cpu.activation`: launchers take device arrays where the CPU
kernels take NumPy arrays, with the same argument order and scalar arguments, plus an
optional keyword-only ``stream`` (default: the default stream). Launches are asynchronous;
copying a result to the host (or :func:`nexec.kernels.cuda.backend.synchronize`) waits.

Layout: every 2-D argument is a ``(rows, channels)`` device array. Kernels index
``a[i, j]``, so they are written for any row stride; what is tested (in the simulator) is
C-contiguous arrays plus a row-strided slice in the merge tests. Derivatives are taken from
the activation *output* ``y`` (see :mod:`nexec.kernels.activations`).

Design:

* elementwise activations (linear, relu, sigmoid, tanh): one thread per element,
  grid-stride over ``rows * channels``;
* softmax: one thread per row (max, ``exp`` with a float64 sum, scale), grid-stride over
  rows; fine for class counts up to a few thousand, a warp per row would be the next step;
* :func:`epilogue_grad` (used by dense and conv backward): one fused kernel computes
  ``dz = dy * act'(y)`` and the bias gradient ``db`` (column sums in float64). A block is
  ``(bx, by)`` threads, ``bx`` over channels and ``by`` over rows; each thread strides
  over rows, the block reduces its partial sums in shared memory, and when several blocks
  share a column (``grid.y > 1``, long batches) they ``atomic.add`` into ``db``, which is
  zeroed first; with one block per column the result is stored directly (deterministic).
  Softmax needs a row dot product first, so its ``dz`` comes from a row kernel and the
  fused kernel then runs with LINEAR in place to sum ``db``.

Transcendentals run in the array's precision (``expf``/``tanhf`` for float32); sums of a
row or column are accumulated in float64, as on the CPU.
"""
from __future__ import annotations

import math
from typing import Any

from numba import float64

from nexec.kernels.activations import LINEAR, RELU, SIGMOID, SOFTMAX, TANH
from nexec.kernels.cuda.backend import (
    MAX_THREADS,
    cdiv,
    config_1d,
    cuda,
    jit,
    max_blocks,
    max_threads,
    pow2_at_least,
)

__all__ = [
    "act_grad",
    "act_value",
    "activation_backward",
    "activation_forward",
    "check_act",
    "epilogue_grad",
    "softmax_rows",
    "zero_1d",
]

_ROWS_PER_THREAD = 16  # rows one thread of the fused dz/db kernel handles before a new block
_MAX_GRID_Y = 1024


def check_act(act: int, where: str) -> int:
    """Validates an activation code on the host (kernels cannot raise); returns it as int."""
    a = int(act)
    if a not in (LINEAR, RELU, SIGMOID, TANH, SOFTMAX):
        raise ValueError(f"{where}: unknown activation code {act!r}")
    return a


# --------------------------------------------------------------------------- device functions


@jit(device=True)
def act_value(v, act):
    """act(v) for LINEAR/RELU/SIGMOID/TANH (softmax is row-wise: :func:`softmax_rows`).

    The sigmoid takes ``exp`` of a non-positive argument only, so it never overflows.
    """
    if act == RELU:
        return v if v > 0 else 0.0
    if act == SIGMOID:
        if v >= 0:
            return 1.0 / (1.0 + math.exp(-v))
        e = math.exp(v)
        return e / (1.0 + e)
    if act == TANH:
        return math.tanh(v)
    return v


@jit(device=True)
def act_grad(y, g, act):
    """g * act'(y) with act' taken from the output y (LINEAR/RELU/SIGMOID/TANH)."""
    if act == RELU:
        return g if y > 0 else 0.0
    if act == SIGMOID:
        return g * (y * (1.0 - y))
    if act == TANH:
        return g * (1.0 - y * y)
    return g


# --------------------------------------------------------------------------- kernels


@jit
def _act_elementwise(x, act, out):
    rows = x.shape[0]
    cols = x.shape[1]
    for idx in range(cuda.grid(1), rows * cols, cuda.gridsize(1)):
        i = idx // cols
        j = idx - i * cols
        out[i, j] = act_value(x[i, j], act)


@jit
def _softmax_rows(x, out):
    """out[i] = softmax(x[i]) with one thread per row; out may be x."""
    rows = x.shape[0]
    cols = x.shape[1]
    for i in range(cuda.grid(1), rows, cuda.gridsize(1)):
        if cols > 0:
            m = x[i, 0]
            for j in range(1, cols):
                v = x[i, j]
                if v > m:  # noqa: PLR1730 - builtin max does not type on the CUDA target
                    m = v
            total = 0.0
            for j in range(cols):
                e = math.exp(x[i, j] - m)
                out[i, j] = e
                total += out[i, j]
            inv = 1.0 / total
            for j in range(cols):
                out[i, j] = out[i, j] * inv


@jit
def _act_grad_elementwise(y, dy, act, dx):
    rows = y.shape[0]
    cols = y.shape[1]
    for idx in range(cuda.grid(1), rows * cols, cuda.gridsize(1)):
        i = idx // cols
        j = idx - i * cols
        dx[i, j] = act_grad(y[i, j], dy[i, j], act)


@jit
def _softmax_grad_rows(y, dy, dx):
    """dx[i] = y[i] * (dy[i] - dot(dy[i], y[i])), one thread per row; dx may be dy."""
    rows = y.shape[0]
    cols = y.shape[1]
    for i in range(cuda.grid(1), rows, cuda.gridsize(1)):
        dot = 0.0
        for j in range(cols):
            dot += dy[i, j] * y[i, j]
        for j in range(cols):
            dx[i, j] = y[i, j] * (dy[i, j] - dot)


@jit
def _act_grad_db(y, dy, act, dz, db, use_atomic):
    """dz = dy * act'(y) and db = column sums of dz (float64 partials) in one kernel.

    Block ``(bx, by)``: ``threadIdx.x`` picks the column, ``threadIdx.y`` the first row;
    rows advance by ``gridDim.y * by``. ``by`` must be a power of two (tree reduction).
    ``use_atomic``: several blocks share a column, so they add into a zeroed ``db``.
    """
    rows = y.shape[0]
    cols = y.shape[1]
    nb = db.shape[0]
    part = cuda.shared.array(MAX_THREADS, float64)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    bx = cuda.blockDim.x
    by = cuda.blockDim.y
    t = ty * bx + tx
    for j0 in range(cuda.blockIdx.x * bx, cols, cuda.gridDim.x * bx):
        j = j0 + tx
        acc = 0.0
        if j < cols:
            for i in range(cuda.blockIdx.y * by + ty, rows, cuda.gridDim.y * by):
                dz[i, j] = act_grad(y[i, j], dy[i, j], act)
                acc += dz[i, j]  # the stored (rounded) value, as the CPU sums it
        part[t] = acc
        cuda.syncthreads()
        s = by // 2
        while s > 0:
            if ty < s:
                part[t] += part[t + s * bx]
            cuda.syncthreads()
            s //= 2
        if ty == 0 and j < cols and nb > 0:
            if use_atomic:
                cuda.atomic.add(db, j, part[tx])
            else:
                db[j] = part[tx]
        cuda.syncthreads()  # part is reused by the next column group


@jit
def _zero_1d(a):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] = 0


# --------------------------------------------------------------------------- host helpers


def zero_1d(a: Any, stream: Any = 0) -> None:
    """a[:] = 0 for a 1-D device array (no launch when empty)."""
    n = a.shape[0]
    if n == 0:
        return
    blocks, threads = config_1d(n)
    _zero_1d[blocks, threads, stream](a)


def softmax_rows(x: Any, out: Any, stream: Any = 0) -> None:
    """out = softmax(x) row-wise (``out`` may be ``x``): the second pass of fused epilogues."""
    rows = x.shape[0]
    if rows == 0 or x.shape[1] == 0:
        return
    blocks, threads = config_1d(rows)
    _softmax_rows[blocks, threads, stream](x, out)


def _grad_db_config(rows: int, cols: int) -> tuple[tuple[int, int], tuple[int, int]]:
    bx = pow2_at_least(cols, 32)
    by = pow2_at_least(cdiv(rows, _ROWS_PER_THREAD), max(1, max_threads() // bx))
    cap = max_blocks(two_d=True)
    grid = (min(cdiv(cols, bx), cap),
            min(cdiv(rows, by * _ROWS_PER_THREAD), _MAX_GRID_Y, cap))
    return grid, (bx, by)


def epilogue_grad(y: Any, dy: Any, act: int, dz: Any, db: Any, stream: Any = 0) -> None:
    """dz = dy * act'(y) and db = column sums of dz (``db`` of shape (0,) skips them).

    The CUDA counterpart of the CPU ``epilogue_grad_rows``; ``dz`` may be ``dy``.
    """
    act = check_act(act, "epilogue_grad")
    rows = y.shape[0]
    cols = y.shape[1]
    if dy.shape != y.shape or dz.shape != y.shape:
        raise ValueError("epilogue_grad: y, dy and dz shapes differ")
    nb = db.shape[0]
    if nb != 0 and nb != cols:
        raise ValueError("epilogue_grad: db length differs from the channel count")
    if rows == 0 or cols == 0:
        zero_1d(db, stream)
        return
    if act == SOFTMAX:
        blocks, threads = config_1d(rows)
        _softmax_grad_rows[blocks, threads, stream](y, dy, dz)
        if nb == 0:
            return
        act, y, dy = LINEAR, dz, dz  # now only the column sums of dz remain
    elif nb == 0:
        blocks, threads = config_1d(rows * cols)
        _act_grad_elementwise[blocks, threads, stream](y, dy, act, dz)
        return
    grid, block = _grad_db_config(rows, cols)
    use_atomic = grid[1] > 1
    if use_atomic:
        zero_1d(db, stream)
    _act_grad_db[grid, block, stream](y, dy, act, dz, db, use_atomic)


# --------------------------------------------------------------------------- public launchers


def activation_forward(x: Any, act: int, out: Any, *, stream: Any = 0) -> None:
    """out = act(x), softmax row-wise over the last axis.

    Args:
        x: 2-D (rows, channels) device array.
        act: Activation code (``nexec.kernels.activations``).
        out: 2-D device array like ``x``; may be the same array as ``x``.
        stream: CUDA stream to launch on (keyword only; CUDA addition).
    """
    act = check_act(act, "activation_forward")
    if out.shape != x.shape:
        raise ValueError("activation_forward: x and out shapes differ")
    rows, cols = x.shape
    if rows * cols == 0:
        return
    if act == SOFTMAX:
        softmax_rows(x, out, stream)
        return
    blocks, threads = config_1d(rows * cols)
    _act_elementwise[blocks, threads, stream](x, act, out)


def activation_backward(y: Any, dy: Any, act: int, dx: Any, *, stream: Any = 0) -> None:
    """dx = dy * act'(y), with act' taken from the output ``y``.

    Args:
        y: 2-D activation output (device).
        dy: 2-D gradient with respect to ``y`` (device).
        act: Activation code.
        dx: 2-D destination (device); may be the same array as ``dy``.
        stream: CUDA stream (keyword only; CUDA addition).
    """
    act = check_act(act, "activation_backward")
    if dy.shape != y.shape or dx.shape != y.shape:
        raise ValueError("activation_backward: y, dy and dx shapes differ")
    rows, cols = y.shape
    if rows * cols == 0:
        return
    if act == SOFTMAX:
        blocks, threads = config_1d(rows)
        _softmax_grad_rows[blocks, threads, stream](y, dy, dx)
        return
    blocks, threads = config_1d(rows * cols)
    _act_grad_elementwise[blocks, threads, stream](y, dy, act, dx)
