"""Numba kernels of GaussianDropout and AlphaDropout.

Every array is a 2-D ``(rows, channels)`` view (``nexec.plugin.rows``) whose row stride may
exceed its width; kernels write into the arrays they are given and allocate nothing.
Backward kernels *overwrite* ``dx``.

The random stream is this package's own, counter-based: number ``i`` (from 1) of a stream
with state ``s`` is Pelle Evensen's *rrmxmx* mixer applied to ``s + i * W`` (``W`` an odd
Weyl constant), keeping the 53 high bits, so every value is drawn on its own and ``state``
moves on by the count at the end of a call. (nexec's core layers use SplitMix64 the same
way; a plugin brings what it needs.)
"""
from __future__ import annotations

import math

import numpy as np

from nexec.plugin import kernel

__all__ = ["next_bits", "gaussian_dropout_forward", "gaussian_dropout_backward",
           "alpha_dropout_forward", "alpha_dropout_backward"]

_WEYL = np.uint64(0xD1B54A32D192ED03)
_MUL = np.uint64(0x9FB21C651E98DF25)
_R49, _L15, _R24, _L40 = np.uint64(49), np.uint64(15), np.uint64(24), np.uint64(40)
_S28, _S11 = np.uint64(28), np.uint64(11)
_UNIT = 1.0 / 9007199254740992.0  # 2**-53


@kernel
def _bits(s, i):
    """Number ``i`` of the stream with state ``s``: 53 random bits as uint64."""
    v = s + np.uint64(i) * _WEYL
    v ^= ((v >> _R49) | (v << _L15)) ^ ((v >> _R24) | (v << _L40))
    v *= _MUL
    v ^= v >> _S28
    v *= _MUL
    v ^= v >> _S28
    return v >> _S11


@kernel
def next_bits(state, out):
    """Fills ``out`` (1-D uint64) with the stream's next numbers and advances ``state``."""
    s = state[0]
    for i in range(out.shape[0]):
        out[i] = _bits(s, i + 1)
    state[0] = s + np.uint64(out.shape[0]) * _WEYL


@kernel
def gaussian_dropout_forward(x, stddev, state, noise, out):
    """``noise = 1 + stddev * n`` (``n`` standard normal by Box-Muller from numbers ``2i + 1``
    and ``2i + 2`` for value ``i``, row-major), ``out = x * noise``; ``noise`` is kept."""
    s = state[0]
    cols = x.shape[1]
    for r in range(x.shape[0]):
        for c in range(cols):
            i = 2 * (r * cols + c)
            u1 = _bits(s, i + 1) * _UNIT
            u2 = _bits(s, i + 2) * _UNIT
            n = math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)
            m = 1.0 + stddev * n
            noise[r, c] = m
            out[r, c] = x[r, c] * m
    state[0] = s + np.uint64(2 * x.shape[0] * cols) * _WEYL


@kernel
def gaussian_dropout_backward(dy, noise, dx):
    """``dx = dy * noise``."""
    for r in range(dy.shape[0]):
        for c in range(dy.shape[1]):
            dx[r, c] = dy[r, c] * noise[r, c]


@kernel
def alpha_dropout_forward(x, threshold, a, b, alpha_p, state, mask, out):
    """Keras' AlphaDropout: a value is kept where the stream's number is at least
    ``threshold`` (``rate * 2**53``); ``out = a * x + b`` where kept, ``a * alpha_p + b``
    where dropped; ``mask`` gets ``a`` or 0 (the gradient factor)."""
    s = state[0]
    cols = x.shape[1]
    dropped = a * alpha_p + b
    for r in range(x.shape[0]):
        for c in range(cols):
            if _bits(s, r * cols + c + 1) >= threshold:
                mask[r, c] = a
                out[r, c] = a * x[r, c] + b
            else:
                mask[r, c] = 0.0
                out[r, c] = dropped
    state[0] = s + np.uint64(x.shape[0] * cols) * _WEYL


@kernel
def alpha_dropout_backward(dy, mask, dx):
    """``dx = dy * mask``."""
    for r in range(dy.shape[0]):
        for c in range(dy.shape[1]):
            dx[r, c] = dy[r, c] * mask[r, c]
