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

The activations from ELU on (``nexec.kernels.activations``) are elementwise branches of
:func:`act_value` / :func:`act_grad`, computed in float64; log-softmax is a row kernel like
softmax (:func:`row_activation`). GELU and SiLU take their derivative from the input
(:func:`activation_backward_input`); :func:`act_grad` returns NaN for them, and the host
launchers refuse them where only the output is given.

Transcendentals of the first five run in the array's precision (``expf``/``tanhf`` for
float32); sums of a row or column are accumulated in float64, as on the CPU.
"""
from __future__ import annotations

import math
from typing import Any

from numba import float64

from nexec.kernels.activations import (
    CODES,
    ELU,
    EXPONENTIAL,
    GELU,
    HARD_SIGMOID,
    LEAKY_RELU,
    LEAKY_SLOPE,
    LINEAR,
    LOG_SOFTMAX,
    NEEDS_INPUT,
    RELU,
    RELU6,
    ROW_WISE,
    SELU,
    SELU_ALPHA,
    SELU_SCALE,
    SIGMOID,
    SILU,
    SOFTMAX,
    SOFTPLUS,
    SOFTSIGN,
    TANH,
)
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
    "activation_backward_input",
    "param_activation_forward",
    "param_activation_backward",
    "prelu_forward",
    "prelu_backward",
    "normalize_forward",
    "normalize_backward",
    "rescale_forward",
    "activation_forward",
    "check_act",
    "epilogue_grad",
    "row_activation",
    "softmax_rows",
    "zero_1d",
]

_ROWS_PER_THREAD = 16  # rows one thread of the fused dz/db kernel handles before a new block
_MAX_GRID_Y = 1024


def check_act(act: int, where: str) -> int:
    """Validates an activation code on the host (kernels cannot raise); returns it as int."""
    a = int(act)
    if a not in _KNOWN:
        raise ValueError(f"{where}: unknown activation code {act!r}")
    return a


_KNOWN = frozenset(CODES.values())


def _check_from_output(act: int, where: str) -> None:
    if act in NEEDS_INPUT:
        raise ValueError(f"{where}: activation code {act} (GELU/SiLU) takes its derivative "
                         "from the input: use activation_backward_input")


# --------------------------------------------------------------------------- device functions


_SQRT1_2 = 0.70710678118654752440
_INV_SQRT_2PI = 0.39894228040143267794


@jit(device=True)
def _sigmoid64(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@jit(device=True)
def _clip(x, lo, hi):
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


@jit(device=True)
def _act_value_more(v, act):
    """The elementwise codes from ELU on, in float64."""
    x = float64(v)
    if act == ELU:
        return x if x > 0 else math.expm1(x)
    if act == SELU:
        return SELU_SCALE * x if x > 0 else (SELU_SCALE * SELU_ALPHA) * math.expm1(x)
    if act == GELU:
        return 0.5 * x * (1.0 + math.erf(x * _SQRT1_2))
    if act == SILU:
        return x * _sigmoid64(x)
    if act == LEAKY_RELU:
        return x if x >= 0 else LEAKY_SLOPE * x
    if act == RELU6:
        return _clip(x, 0.0, 6.0)
    if act == SOFTPLUS:
        return _clip(x, 0.0, math.inf) + math.log1p(math.exp(-abs(x)))
    if act == SOFTSIGN:
        return x / (1.0 + abs(x))
    if act == HARD_SIGMOID:
        return _clip(x + 3.0, 0.0, 6.0) / 6.0
    if act == EXPONENTIAL:
        return math.exp(x)
    return x


@jit(device=True)
def act_value(v, act):
    """act(v) for the elementwise codes (softmax, log-softmax: :func:`row_activation`).

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
    if act >= ELU and act <= EXPONENTIAL:
        return _act_value_more(v, act)
    return v


@jit(device=True)
def _act_grad_more(y, g, act):
    """g * act'(y) from the output, codes from ELU on, in float64 (NaN for GELU/SiLU)."""
    v = float64(y)
    gv = float64(g)
    if act == ELU:
        return gv if v > 0 else gv * (v + 1.0)
    if act == SELU:
        return gv * SELU_SCALE if v > 0 else gv * (v + SELU_SCALE * SELU_ALPHA)
    if act == LEAKY_RELU:
        return gv if v > 0 else gv * LEAKY_SLOPE
    if act == RELU6:
        return gv if v > 0.0 and v < 6.0 else 0.0
    if act == SOFTPLUS:
        return -gv * math.expm1(-v)
    if act == SOFTSIGN:
        a = 1.0 - abs(v)
        return gv * (a * a)
    if act == HARD_SIGMOID:
        return gv / 6.0 if v > 0.0 and v < 1.0 else 0.0
    if act == EXPONENTIAL:
        return gv * v
    return math.nan


@jit(device=True)
def act_grad(y, g, act):
    """g * act'(y) with act' taken from the output y (the elementwise codes)."""
    if act == RELU:
        return g if y > 0 else 0.0
    if act == SIGMOID:
        return g * (y * (1.0 - y))
    if act == TANH:
        return g * (1.0 - y * y)
    if act >= ELU and act <= EXPONENTIAL:
        return _act_grad_more(y, g, act)
    return g


@jit(device=True)
def act_grad_input(x, g, act):
    """g * act'(x) from the input x, for GELU and SiLU, in float64."""
    z = float64(x)
    gv = float64(g)
    if act == GELU:
        return gv * (0.5 * (1.0 + math.erf(z * _SQRT1_2))
                     + z * _INV_SQRT_2PI * math.exp(-0.5 * z * z))
    s = _sigmoid64(z)
    return gv * (s * (1.0 + z * (1.0 - s)))


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
def _log_softmax_rows(x, out):
    """out[i] = log_softmax(x[i]) with one thread per row; out may be x."""
    rows = x.shape[0]
    cols = x.shape[1]
    for i in range(cuda.grid(1), rows, cuda.gridsize(1)):
        if cols > 0:
            m = float64(x[i, 0])
            for j in range(1, cols):
                v = float64(x[i, j])
                if v > m:  # noqa: PLR1730 - builtin max does not type on the CUDA target
                    m = v
            total = 0.0
            for j in range(cols):
                total += math.exp(float64(x[i, j]) - m)
            shift = m + math.log(total)
            for j in range(cols):
                out[i, j] = x[i, j] - shift


@jit
def _log_softmax_grad_rows(y, dy, dx):
    """dx[i] = dy[i] - exp(y[i]) * sum(dy[i]), one thread per row; dx may be dy."""
    rows = y.shape[0]
    cols = y.shape[1]
    for i in range(cuda.grid(1), rows, cuda.gridsize(1)):
        total = 0.0
        for j in range(cols):
            total += dy[i, j]
        for j in range(cols):
            dx[i, j] = dy[i, j] - math.exp(float64(y[i, j])) * total


@jit
def _act_grad_input_elementwise(x, dy, act, dx):
    rows = x.shape[0]
    cols = x.shape[1]
    for idx in range(cuda.grid(1), rows * cols, cuda.gridsize(1)):
        i = idx // cols
        j = idx - i * cols
        dx[i, j] = act_grad_input(x[i, j], dy[i, j], act)


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


def row_activation(x: Any, act: int, out: Any, stream: Any = 0) -> None:
    """out = act(x) row-wise for SOFTMAX or LOG_SOFTMAX (``out`` may be ``x``): the second
    pass of fused epilogues whose GEMM ran with LINEAR."""
    if act == LOG_SOFTMAX:
        rows = x.shape[0]
        if rows == 0 or x.shape[1] == 0:
            return
        blocks, threads = config_1d(rows)
        _log_softmax_rows[blocks, threads, stream](x, out)
    else:
        softmax_rows(x, out, stream)


def _row_grad(y: Any, dy: Any, act: int, dx: Any, stream: Any) -> None:
    blocks, threads = config_1d(y.shape[0])
    if act == SOFTMAX:
        _softmax_grad_rows[blocks, threads, stream](y, dy, dx)
    else:
        _log_softmax_grad_rows[blocks, threads, stream](y, dy, dx)


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
    _check_from_output(act, "epilogue_grad")
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
    if act in ROW_WISE:
        _row_grad(y, dy, act, dz, stream)
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
    if act in ROW_WISE:
        row_activation(x, act, out, stream)
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
    _check_from_output(act, "activation_backward")
    if dy.shape != y.shape or dx.shape != y.shape:
        raise ValueError("activation_backward: y, dy and dx shapes differ")
    rows, cols = y.shape
    if rows * cols == 0:
        return
    if act in ROW_WISE:
        _row_grad(y, dy, act, dx, stream)
        return
    blocks, threads = config_1d(rows * cols)
    _act_grad_elementwise[blocks, threads, stream](y, dy, act, dx)


def activation_backward_input(x: Any, dy: Any, act: int, dx: Any, *, stream: Any = 0) -> None:
    """dx = dy * act'(x) from the activation's input, for GELU and SiLU.

    Args:
        x: 2-D activation input (device).
        dy: 2-D gradient with respect to the output (device).
        act: GELU or SILU.
        dx: 2-D destination (device); may be the same array as ``dy``.
        stream: CUDA stream (keyword only; CUDA addition).
    """
    if int(act) not in NEEDS_INPUT:
        raise ValueError(f"activation_backward_input: code {act!r} is not GELU or SILU")
    if dy.shape != x.shape or dx.shape != x.shape:
        raise ValueError("activation_backward_input: x, dy and dx shapes differ")
    rows, cols = x.shape
    if rows * cols == 0:
        return
    blocks, threads = config_1d(rows * cols)
    _act_grad_input_elementwise[blocks, threads, stream](x, dy, int(act), dx)


# --------------------------------------------------------------------------- activation layers
# Twins of the CPU kernels of ReLU/LeakyReLU/ELU (``param_activation_*``), PReLU,
# Normalization and Rescaling; codes and constants from the CPU module.

_PARAM_ELU = 1
_NORM_EPSILON = 1e-7


@jit(device=True)
def _param_value(x, kind, a, b, c):
    v = float64(x)
    if kind == _PARAM_ELU:
        return v if v > 0 else a * math.expm1(v)
    p = v if v > c else 0.0
    if b != math.inf:
        p = _clip(p, 0.0, b)
    n = c - v
    return p - a * n if n > 0 else p


@jit(device=True)
def _param_grad(x, g, kind, a, b, c):
    v = float64(x)
    gv = float64(g)
    if kind == _PARAM_ELU:
        return gv if v > 0 else gv * a * math.exp(v)
    d = 0.0
    if v > c and (b == math.inf or (v > 0.0 and v < b)):
        d = 1.0
    if v < c:
        d += a
    return gv * d


@jit
def _param_forward(x, kind, a, b, c, out):
    rows = x.shape[0]
    cols = x.shape[1]
    for idx in range(cuda.grid(1), rows * cols, cuda.gridsize(1)):
        i = idx // cols
        j = idx - i * cols
        out[i, j] = _param_value(x[i, j], kind, a, b, c)


@jit
def _param_backward(x, dy, kind, a, b, c, dx):
    rows = x.shape[0]
    cols = x.shape[1]
    for idx in range(cuda.grid(1), rows * cols, cuda.gridsize(1)):
        i = idx // cols
        j = idx - i * cols
        dx[i, j] = _param_grad(x[i, j], dy[i, j], kind, a, b, c)


@jit
def _prelu_forward(x, alpha, out):
    rows = x.shape[0]
    cols = x.shape[1]
    for idx in range(cuda.grid(1), rows * cols, cuda.gridsize(1)):
        i = idx // cols
        j = idx - i * cols
        v = x[i, j]
        out[i, j] = v if v >= 0 else alpha[j] * v


@jit
def _prelu_backward(x, alpha, dy, dx, dalpha, write):
    """One thread per column: dx, and dalpha summed in float64 (deterministic)."""
    for j in range(cuda.grid(1), x.shape[1], cuda.gridsize(1)):
        acc = 0.0
        for i in range(x.shape[0]):
            v = x[i, j]
            g = dy[i, j]
            if v < 0:
                acc += float64(g) * v
            if write:
                dx[i, j] = g if v > 0 else alpha[j] * g
        dalpha[j] = acc


@jit
def _normalize_forward(x, mean, variance, invert, out):
    rows = x.shape[0]
    cols = x.shape[1]
    for idx in range(cuda.grid(1), rows * cols, cuda.gridsize(1)):
        i = idx // cols
        j = idx - i * cols
        sd = _clip(math.sqrt(float64(variance[j])), _NORM_EPSILON, math.inf)
        if invert:
            out[i, j] = mean[j] + x[i, j] * sd
        else:
            out[i, j] = (x[i, j] - mean[j]) / sd


@jit
def _normalize_backward(variance, dy, invert, dx):
    rows = dy.shape[0]
    cols = dy.shape[1]
    for idx in range(cuda.grid(1), rows * cols, cuda.gridsize(1)):
        i = idx // cols
        j = idx - i * cols
        sd = _clip(math.sqrt(float64(variance[j])), _NORM_EPSILON, math.inf)
        dx[i, j] = dy[i, j] * sd if invert else dy[i, j] / sd


@jit
def _rescale(x, scale, offset, out):
    rows = x.shape[0]
    cols = x.shape[1]
    for idx in range(cuda.grid(1), rows * cols, cuda.gridsize(1)):
        i = idx // cols
        j = idx - i * cols
        out[i, j] = x[i, j] * scale + offset


def _launch_2d(kernel_fn: Any, a: Any, stream: Any, *args: Any) -> None:
    n = a.shape[0] * a.shape[1]
    if n == 0:
        return
    blocks, threads = config_1d(n)
    kernel_fn[blocks, threads, stream](*args)


def param_activation_forward(x: Any, kind: int, a: float, b: float, c: float, out: Any, *,
                             stream: Any = 0) -> None:
    """out = f(x) for ReLU/LeakyReLU/ELU layers (see the CPU kernel); ``out`` may be ``x``."""
    if out.shape != x.shape:
        raise ValueError("param_activation_forward: x and out shapes differ")
    _launch_2d(_param_forward, x, stream, x, int(kind), float(a), float(b), float(c), out)


def param_activation_backward(x: Any, dy: Any, kind: int, a: float, b: float, c: float,
                              dx: Any, *, stream: Any = 0) -> None:
    """dx = dy * f'(x) from the input; ``dx`` may be ``dy``."""
    if dy.shape != x.shape or dx.shape != x.shape:
        raise ValueError("param_activation_backward: x, dy and dx shapes differ")
    _launch_2d(_param_backward, x, stream, x, dy, int(kind), float(a), float(b), float(c), dx)


def prelu_forward(x: Any, alpha: Any, out: Any, *, stream: Any = 0) -> None:
    """out = x if x >= 0 else alpha[j] * x."""
    if out.shape != x.shape or alpha.shape[0] != x.shape[1]:
        raise ValueError("prelu_forward: x, alpha and out shapes do not match")
    _launch_2d(_prelu_forward, x, stream, x, alpha, out)


def prelu_backward(x: Any, alpha: Any, dy: Any, dx: Any, dalpha: Any, *,
                   stream: Any = 0) -> None:
    """dx (skipped for zero rows) and dalpha = column sums of dy * min(x, 0)."""
    if dy.shape != x.shape or alpha.shape[0] != x.shape[1] or dalpha.shape != alpha.shape:
        raise ValueError("prelu_backward: x, alpha, dy and dalpha shapes do not match")
    write = dx.shape[0] != 0
    if x.shape[1] == 0:
        return
    blocks, threads = config_1d(x.shape[1])
    _prelu_backward[blocks, threads, stream](x, alpha, dy, dx if write else dy, dalpha, write)


def normalize_forward(x: Any, mean: Any, variance: Any, invert: bool, out: Any, *,
                      stream: Any = 0) -> None:
    """Keras' Normalization on the last axis (see the CPU kernel)."""
    if out.shape != x.shape or mean.shape[0] != x.shape[1] or variance.shape != mean.shape:
        raise ValueError("normalize_forward: x, mean, variance and out shapes do not match")
    _launch_2d(_normalize_forward, x, stream, x, mean, variance, bool(invert), out)


def normalize_backward(variance: Any, dy: Any, invert: bool, dx: Any, *,
                       stream: Any = 0) -> None:
    """dx = dy / max(sqrt(var), 1e-7) (times it with ``invert``)."""
    if dx.shape != dy.shape or variance.shape[0] != dy.shape[1]:
        raise ValueError("normalize_backward: variance, dy and dx shapes do not match")
    _launch_2d(_normalize_backward, dy, stream, variance, dy, bool(invert), dx)


def rescale_forward(x: Any, scale: float, offset: float, out: Any, *, stream: Any = 0) -> None:
    """out = x * scale + offset; ``out`` may be ``x``."""
    if out.shape != x.shape:
        raise ValueError("rescale_forward: x and out shapes differ")
    _launch_2d(_rescale, x, stream, x, float(scale), float(offset), out)
