"""Kernels of the random regularisation layers: Dropout (and its spatial forms) and
GaussianNoise.

Randomness is counter-based: the ``i``-th number of a layer's stream (``i = 1, 2, ...``) is
SplitMix64's output function applied to ``state + i * gamma`` (Steele, Lea & Flood 2014),
the same numbers as advancing SplitMix64 one step at a time. Every value is computed on its
own, so the loops vectorise here and run one value per thread on CUDA, and ``state[0]``
moves on by the count at the end of a call. Every tensor is a 2-D ``(rows, channels)``
view (row stride may exceed the width); kernels write into given outputs and allocate
nothing.
"""
from __future__ import annotations

import math

import numpy as np

from nexec.kernels.jit import kernel

__all__ = ["random_bits53", "dropout_forward", "dropout_backward", "gaussian_noise_forward"]

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
#: 2**-53: a 53-bit integer times this is a float in [0, 1).
_UNIT = 1.0 / 9007199254740992.0


@kernel
def _mix(s):
    """SplitMix64's output function: the 53 high bits of the hashed counter ``s``."""
    z = (s ^ (s >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return (z ^ (z >> _S31)) >> _S11


@kernel
def random_bits53(state, out):
    """Fills ``out`` (1-D uint64) with the next numbers of the stream and advances ``state``:
    the reference the tests and the CUDA twins are checked against."""
    s0 = state[0]
    for i in range(out.shape[0]):
        out[i] = _mix(s0 + np.uint64(i + 1) * _GAMMA)
    state[0] = s0 + np.uint64(out.shape[0]) * _GAMMA


@kernel
def dropout_forward(x, threshold, scale, span, state, mask, out):
    """Training forward of Dropout: ``mask = scale`` where the stream's next 53-bit number is
    at least ``threshold`` (``rate * 2**53``), else 0; ``out = x * mask`` broadcast.

    Args:
        x: ``(R, C)`` input rows.
        threshold: uint64, ``rate * 2**53`` (``2**53`` drops everything).
        scale: ``1 / (1 - rate)`` (0 when ``rate`` is 1).
        span: Rows of ``x`` that share one mask row: 1 for Dropout, the spatial size for
            SpatialDropout (one draw per sample and channel).
        state: ``(1,)`` uint64 stream state, advanced by ``mask.size``.
        mask: ``(R // span, C)``; gets the mask (draws in row-major order), kept for backward.
        out: ``(R, C)``; may be ``x`` itself.
    """
    s0 = state[0]
    cols = x.shape[1]
    for m in range(mask.shape[0]):
        base = s0 + np.uint64(m * cols) * _GAMMA
        for c in range(cols):
            mask[m, c] = scale if _mix(base + np.uint64(c + 1) * _GAMMA) >= threshold else 0.0
    state[0] = s0 + np.uint64(mask.shape[0] * cols) * _GAMMA
    for r in range(x.shape[0]):
        mr = mask[r // span]
        for c in range(cols):
            out[r, c] = x[r, c] * mr[c]


@kernel
def dropout_backward(dy, mask, span, dx):
    """``dx = dy * mask`` (broadcast over ``span`` rows; the mask holds the scale)."""
    for r in range(dy.shape[0]):
        mr = mask[r // span]
        for c in range(dy.shape[1]):
            dx[r, c] = dy[r, c] * mr[c]


@kernel
def gaussian_noise_forward(x, stddev, state, out):
    """Training forward of GaussianNoise: ``out = x + stddev * n`` with ``n`` standard normal.

    Value ``i`` (row-major) takes the stream's numbers ``2i + 1`` and ``2i + 2`` through
    Box-Muller: ``n = sqrt(-2 log(1 - u1)) * cos(2 pi u2)``; ``state`` moves on by ``2 * x.size``.
    Backward is the identity (``copy_into``), so nothing is kept.
    """
    s0 = state[0]
    cols = x.shape[1]
    two_pi = 2.0 * math.pi
    for r in range(x.shape[0]):
        base = s0 + np.uint64(2 * r * cols) * _GAMMA
        for c in range(cols):
            k = np.uint64(2 * c)
            u1 = _mix(base + (k + np.uint64(1)) * _GAMMA) * _UNIT
            u2 = _mix(base + (k + np.uint64(2)) * _GAMMA) * _UNIT
            n = math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(two_pi * u2)
            out[r, c] = x[r, c] + stddev * n
    state[0] = s0 + np.uint64(2 * x.shape[0] * cols) * _GAMMA
