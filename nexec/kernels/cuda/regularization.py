"""CUDA twins of :mod:`nexec.kernels.cpu.regularization` (same names and argument order,
plus keyword ``stream``).

The stream is counter-based, so each thread computes its own numbers: value ``i`` takes the
``i + 1``-th number of SplitMix64 started at the layer's state. The state lives in host
memory (``layer.rng_state``): the launcher passes its value to the kernel and advances it on
the host, so a step copies nothing and the numbers equal the CPU's bit for bit.
Under the simulator, NumPy warns about the (intended) 64-bit wrap-around.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from nexec.kernels.cuda.backend import config_1d, cuda, jit

__all__ = ["random_bits53", "dropout_forward", "dropout_backward", "gaussian_noise_forward"]

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_UNIT = 1.0 / 9007199254740992.0
_TWO_PI = 2.0 * math.pi


@jit(device=True)
def _nth(s0, i):
    """Number ``i`` (from 1) of the stream whose state is ``s0``: 53 bits as uint64."""
    s = s0 + np.uint64(i) * _GAMMA
    z = (s ^ (s >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return (z ^ (z >> _S31)) >> _S11


@jit
def _bits(s0, out):
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = _nth(s0, i + 1)


@jit
def _draw_mask(s0, threshold, scale, mask):
    cols = mask.shape[1]
    for idx in range(cuda.grid(1), mask.shape[0] * cols, cuda.gridsize(1)):
        i = idx // cols
        mask[i, idx - i * cols] = scale if _nth(s0, idx + 1) >= threshold else 0.0


@jit
def _apply_mask(x, mask, span, out):
    cols = x.shape[1]
    for idx in range(cuda.grid(1), x.shape[0] * cols, cuda.gridsize(1)):
        i = idx // cols
        j = idx - i * cols
        out[i, j] = x[i, j] * mask[i // span, j]


@jit
def _gaussian(s0, stddev, x, out):
    cols = x.shape[1]
    for idx in range(cuda.grid(1), x.shape[0] * cols, cuda.gridsize(1)):
        i = idx // cols
        j = idx - i * cols
        u1 = _nth(s0, 2 * idx + 1) * _UNIT
        u2 = _nth(s0, 2 * idx + 2) * _UNIT
        n = math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(_TWO_PI * u2)
        out[i, j] = x[i, j] + stddev * n


def _advance(state: np.ndarray, count: int) -> np.uint64:
    """The state before a draw of ``count`` numbers; moves ``state[0]`` past them."""
    s0 = np.uint64(state[0])
    state[0] = np.uint64((int(s0) + count * int(_GAMMA)) % 2**64)
    return s0


def random_bits53(state: np.ndarray, out: Any, *, stream: Any = 0) -> None:
    """Fills the 1-D uint64 device array ``out`` with the next numbers of the stream."""
    n = out.shape[0]
    s0 = _advance(state, n)
    if n:
        blocks, threads = config_1d(n)
        _bits[blocks, threads, stream](s0, out)


def dropout_forward(x: Any, threshold: Any, scale: float, span: int, state: np.ndarray,
                    mask: Any, out: Any, *, stream: Any = 0) -> None:
    """Training forward of Dropout: see the CPU kernel. ``state`` is a host array."""
    n_mask = mask.shape[0] * mask.shape[1]
    s0 = _advance(state, n_mask)
    if n_mask == 0:
        return
    blocks, threads = config_1d(n_mask)
    _draw_mask[blocks, threads, stream](s0, np.uint64(threshold), scale, mask)
    dropout_backward(x, mask, span, out, stream=stream)


def dropout_backward(dy: Any, mask: Any, span: int, dx: Any, *, stream: Any = 0) -> None:
    """``dx = dy * mask`` broadcast over ``span`` rows."""
    n = dy.shape[0] * dy.shape[1]
    if n:
        blocks, threads = config_1d(n)
        _apply_mask[blocks, threads, stream](dy, mask, span, dx)


def gaussian_noise_forward(x: Any, stddev: float, state: np.ndarray, out: Any, *,
                           stream: Any = 0) -> None:
    """Training forward of GaussianNoise: see the CPU kernel. ``state`` is a host array."""
    n = x.shape[0] * x.shape[1]
    s0 = _advance(state, 2 * n)
    if n:
        blocks, threads = config_1d(n)
        _gaussian[blocks, threads, stream](s0, stddev, x, out)
