"""Float32 elementary functions for float32 models: exp, sigmoid, tanh in float32 arithmetic.

NumPy-compatible float64 versions live in :mod:`.activation` (``fast_exp``, ...): 4 lanes per
AVX2 register, a degree-13 polynomial, no FMA. For float32 data these stay in float32 (8
lanes, degree 7, FMA contraction allowed in these helpers only, within 2 ulp of the exact
value): an LSTM's gate pass got ~5x cheaper and a 10-class softmax ~2x (docs/performance.md).
Kernels choose by the value's type, so float64 models keep the float64 functions and their
results (within 1e-10 of PyTorch float64).
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from nexec.kernels.jit import fma_kernel  # these helpers may fuse a * b + c into one FMA

__all__ = ["ONE32", "exp32", "sigmoid32", "tanh32"]

ONE32, _TWO32, _HALF32 = np.float32(1.0), np.float32(2.0), np.float32(0.5)
_LOG2E32 = np.float32(1.4426950408889634)
_LN2_HI32 = np.float32(0.693145751953125)  # few mantissa bits: n * _LN2_HI32 is exact
_LN2_LO32 = np.float32(1.428606765330187045e-06)
_E2, _E3, _E4, _E5, _E6, _E7 = (np.float32(1.0 / math.factorial(k)) for k in range(2, 8))


@intrinsic
def _f32_from_bits(typingctx, bits):
    """Reinterprets an int32 as the float32 with the same bits (builds 2**n)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[0], signature.args[0], types.int32)
        return builder.bitcast(value, ir.FloatType())

    return types.float32(bits), codegen


@fma_kernel
def _expm1_reduced32(r):
    """expm1(r) for float32 |r| <= ln(2)/2: Taylor polynomial of degree 7 (relative
    truncation error < 2e-8, a third of float32's half ulp)."""
    p = _E7
    p = p * r + _E6
    p = p * r + _E5
    p = p * r + _E4
    p = p * r + _E3
    p = p * r + _E2
    p = p * r + ONE32
    return p * r


@fma_kernel
def _reduce32(x):
    """x = n ln2 + r: returns r and 2**n (x in [-87, 88], or nan)."""
    n = np.floor(x * _LOG2E32 + _HALF32)
    if n != n:
        n = np.float32(0.0)  # nan input: keep the integer conversion defined
    r = (x - n * _LN2_HI32) - n * _LN2_LO32
    return r, _f32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))


@fma_kernel
def exp32(v):
    """exp(v) in float32, vectorizable; overflow gives inf, underflow the subnormals then 0,
    nan gives nan (as np.exp)."""
    x = v
    if x > np.float32(89.0):
        x = np.float32(89.0)  # overflows to inf below
    if x < np.float32(-104.0):
        x = np.float32(-104.0)  # underflows to 0 below
    n = np.floor(x * _LOG2E32 + _HALF32)
    if n != n:
        n = np.float32(0.0)  # nan input: keep the integer conversion defined
    r = (x - n * _LN2_HI32) - n * _LN2_LO32
    k = np.int32(n)
    k1 = k >> np.int32(1)  # 2**k in two factors, each a normal number (subnormal results)
    k2 = k - k1
    return ((_expm1_reduced32(r) + ONE32) * _f32_from_bits((k1 + np.int32(127)) << np.int32(23))
            * _f32_from_bits((k2 + np.int32(127)) << np.int32(23)))


@fma_kernel
def sigmoid32(v):
    """1 / (1 + exp(-v)) in float32, vectorizable; +-inf give 1 and ~0, nan gives nan."""
    x = -v
    if x > np.float32(88.0):
        x = np.float32(88.0)
    if x < np.float32(-87.0):
        x = np.float32(-87.0)
    r, s = _reduce32(x)
    return np.divide(ONE32, ONE32 + (_expm1_reduced32(r) + ONE32) * s)


@fma_kernel
def tanh32(v):
    """tanh(v) in float32 via expm1(-2|v|) (no cancellation near 0), vectorizable."""
    a = abs(v)
    if a > np.float32(9.0):
        a = np.float32(9.0)  # tanh(9) rounds to 1
    r, s = _reduce32(np.float32(-2.0) * a)
    em = s * _expm1_reduced32(r) + (s - ONE32)  # expm1(-2a), in (-1, 0]
    return np.copysign(np.divide(-em, _TWO32 + em), v)
