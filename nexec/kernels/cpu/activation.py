"""Activation kernels and the row helpers that other CPU kernels fuse into their epilogues.

Dense, convolution and merge kernels finish with "add a bias, apply the activation"; doing
that in one pass over a row that is still in cache is what makes the fusion pay. The row
helpers here (:func:`activate_row`, :func:`activate_row_grad`, :func:`epilogue_rows`,
:func:`epilogue_grad_rows`, ...) are ordinary ``@kernel`` functions, so other modules call them
from inside their own njit code, where LLVM inlines them.

Every 2-D argument is a ``(rows, channels)`` view with unit column stride; the row stride may
be larger than the number of channels (a slice of a concatenated buffer). Derivatives are
computed from the activation *output* ``y`` (see ``nexec.kernels.activations``), except for
GELU and SiLU (``NEEDS_INPUT``), whose derivative :func:`activation_backward_input` takes
from the input; the output-based helpers refuse those two codes.

The activations added after the first five (ELU and above) share one scalar helper each
way (:func:`act_scalar`, :func:`act_grad_scalar`), so adding one is one branch in each.
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload

from nexec.kernels.activations import (
    ELU,
    EXPONENTIAL,
    GELU,
    HARD_SIGMOID,
    LEAKY_RELU,
    LEAKY_SLOPE,
    LINEAR,
    LOG_SOFTMAX,
    RELU,
    RELU6,
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
from nexec.kernels.cpu.blas import unit_row
from nexec.kernels.cpu.fastmath32 import exp32
from nexec.kernels.cpu.opaque import one_like
from nexec.kernels.cpu.stack import stack_array
from nexec.kernels.jit import kernel, switch_kernel

__all__ = [
    "activation_forward",
    "activation_backward",
    "activation_backward_input",
    "PARAM_RELU",
    "PARAM_ELU",
    "NORM_EPSILON",
    "param_activation_forward",
    "param_activation_backward",
    "prelu_forward",
    "prelu_backward",
    "normalize_forward",
    "normalize_backward",
    "rescale_forward",
    "act_scalar",
    "act_grad_scalar",
    "act_grad_input_scalar",
    "epilogue_rows",
    "epilogue_softmax_rows",
    "epilogue_grad_rows",
    "epilogue_grad_rows_add",
    "activate_row",
    "activate_row_grad",
    "activate_row_inplace",
    "copy_row",
    "same_data",
    "fast_exp",
    "fast_tanh",
    "fast_sigmoid",
    "row_sum",
    "row_dot",
]


# --- Scalar math -------------------------------------------------------------------------
# Numba lowers np.exp / np.tanh to scalar libm calls (no SVML here), which costs more than
# the GEMM they follow, and ``a / b`` checks for zero (ZeroDivisionError) unless written as
# np.divide. The functions below are branch-free polynomials that LLVM vectorizes; they are
# accurate to about 1 ulp in float64 over the whole range, including inf, nan and underflow.

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that n * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10


@intrinsic
def _f64_from_bits(typingctx, bits):
    """Reinterprets an int64 as the float64 with the same bits (builds 2**n)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[0], signature.args[0], types.int64)
        return builder.bitcast(value, ir.DoubleType())

    return types.float64(bits), codegen


@kernel
def _expm1_reduced(r):
    """expm1(r) for |r| <= ln(2)/2: Taylor polynomial of degree 13 (error < 2e-17)."""
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    return p * r


@kernel
def fast_exp(v):
    """exp(v) in float64, vectorizable; inf, -inf, nan and underflow behave like np.exp."""
    x = np.float64(v)
    if x > 710.0:
        x = 710.0  # overflows to inf below
    if x < -746.0:
        x = -746.0  # underflows to 0 below
    n = np.floor(x * _LOG2E + 0.5)
    if n != n:
        n = 0.0  # nan input: keep the integer conversion defined; nan propagates through r
    r = (x - n * _LN2_HI) - n * _LN2_LO
    k = np.int64(n)
    k1 = k >> 1  # 2**k in two factors, each a normal number, to reach the denormal range
    k2 = k - k1
    return ((_expm1_reduced(r) + 1.0) * _f64_from_bits((k1 + 1023) << 52)
            * _f64_from_bits((k2 + 1023) << 52))


@kernel
def fast_tanh(v):
    """tanh(v) in float64 via expm1(-2|v|) (no cancellation near 0), vectorizable."""
    a = abs(np.float64(v))
    if a > 20.0:
        a = 20.0  # tanh(20) rounds to 1
    x = -2.0 * a
    n = np.floor(x * _LOG2E + 0.5)
    if n != n:
        n = 0.0
    r = (x - n * _LN2_HI) - n * _LN2_LO
    s = _f64_from_bits((np.int64(n) + 1023) << 52)
    em = s * _expm1_reduced(r) + (s - 1.0)  # expm1(-2a), in (-1, 0]
    return np.copysign(np.divide(-em, 2.0 + em), v)


@kernel
def fast_sigmoid(v):
    """1 / (1 + exp(-v)) in float64, vectorizable; exp overflow gives the exact limit 0."""
    return np.divide(1.0, 1.0 + fast_exp(-np.float64(v)))


@kernel
def row_sum(a):
    """Sum of a 1-D row in float64 (four partial sums, so it pipelines)."""
    n = a.shape[0]
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    j = 0
    while j + 4 <= n:
        s0 += a[j]
        s1 += a[j + 1]
        s2 += a[j + 2]
        s3 += a[j + 3]
        j += 4
    while j < n:
        s0 += a[j]
        j += 1
    return (s0 + s1) + (s2 + s3)


@kernel
def row_dot(a, b):
    """Dot product of two 1-D rows in float64 (four partial sums)."""
    n = a.shape[0]
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    j = 0
    while j + 4 <= n:
        s0 += np.float64(a[j]) * b[j]
        s1 += np.float64(a[j + 1]) * b[j + 1]
        s2 += np.float64(a[j + 2]) * b[j + 2]
        s3 += np.float64(a[j + 3]) * b[j + 3]
        j += 4
    while j < n:
        s0 += np.float64(a[j]) * b[j]
        j += 1
    return (s0 + s1) + (s2 + s3)


def exp_typed(v):
    """exp in the precision of ``v``: float32 data ``exp32``, float64 ``fast_exp``; njit
    code only."""
    raise NotImplementedError


@overload(exp_typed)
def _exp_typed(v):
    if v == types.float32:
        return lambda v: exp32(v)
    return lambda v: fast_exp(v)


@kernel
def _softmax_scale(s, o):
    """o = s / sum(s) for one row of exps; the sum in float64, one accumulator (a softmax row
    is short: four partial sums cost more than they pipeline)."""
    total = 0.0
    for j in range(s.shape[0]):
        total += np.float64(s[j])
    inv = np.divide(1.0, total)
    for j in range(s.shape[0]):
        o[j] = s[j] * inv


@kernel
def _softmax_scale_rows(s, o):
    """``_softmax_scale`` of every row of ``s`` into ``o``, same bits, four rows at a time.

    A short row's float64 sum is a chain of dependent adds and its reciprocal a division:
    one row at a time, each waits for the last (about 35 ns per 10-wide row); four
    interleaved chains overlap (3.7x faster on 128 x 10, 2x on 128 x 100).
    """
    rows = s.shape[0]
    cols = s.shape[1]
    i = 0
    while i + 4 <= rows:
        s0 = s[i]
        s1 = s[i + 1]
        s2 = s[i + 2]
        s3 = s[i + 3]
        t0 = 0.0
        t1 = 0.0
        t2 = 0.0
        t3 = 0.0
        for j in range(cols):
            t0 += np.float64(s0[j])
            t1 += np.float64(s1[j])
            t2 += np.float64(s2[j])
            t3 += np.float64(s3[j])
        _scale_row(s0, np.divide(1.0, t0), o[i])
        _scale_row(s1, np.divide(1.0, t1), o[i + 1])
        _scale_row(s2, np.divide(1.0, t2), o[i + 2])
        _scale_row(s3, np.divide(1.0, t3), o[i + 3])
        i += 4
    for r in range(i, rows):
        _softmax_scale(s[r], o[r])


@kernel
def _scale_row(s, inv, o):
    for j in range(s.shape[0]):
        o[j] = s[j] * inv


@kernel
def _softmax_row_inplace(o):
    n = o.shape[0]
    if n == 0:
        return
    m = o[0]
    for j in range(1, n):
        if o[j] > m:
            m = o[j]
    for j in range(n):
        o[j] = exp_typed(o[j] - m)
    _softmax_scale(o, o)


@kernel
def _log_softmax_row_inplace(o):
    n = o.shape[0]
    if n == 0:
        return
    m = o[0]
    for j in range(1, n):
        if o[j] > m:
            m = o[j]
    total = 0.0
    for j in range(n):
        total += math.exp(o[j] - m)
    shift = m + math.log(total)
    for j in range(n):
        o[j] = o[j] - shift


_SQRT1_2 = 0.70710678118654752440  # 1 / sqrt(2)
_INV_SQRT_2PI = 0.39894228040143267794  # 1 / sqrt(2 pi)


@kernel
def act_scalar(v, act):
    """act(v) in float64 for one element, for the elementwise codes from ELU on."""
    x = np.float64(v)
    if act == ELU:
        return x if x > 0 else math.expm1(x)
    if act == SELU:
        return SELU_SCALE * x if x > 0 else (SELU_SCALE * SELU_ALPHA) * math.expm1(x)
    if act == GELU:
        return 0.5 * x * (1.0 + math.erf(x * _SQRT1_2))
    if act == SILU:
        return x * fast_sigmoid(x)
    if act == LEAKY_RELU:
        return x if x >= 0 else LEAKY_SLOPE * x
    if act == RELU6:
        return min(max(x, 0.0), 6.0)
    if act == SOFTPLUS:
        return max(x, 0.0) + math.log1p(math.exp(-abs(x)))
    if act == SOFTSIGN:
        return np.divide(x, 1.0 + abs(x))
    if act == HARD_SIGMOID:
        return min(max(x + 3.0, 0.0), 6.0) / 6.0
    if act == EXPONENTIAL:
        return math.exp(x)
    raise ValueError("act_scalar: not an elementwise activation code from ELU on")


@kernel
def act_grad_scalar(y, g, act):
    """g * act'(z) in float64 from the output y = act(z), for the codes from ELU on.

    GELU and SiLU are refused: their derivative needs the input (:func:`act_grad_input_scalar`).
    """
    v = np.float64(y)
    gv = np.float64(g)
    if act == ELU:
        return gv if v > 0 else gv * (v + 1.0)
    if act == SELU:
        return gv * SELU_SCALE if v > 0 else gv * (v + SELU_SCALE * SELU_ALPHA)
    if act == LEAKY_RELU:
        return gv if v > 0 else gv * LEAKY_SLOPE
    if act == RELU6:
        return gv if 0.0 < v < 6.0 else 0.0
    if act == SOFTPLUS:
        return -gv * math.expm1(-v)  # sigmoid(z) = 1 - exp(-softplus(z))
    if act == SOFTSIGN:
        a = 1.0 - abs(v)
        return gv * (a * a)
    if act == HARD_SIGMOID:
        return gv / 6.0 if 0.0 < v < 1.0 else 0.0
    if act == EXPONENTIAL:
        return gv * v
    raise ValueError("act_grad_scalar: this activation's derivative needs its input")


@kernel
def act_grad_input_scalar(x, g, act):
    """g * act'(x) in float64 from the input x, for GELU and SiLU (``NEEDS_INPUT``)."""
    z = np.float64(x)
    gv = np.float64(g)
    if act == GELU:
        return gv * (0.5 * (1.0 + math.erf(z * _SQRT1_2))
                     + z * _INV_SQRT_2PI * math.exp(-0.5 * z * z))
    if act == SILU:
        s = fast_sigmoid(z)
        return gv * (s * (1.0 + z * (1.0 - s)))
    raise ValueError("act_grad_input_scalar: only GELU and SILU take the input")


@kernel
def same_data(a, b):
    """True when two arrays start at the same address (an in-place call).

    LLVM vectorizes ``o[j] = f(s[j])`` only after a runtime check that ``s`` and ``o`` do not
    overlap, so an exactly aliased call would silently run scalar. Kernels detect that case
    and run loops written over one array instead.
    """
    return a.ctypes.data == b.ctypes.data


@kernel
def copy_row(s, o):
    """o[:] = s for 1-D rows (a no-op when they are the same memory)."""
    if not same_data(s, o):
        for j in range(s.shape[0]):
            o[j] = s[j]


@kernel
def activate_row_inplace(o, act):
    """o = act(o) for one 1-D row.

    Args:
        o: 1-D row, overwritten.
        act: Activation code (``nexec.kernels.activations``).
    """
    n = o.shape[0]
    if act == LINEAR:
        pass
    elif act == RELU:
        keep = one_like(o)  # an ordinary store, not a masked one (.opaque)
        for j in range(n):
            v = o[j]
            o[j] = v * keep if v > 0 else 0
    elif act == SIGMOID:
        for j in range(n):
            o[j] = fast_sigmoid(o[j])
    elif act == TANH:
        for j in range(n):
            o[j] = fast_tanh(o[j])
    elif act == SOFTMAX:
        _softmax_row_inplace(o)
    elif act == LOG_SOFTMAX:
        _log_softmax_row_inplace(o)
    elif ELU <= act <= EXPONENTIAL:
        for j in range(n):
            o[j] = act_scalar(o[j], act)
    else:
        raise ValueError("unknown activation code")


@kernel
def activate_row(s, act, o):
    """o = act(s) for one row; ``o`` may be the same array as ``s``.

    Args:
        s: 1-D source row.
        act: Activation code (``nexec.kernels.activations``).
        o: 1-D destination row of the same length.
    """
    copy_row(s, o)
    activate_row_inplace(o, act)


@kernel
def activate_row_grad(y, dy, act, dx):
    """dx = dy * act'(y) for one row (the softmax Jacobian-vector product for SOFTMAX).

    Args:
        y: 1-D activation output row.
        dy: 1-D gradient with respect to ``y``.
        act: Activation code.
        dx: 1-D destination; may be the same array as ``dy`` (not as ``y``).
    """
    n = y.shape[0]
    dot = 0.0
    if act == SOFTMAX:
        dot = row_dot(dy, y)  # before dx overwrites dy
    elif act == LOG_SOFTMAX:
        dot = row_sum(dy)
    copy_row(dy, dx)
    if act == LINEAR:
        pass
    elif act == RELU:
        keep = one_like(dx)  # an ordinary store, not a masked one (.opaque)
        for j in range(n):
            dx[j] = dx[j] * keep if y[j] > 0 else 0
    elif act == SIGMOID:
        for j in range(n):
            v = y[j]
            dx[j] = dx[j] * (v * (1.0 - v))
    elif act == TANH:
        for j in range(n):
            v = y[j]
            dx[j] = dx[j] * (1.0 - v * v)
    elif act == SOFTMAX:
        for j in range(n):
            dx[j] = y[j] * (dx[j] - dot)
    elif act == LOG_SOFTMAX:
        for j in range(n):
            dx[j] = dx[j] - math.exp(y[j]) * dot
    elif ELU <= act <= EXPONENTIAL:
        for j in range(n):
            dx[j] = act_grad_scalar(y[j], dx[j], act)
    else:
        raise ValueError("unknown activation code")


# --- Whole blocks of rows ------------------------------------------------------------------
# The 2-D epilogues below work on blocks of _BLOCK rows that stay in cache between their
# passes, with the activation switch outside the row loops: dispatching per row (through
# activate_row_inplace / activate_row_grad) made them 2.4-5x slower on rows of 24-64
# channels. The element formulas are those of the row helpers above, so the bits are too.

_BLOCK = 256  # rows per cache-resident block (and per float64 partial sum of a bias gradient)


# Each activation's rows are a kernel of their own; the switches that pick one are inline
# kernels, so a kernel specialised for one activation (``nexec.kernels.jit.specialised``)
# compiles that activation's rows alone.

@kernel
def _relu_rows(o, r0, r1):
    n = o.shape[1]
    keep = one_like(o)  # an ordinary store, not a masked one (.opaque)
    for i in range(r0, r1):
        z = o[i]
        for j in range(n):
            v = z[j]
            z[j] = v * keep if v > 0 else 0


@kernel
def _sigmoid_rows(o, r0, r1):
    n = o.shape[1]
    for i in range(r0, r1):
        z = o[i]
        for j in range(n):
            z[j] = fast_sigmoid(z[j])


@kernel
def _tanh_rows(o, r0, r1):
    n = o.shape[1]
    for i in range(r0, r1):
        z = o[i]
        for j in range(n):
            z[j] = fast_tanh(z[j])


@kernel
def _softmax_each_row(o, r0, r1):
    for i in range(r0, r1):
        _softmax_row_inplace(o[i])


@kernel
def _log_softmax_each_row(o, r0, r1):
    for i in range(r0, r1):
        _log_softmax_row_inplace(o[i])


@kernel
def _scalar_rows(o, act, r0, r1):
    n = o.shape[1]
    for i in range(r0, r1):
        z = o[i]
        for j in range(n):
            z[j] = act_scalar(z[j], act)


@switch_kernel
def _activate_rows(o, act, r0, r1):
    """o[i] = act(o[i]) for rows r0..r1-1 of a 2-D array, as :func:`activate_row_inplace`."""
    if act == LINEAR:
        pass
    elif act == RELU:
        _relu_rows(o, r0, r1)
    elif act == SIGMOID:
        _sigmoid_rows(o, r0, r1)
    elif act == TANH:
        _tanh_rows(o, r0, r1)
    elif act == SOFTMAX:
        _softmax_each_row(o, r0, r1)
    elif act == LOG_SOFTMAX:
        _log_softmax_each_row(o, r0, r1)
    elif ELU <= act <= EXPONENTIAL:
        _scalar_rows(o, act, r0, r1)
    else:
        raise ValueError("unknown activation code")


@kernel
def _linear_grad_rows(dy, dz, r0, r1):
    n = dy.shape[1]
    # one check per block (copy_row per row cost 13x more)
    if not (same_data(dy, dz) and dy.strides == dz.strides):
        for i in range(r0, r1):
            g = dy[i]
            z = dz[i]
            for j in range(n):
                z[j] = g[j]


@kernel
def _relu_grad_rows(y, dy, dz, r0, r1):
    n = y.shape[1]
    if same_data(dy, dz) and dy.strides == dz.strides:  # in place: a loop over one array
        keep = one_like(dz)  # an ordinary store, not a masked one (.opaque)
        for i in range(r0, r1):
            yr = y[i]
            z = dz[i]
            for j in range(n):
                z[j] = z[j] * keep if yr[j] > 0 else 0
        return
    for i in range(r0, r1):
        yr = y[i]
        g = dy[i]
        z = dz[i]
        for j in range(n):
            gv = g[j]
            z[j] = gv if yr[j] > 0 else 0


@kernel
def _sigmoid_grad_rows(y, dy, dz, r0, r1):
    n = y.shape[1]
    if same_data(dy, dz) and dy.strides == dz.strides:  # in place: a loop over one array
        for i in range(r0, r1):  # (an exactly aliased pair fails LLVM's overlap check and
            yr = y[i]  # runs scalar: 2.3x slower on 32768 x 32 float32)
            z = dz[i]
            for j in range(n):
                v = yr[j]
                z[j] = z[j] * (v * (1.0 - v))
        return
    for i in range(r0, r1):
        yr = y[i]
        g = dy[i]
        z = dz[i]
        for j in range(n):
            v = yr[j]
            z[j] = g[j] * (v * (1.0 - v))


@kernel
def _tanh_grad_rows(y, dy, dz, r0, r1):
    n = y.shape[1]
    if same_data(dy, dz) and dy.strides == dz.strides:  # in place: as _sigmoid_grad_rows
        for i in range(r0, r1):
            yr = y[i]
            z = dz[i]
            for j in range(n):
                v = yr[j]
                z[j] = z[j] * (1.0 - v * v)
        return
    for i in range(r0, r1):
        yr = y[i]
        g = dy[i]
        z = dz[i]
        for j in range(n):
            v = yr[j]
            z[j] = g[j] * (1.0 - v * v)


@kernel
def _softmax_grad_rows(y, dy, dz, r0, r1):
    n = y.shape[1]
    for i in range(r0, r1):
        yr = y[i]
        g = dy[i]
        z = dz[i]
        dot = row_dot(g, yr)
        for j in range(n):
            z[j] = yr[j] * (g[j] - dot)


@kernel
def _log_softmax_grad_rows(y, dy, dz, r0, r1):
    n = y.shape[1]
    for i in range(r0, r1):
        yr = y[i]
        g = dy[i]
        z = dz[i]
        total = row_sum(g)
        for j in range(n):
            z[j] = g[j] - math.exp(yr[j]) * total


@kernel
def _scalar_grad_rows(y, dy, act, dz, r0, r1):
    n = y.shape[1]
    for i in range(r0, r1):
        yr = y[i]
        g = dy[i]
        z = dz[i]
        for j in range(n):
            z[j] = act_grad_scalar(yr[j], g[j], act)


@switch_kernel
def _activate_grad_rows(y, dy, act, dz, r0, r1):
    """dz[i] = dy[i] * act'(y[i]) for rows r0..r1-1, as :func:`activate_row_grad`.

    ``dz`` may be ``dy``: each element is read before it is written.
    """
    if act == LINEAR:
        _linear_grad_rows(dy, dz, r0, r1)
    elif act == RELU:
        _relu_grad_rows(y, dy, dz, r0, r1)
    elif act == SIGMOID:
        _sigmoid_grad_rows(y, dy, dz, r0, r1)
    elif act == TANH:
        _tanh_grad_rows(y, dy, dz, r0, r1)
    elif act == SOFTMAX:
        _softmax_grad_rows(y, dy, dz, r0, r1)
    elif act == LOG_SOFTMAX:
        _log_softmax_grad_rows(y, dy, dz, r0, r1)
    elif ELU <= act <= EXPONENTIAL:
        _scalar_grad_rows(y, dy, act, dz, r0, r1)
    else:
        raise ValueError("unknown activation code")


@kernel
def _epilogue_has_bias(src, bias, out):
    """Checks an epilogue's shapes; whether it adds a bias."""
    if out.shape != src.shape:
        raise ValueError("epilogue: src and out shapes differ")
    has_bias = bias.shape[0] > 0
    if has_bias and bias.shape[0] != src.shape[1]:
        raise ValueError("epilogue: bias length differs from the channel count")
    return has_bias


@kernel
def _bias_relu_rows(src, bias, out):
    """out = relu(src + bias) in one pass, the bits of the two passes of ``epilogue_rows``
    (the sum is rounded to the dtype before the comparison, as when it was stored)."""
    cols = src.shape[1]
    in_place = same_data(src, out) and src.strides == out.strides
    if in_place and (cols <= 1 or out.strides[1] == out.itemsize):
        # Over one array (an aliased pair would run scalar), each row typed contiguous (an
        # 'A' row view does not vectorise: 32768 x 32 slice of a concatenation 0.6-1.1 ms
        # against 0.24 ms).
        for i in range(src.shape[0]):
            o = unit_row(out, i)
            for j in range(cols):
                v = o[j] + bias[j]
                o[j] = v if v > 0 else 0
    elif in_place:
        for i in range(src.shape[0]):
            o = out[i]
            for j in range(cols):
                v = o[j] + bias[j]
                o[j] = v if v > 0 else 0
    else:
        for i in range(src.shape[0]):
            s = src[i]
            o = out[i]
            for j in range(cols):
                v = s[j] + bias[j]
                o[j] = v if v > 0 else 0


@switch_kernel
def epilogue_rows(src, bias, act, out):
    """out[i, j] = act(src[i, j] + bias[j]), softmax row-wise; the fused-epilogue helper.

    Args:
        src: 2-D (rows, channels), may be row-strided; may be the same array as ``out``.
        bias: 1-D (channels,), or shape (0,) for no bias.
        act: Activation code.
        out: 2-D (rows, channels), may be row-strided.
    """
    rows = src.shape[0]
    cols = src.shape[1]
    has_bias = _epilogue_has_bias(src, bias, out)
    if has_bias and act == RELU:  # the commonest pair in one pass (2x faster on 128 x 32)
        _bias_relu_rows(src, bias, out)
        return
    # In place without a bias (a convolution before BatchNormalization) there is nothing to
    # copy: no pass over the rows at all when the activation is linear.
    copy = has_bias or not (same_data(src, out) and src.strides == out.strides)
    for b0 in range(0, rows, _BLOCK):
        b1 = min(rows, b0 + _BLOCK)
        for i in range(b0, b1 if copy else b0):
            s = src[i]
            o = out[i]
            if not has_bias:
                copy_row(s, o)
            elif same_data(s, o):
                for j in range(cols):
                    o[j] += bias[j]
            else:
                for j in range(cols):
                    o[j] = s[j] + bias[j]
        _activate_rows(out, act, b0, b1)


_SOFTMAX_ROWS = 32  # rows per transposed block of epilogue_softmax_rows
_SOFTMAX_COLS = 32  # the widest row it transposes; wider rows take the row-wise form
_SOFTMAX_SCRATCH = _SOFTMAX_ROWS * _SOFTMAX_COLS


@kernel
def _softmax_rows_transposed(src, bias, has_bias, out):
    """``epilogue_softmax_rows`` for rows of at most ``_SOFTMAX_COLS`` channels, same bits.

    A row's max and float64 sum are short chains of dependent operations; each block of
    rows is copied (plus the bias) into stack scratch with the columns outermost, so that
    the max, the sum and the reciprocal run across 32 rows at once, and the shift and the
    exps are loops over the whole block that vectorize whatever the row width; then each
    row is scaled into ``out`` (1.7x faster than the row-wise form on 128 x 10 float32,
    1.2x on 128 x 32). Per row, every operation and its order are those of the row-wise
    form.
    """
    rows = src.shape[0]
    cols = src.shape[1]
    r = _SOFTMAX_ROWS
    t = stack_array(src, _SOFTMAX_SCRATCH)  # t[j * r + i] = element j of row b0 + i
    m = stack_array(src, _SOFTMAX_ROWS)
    inv = stack_array(0.0, _SOFTMAX_ROWS)
    for b0 in range(0, rows, r):
        nb = min(rows - b0, r)
        for i in range(nb):
            s = src[b0 + i]
            if has_bias:
                for j in range(cols):
                    t[j * r + i] = s[j] + bias[j]
            else:
                for j in range(cols):
                    t[j * r + i] = s[j]
        for i in range(nb):
            m[i] = t[i]
        keep = one_like(m)  # an ordinary store, not a masked one (.opaque)
        for j in range(1, cols):
            tj = t[j * r:j * r + nb]
            for i in range(nb):
                v = tj[i]
                mi = m[i]
                m[i] = v if v > mi else mi * keep
        for j in range(cols):
            tj = t[j * r:j * r + nb]
            for i in range(nb):
                tj[i] = tj[i] - m[i]
        for k in range((cols - 1) * r + nb):  # past nb in a short block: unused, harmless
            t[k] = exp_typed(t[k])
        for i in range(nb):
            inv[i] = 0.0
        for j in range(cols):
            tj = t[j * r:j * r + nb]
            for i in range(nb):
                inv[i] += np.float64(tj[i])
        for i in range(nb):
            inv[i] = np.divide(1.0, inv[i])
        for i in range(nb):
            o = out[b0 + i]
            q = inv[i]
            for j in range(cols):
                o[j] = t[j * r + i] * q


@kernel
def _softmax_rows_wide(src, bias, has_bias, out):
    """``epilogue_softmax_rows`` row by row, for wide rows: each row is shifted by its max
    in place, one flat loop takes the exps, then the rows are scaled four at a time."""
    rows = src.shape[0]
    cols = src.shape[1]
    for i in range(rows):
        s = src[i]
        if has_bias:
            for j in range(cols):
                s[j] += bias[j]
        m = s[0]
        for j in range(1, cols):
            if s[j] > m:
                m = s[j]
        for j in range(cols):
            s[j] = s[j] - m
    flat = src.reshape(rows * cols)
    for k in range(rows * cols):
        flat[k] = exp_typed(flat[k])
    _softmax_scale_rows(src, out)


@kernel
def epilogue_softmax_rows(src, bias, out):
    """``epilogue_rows`` for softmax, same bits, several times faster on narrow rows.

    A per-row exp loop over 10 classes is mostly loop remainder, and a row's max and sum
    are chains of dependent operations; rows of up to 32 channels are therefore worked on
    in transposed blocks (:func:`_softmax_rows_transposed`), wider ones row by row with one
    flat exp loop (:func:`_softmax_rows_wide`).

    Args:
        src: 2-D (rows, channels) C-contiguous; may be overwritten (scratch). May be ``out``.
        bias: 1-D (channels,), or shape (0,) for no bias.
        out: 2-D (rows, channels), may be row-strided.
    """
    cols = src.shape[1]
    has_bias = _epilogue_has_bias(src, bias, out)
    if cols == 0:
        return
    if cols <= _SOFTMAX_COLS:
        _softmax_rows_transposed(src, bias, has_bias, out)
    else:
        _softmax_rows_wide(src, bias, has_bias, out)


_SUM_COLS = 64  # columns per pass of _add_column_sums (float64 accumulators on the stack)


@kernel
def _add_column_sums(z, r0, r1, db):
    """db += column sums of rows r0..r1-1 of ``z``, accumulated in float64.

    Up to 64 columns per pass: each row is added into float64 accumulators on the stack, a
    loop across the columns that vectorizes, each column's sum in row order. Eight columns
    per pass (one add-latency-bound chain per column of a remainder) cost 2x more. Rows
    with a unit column stride go four per load and store of the accumulators (the same
    adds in the same order, one store-to-load round trip instead of four): 1.1-1.2x
    faster on 128 x 10, 32 and 64 float32.
    """
    cols = z.shape[1]
    acc = stack_array(0.0, _SUM_COLS)
    unit = cols <= 1 or z.strides[1] == z.itemsize
    for j0 in range(0, cols, _SUM_COLS):
        w = min(_SUM_COLS, cols - j0)
        for j in range(w):
            acc[j] = 0.0
        if unit:
            i = r0
            while i + 4 <= r1:  # four rows per load and store of acc, added in row order
                ra = unit_row(z, i)[j0:j0 + w]
                rb = unit_row(z, i + 1)[j0:j0 + w]
                rc = unit_row(z, i + 2)[j0:j0 + w]
                rd = unit_row(z, i + 3)[j0:j0 + w]
                for j in range(w):
                    acc[j] = (((acc[j] + ra[j]) + rb[j]) + rc[j]) + rd[j]
                i += 4
            for i in range(i, r1):
                r = unit_row(z, i)[j0:j0 + w]
                for j in range(w):
                    acc[j] += r[j]
        else:
            for i in range(r0, r1):
                r = z[i, j0:j0 + w]
                for j in range(w):
                    acc[j] += r[j]
        for j in range(w):
            db[j0 + j] += acc[j]


@switch_kernel
def epilogue_grad_rows_add(y, dy, act, dz, db):
    """dz = dy * act'(y) and db += column sums of dz; the blocked form of a backward epilogue.

    Kernels that walk their rows in blocks (convolution) call it once per block, so ``db``
    accumulates; :func:`epilogue_grad_rows` is the one-call form. Per 256 rows, the column
    sums are taken while the rows are cache resident, in float64, and added to ``db`` once,
    so a float32 ``db`` keeps about 1e-6 relative precision over long batches.

    Args:
        y: 2-D activation output, may be row-strided.
        dy: 2-D gradient with respect to ``y``, may be row-strided.
        act: Activation code.
        dz: 2-D destination, may be row-strided and may be the same array as ``dy``.
        db: 1-D (channels,), added to; shape (0,) skips the column sums.
    """
    rows = y.shape[0]
    cols = y.shape[1]
    if dy.shape != y.shape or dz.shape != y.shape:
        raise ValueError("epilogue_grad_rows: y, dy and dz shapes differ")
    nb = db.shape[0]
    if nb != 0 and nb != cols:
        raise ValueError("epilogue_grad_rows: db length differs from the channel count")
    for b0 in range(0, rows, _BLOCK):
        b1 = min(rows, b0 + _BLOCK)
        _activate_grad_rows(y, dy, act, dz, b0, b1)
        if nb > 0:
            _add_column_sums(dz, b0, b1, db)


@switch_kernel
def epilogue_grad_rows(y, dy, act, dz, db):
    """dz = dy * act'(y) and, in the same pass, db = column sums of dz.

    Args:
        y: 2-D activation output, may be row-strided.
        dy: 2-D gradient with respect to ``y``, may be row-strided.
        act: Activation code.
        dz: 2-D destination, may be row-strided and may be the same array as ``dy``.
        db: 1-D (channels,), overwritten; shape (0,) skips the column sums. Summed in
            float64 per 256 rows (see :func:`epilogue_grad_rows_add`).
    """
    for j in range(db.shape[0]):
        db[j] = 0
    epilogue_grad_rows_add(y, dy, act, dz, db)


@kernel
def activation_forward(x, act, out):
    """out = act(x), softmax row-wise over the last axis.

    Args:
        x: 2-D (rows, channels), may be row-strided.
        act: Activation code (``nexec.kernels.activations``).
        out: 2-D like ``x``, may be row-strided; may be the same array as ``x``.
    """
    if out.shape != x.shape:
        raise ValueError("activation_forward: x and out shapes differ")
    for i in range(x.shape[0]):
        activate_row(x[i], act, out[i])


@kernel
def activation_backward(y, dy, act, dx):
    """dx = dy * act'(y), with act' taken from the output ``y``.

    Args:
        y: 2-D activation output, may be row-strided.
        dy: 2-D gradient with respect to ``y``, may be row-strided.
        act: Activation code.
        dx: 2-D destination, may be row-strided; may be the same array as ``dy``.
    """
    if dy.shape != y.shape or dx.shape != y.shape:
        raise ValueError("activation_backward: y, dy and dx shapes differ")
    for i in range(y.shape[0]):
        activate_row_grad(y[i], dy[i], act, dx[i])


@kernel
def activation_backward_input(x, dy, act, dx):
    """dx = dy * act'(x) from the activation's *input*: GELU and SiLU (``NEEDS_INPUT``).

    Args:
        x: 2-D activation input, may be row-strided.
        dy: 2-D gradient with respect to the output, may be row-strided.
        act: GELU or SILU.
        dx: 2-D destination, may be row-strided; may be the same array as ``dy``.
    """
    if dy.shape != x.shape or dx.shape != x.shape:
        raise ValueError("activation_backward_input: x, dy and dx shapes differ")
    for i in range(x.shape[0]):
        xr = x[i]
        g = dy[i]
        d = dx[i]
        for j in range(x.shape[1]):
            d[j] = act_grad_input_scalar(xr[j], g[j], act)


# --- Activation layers with arguments (ReLU, LeakyReLU, ELU, PReLU) and preprocessing ------
# Their derivatives are taken from the input (a general ReLU's output is ambiguous), so their
# op kernels keep the input for backward.

#: ``kind`` of :func:`param_activation_forward`: Keras' ``ReLU(max_value, negative_slope,
#: threshold)`` (LeakyReLU is its ``negative_slope`` form) and ``ELU(alpha)``.
PARAM_RELU = 0
PARAM_ELU = 1
#: ``keras.backend.epsilon()``: Normalization divides by ``max(sqrt(variance), eps)``.
NORM_EPSILON = 1e-7


@kernel
def _param_value(x, kind, a, b, c):
    """PARAM_RELU: a = negative_slope, b = max_value (inf: none), c = threshold, as
    ``keras.activations.relu``: ``(x if x > c else 0)``, clipped to [0, b] when b is set,
    minus ``a * relu(c - x)``. PARAM_ELU: a = alpha."""
    v = np.float64(x)
    if kind == PARAM_ELU:
        return v if v > 0 else a * math.expm1(v)
    p = v if v > c else 0.0
    if b != np.inf:
        p = min(max(p, 0.0), b)
    n = c - v
    return p - a * n if n > 0 else p


@kernel
def _param_grad(x, g, kind, a, b, c):
    v = np.float64(x)
    gv = np.float64(g)
    if kind == PARAM_ELU:
        return gv if v > 0 else gv * a * math.exp(v)
    d = 0.0
    if v > c and (b == np.inf or 0.0 < v < b):
        d = 1.0
    if v < c:
        d += a
    return gv * d


@kernel
def param_activation_forward(x, kind, a, b, c, out):
    """out = f(x) for an activation layer with arguments (``PARAM_RELU``, ``PARAM_ELU``).

    Args:
        x: 2-D (rows, channels), may be row-strided.
        kind: ``PARAM_RELU`` or ``PARAM_ELU``.
        a, b, c: Its arguments (see ``_param_value``).
        out: 2-D like ``x``; may be ``x``.
    """
    if out.shape != x.shape:
        raise ValueError("param_activation_forward: x and out shapes differ")
    for i in range(x.shape[0]):
        xr = x[i]
        o = out[i]
        for j in range(x.shape[1]):
            o[j] = _param_value(xr[j], kind, a, b, c)


@kernel
def param_activation_backward(x, dy, kind, a, b, c, dx):
    """dx = dy * f'(x), from the layer's input; ``dx`` may be ``dy``."""
    if dy.shape != x.shape or dx.shape != x.shape:
        raise ValueError("param_activation_backward: x, dy and dx shapes differ")
    for i in range(x.shape[0]):
        xr = x[i]
        g = dy[i]
        d = dx[i]
        for j in range(x.shape[1]):
            d[j] = _param_grad(xr[j], g[j], kind, a, b, c)


@kernel
def prelu_forward(x, alpha, out):
    """out = x if x >= 0 else alpha[j] * x (Keras' PReLU: relu(x) - alpha * relu(-x)).

    Args:
        x: 2-D (rows, channels), may be row-strided (shared axes folded into the rows).
        alpha: 1-D (channels,).
        out: 2-D like ``x``; may be ``x``.
    """
    if out.shape != x.shape or alpha.shape[0] != x.shape[1]:
        raise ValueError("prelu_forward: x, alpha and out shapes do not match")
    for i in range(x.shape[0]):
        xr = x[i]
        o = out[i]
        for j in range(x.shape[1]):
            v = xr[j]
            o[j] = v if v >= 0 else alpha[j] * v


@kernel
def prelu_backward(x, alpha, dy, dx, dalpha):
    """dx = dy * (1 if x > 0 else alpha); dalpha = column sums of dy * min(x, 0) (float64).

    ``dx`` of zero rows is skipped; ``dx`` may be ``dy``.
    """
    if dy.shape != x.shape or alpha.shape[0] != x.shape[1] or dalpha.shape != alpha.shape:
        raise ValueError("prelu_backward: x, alpha, dy and dalpha shapes do not match")
    write = dx.shape[0] != 0
    cols = x.shape[1]
    for j in range(cols):
        acc = 0.0
        for i in range(x.shape[0]):
            v = x[i, j]
            g = dy[i, j]
            if v < 0:
                acc += np.float64(g) * v
            if write:
                dx[i, j] = g if v > 0 else alpha[j] * g
        dalpha[j] = acc


@kernel
def normalize_forward(x, mean, variance, invert, out):
    """Keras' Normalization on the last axis: ``(x - mean) / max(sqrt(var), 1e-7)``, or
    ``mean + x * max(sqrt(var), 1e-7)`` with ``invert``.

    Args:
        x: 2-D (rows, channels). mean, variance: 1-D (channels,). out: like ``x``.
    """
    if out.shape != x.shape or mean.shape[0] != x.shape[1] or variance.shape != mean.shape:
        raise ValueError("normalize_forward: x, mean, variance and out shapes do not match")
    for j in range(x.shape[1]):
        sd = max(math.sqrt(variance[j]), NORM_EPSILON)
        m = mean[j]
        for i in range(x.shape[0]):
            if invert:
                out[i, j] = m + x[i, j] * sd
            else:
                out[i, j] = (x[i, j] - m) / sd


@kernel
def normalize_backward(variance, dy, invert, dx):
    """dx = dy / max(sqrt(var), 1e-7) (times it with ``invert``); ``dx`` may be ``dy``."""
    if dx.shape != dy.shape or variance.shape[0] != dy.shape[1]:
        raise ValueError("normalize_backward: variance, dy and dx shapes do not match")
    for j in range(dy.shape[1]):
        sd = max(math.sqrt(variance[j]), NORM_EPSILON)
        for i in range(dy.shape[0]):
            dx[i, j] = dy[i, j] * sd if invert else dy[i, j] / sd


@kernel
def rescale_forward(x, scale, offset, out):
    """out = x * scale + offset (Keras' Rescaling); ``out`` may be ``x``."""
    if out.shape != x.shape:
        raise ValueError("rescale_forward: x and out shapes differ")
    for i in range(x.shape[0]):
        xr = x[i]
        o = out[i]
        for j in range(x.shape[1]):
            o[j] = xr[j] * scale + offset
