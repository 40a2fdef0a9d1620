"""Weight initialisers with Keras' names and formulas.

An initialiser is a callable ``(shape, dtype, rng) -> ndarray``. Fan-in and fan-out follow
Keras: for a kernel of shape ``(..., in, out)`` the receptive field (product of the leading
dimensions) multiplies both.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["Initializer", "BUILTIN_INITIALIZERS", "fans"]

Initializer = Callable[[tuple, np.dtype, np.random.Generator], np.ndarray]


def fans(shape: tuple) -> tuple[float, float]:
    """Keras' fan-in and fan-out of a weight shape."""
    if len(shape) < 1:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    receptive = float(np.prod(shape[:-2])) if len(shape) > 2 else 1.0
    return shape[-2] * receptive, shape[-1] * receptive


def zeros(shape, dtype, rng):
    return np.zeros(shape, dtype)


def ones(shape, dtype, rng):
    return np.ones(shape, dtype)


def glorot_uniform(shape, dtype, rng):
    fan_in, fan_out = fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(dtype)


def glorot_normal(shape, dtype, rng):
    fan_in, fan_out = fans(shape)
    return _truncated_normal(shape, np.sqrt(2.0 / (fan_in + fan_out)), dtype, rng)


def he_uniform(shape, dtype, rng):
    limit = np.sqrt(6.0 / fans(shape)[0])
    return rng.uniform(-limit, limit, shape).astype(dtype)


def he_normal(shape, dtype, rng):
    return _truncated_normal(shape, np.sqrt(2.0 / fans(shape)[0]), dtype, rng)


def random_normal(shape, dtype, rng):
    return rng.normal(0.0, 0.05, shape).astype(dtype)


def random_uniform(shape, dtype, rng):
    return rng.uniform(-0.05, 0.05, shape).astype(dtype)


def orthogonal(shape, dtype, rng):
    """Keras' ``Orthogonal(gain=1)``: Q of the QR of a normal matrix, signs fixed by R's diagonal.

    The leading axes are flattened into rows; the result has orthonormal rows or columns
    (whichever are fewer), as a recurrent kernel's initialiser wants.
    """
    if len(shape) < 2:
        raise ValueError(f"The orthogonal initializer needs a shape of rank >= 2, got {shape}.")
    rows = int(np.prod(shape[:-1]))
    cols = int(shape[-1])
    a = rng.normal(0.0, 1.0, (max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return q.reshape(shape).astype(dtype)


def _truncated_normal(shape, std, dtype, rng):
    # Keras draws from a normal truncated at two standard deviations, rescaled so the
    # resulting standard deviation is ``std`` (0.87962566 is that of the truncated unit).
    scale = std / 0.87962566103423978
    out = rng.normal(0.0, 1.0, shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.normal(0.0, 1.0, int(bad.sum()))
        bad = np.abs(out) > 2.0
    return (out * scale).astype(dtype)


BUILTIN_INITIALIZERS: dict[str, Initializer] = {
    "zeros": zeros, "ones": ones, "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal, "he_uniform": he_uniform, "he_normal": he_normal,
    "random_normal": random_normal, "random_uniform": random_uniform,
    "orthogonal": orthogonal,
}
