"""Scalar functions of the kind a plugin gives (activations, losses, metrics), each with a
NumPy float64 reference, shared by the CPU and CUDA tests of the generated kernels.

They use what plugin code does: ``abs``, branches, powers, ``math`` functions (not the
builtin ``min``/``max``, which Numba's built-in CUDA target cannot type for scalars). Module-level
functions, so the CPU and CUDA tests hand the factories the same objects.
"""
from __future__ import annotations

import math

import numpy as np


def softsign(z):
    return z / (1.0 + abs(z))


def softsign_derivative(y):
    return (1.0 - abs(y)) ** 2


def elu(z):
    return z if z > 0.0 else math.exp(z) - 1.0


def elu_derivative(y):
    return 1.0 if y > 0.0 else y + 1.0


def absolute_error(p, t):
    return abs(p - t)


def absolute_error_grad(p, t):
    if p > t:
        return 1.0
    return -1.0 if p < t else 0.0


def log_cosh(p, t):
    return math.log(math.cosh(p - t))


def log_cosh_grad(p, t):
    return math.tanh(p - t)


def within_half(p, t):
    return 1.0 if abs(p - t) < 0.5 else 0.0


def positive_product(p, t):
    # Not max(p * t, 0.0): Numba's built-in CUDA target cannot type min/max of scalars.
    q = p * t
    return q if q > 0.0 else 0.0  # noqa: FURB136


# name: (forward, derivative, NumPy forward, NumPy derivative from the output)
ACTIVATIONS = {
    "softsign": (softsign, softsign_derivative,
                 lambda z: z / (1.0 + np.abs(z)), lambda y: (1.0 - np.abs(y)) ** 2),
    "elu": (elu, elu_derivative,
            lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
            lambda y: np.where(y > 0, 1.0, y + 1.0)),
}

# name: (fn, grad, NumPy fn elementwise)
LOSSES = {
    "absolute_error": (absolute_error, absolute_error_grad, lambda p, t: np.abs(p - t)),
    "log_cosh": (log_cosh, log_cosh_grad, lambda p, t: np.log(np.cosh(p - t))),
}

# name: (fn, NumPy fn elementwise)
METRICS = {
    "within_half": (within_half, lambda p, t: (np.abs(p - t) < 0.5).astype(np.float64)),
    "positive_product": (positive_product, lambda p, t: np.maximum(p * t, 0.0)),
}


def ref_loss(np_fn, p: np.ndarray, t: np.ndarray) -> float:
    """Keras reduction: mean over the last axis, then over the batch, in float64."""
    per = np_fn(np.asarray(p, np.float64), np.asarray(t, np.float64))
    return float(np.mean(np.mean(per, axis=-1)))


def separated(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and targets at least 0.1 apart: no kink of |p - t| within reach of a
    finite-difference step."""
    t = rng.standard_normal(shape)
    gap = rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 1.5, size=shape)
    return t + gap, t
