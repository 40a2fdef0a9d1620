"""CUDA optimizer steps over flat 1-D parameter buffers, with the Keras 3 rules of
:mod:`nexec.kernels.cpu.optimizer` (read its docstring for the formulas).

Same launcher signatures as the CPU kernels, on device arrays, plus an optional
keyword-only ``stream``. One thread per element, grid-stride; each update is computed in
float64 and rounded once when stored, as on the CPU. Adam's step size
``alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)`` is computed on the host.
"""
from __future__ import annotations

import math
from typing import Any

from nexec.kernels.cuda.backend import config_1d, cuda, jit

__all__ = ["adam_update", "rmsprop_update", "sgd_update"]


@jit
def _sgd_plain(w, g, lr):
    for i in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        w[i] = w[i] - lr * g[i]


@jit
def _sgd_momentum(w, g, velocity, lr, momentum, nesterov):
    for i in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        vel = momentum * velocity[i] - lr * g[i]
        velocity[i] = vel
        if nesterov:
            w[i] = w[i] + (momentum * vel - lr * g[i])
        else:
            w[i] = w[i] + vel


@jit
def _rmsprop(w, g, velocity, lr, rho, b, epsilon):
    for i in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        gi = g[i] * 1.0  # float64
        vel = rho * velocity[i] + b * (gi * gi)
        velocity[i] = vel
        w[i] = w[i] - lr * gi / math.sqrt(vel + epsilon)


@jit
def _adam(w, g, m, v, alpha, a, b, epsilon):
    for i in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        gi = g[i] * 1.0  # float64
        mi = m[i] + (gi - m[i]) * a
        vi = v[i] + (gi * gi - v[i]) * b
        m[i] = mi
        v[i] = vi
        w[i] = w[i] - alpha * mi / (math.sqrt(vi) + epsilon)


def _flat(where: str, w: Any, *others: Any) -> int:
    n = w.shape[0]
    if w.ndim != 1 or any(a.ndim != 1 or a.shape[0] != n for a in others):
        raise ValueError(f"{where}: buffers must be 1-D of one size")
    return n


def sgd_update(w: Any, g: Any, velocity: Any, lr: float, momentum: float, nesterov: bool, *,
               stream: Any = 0) -> None:
    """Keras 3 SGD step in place. ``velocity`` is neither read nor written (and may be
    empty) when ``momentum == 0``."""
    n = _flat("sgd_update", w, g)
    if momentum == 0.0:
        if n:
            _sgd_plain[config_1d(n) + (stream,)](w, g, float(lr))
        return
    _flat("sgd_update", w, velocity)
    if n:
        _sgd_momentum[config_1d(n) + (stream,)](w, g, velocity, float(lr), float(momentum),
                                               bool(nesterov))


def rmsprop_update(w: Any, g: Any, velocity: Any, lr: float, rho: float, epsilon: float, *,
                   stream: Any = 0) -> None:
    """Keras 3 RMSprop step in place (``centered=False``, ``momentum=0``)."""
    n = _flat("rmsprop_update", w, g, velocity)
    if n:
        _rmsprop[config_1d(n) + (stream,)](w, g, velocity, float(lr), float(rho),
                                          1.0 - float(rho), float(epsilon))


def adam_update(w: Any, g: Any, m: Any, v: Any, lr: float, beta_1: float, beta_2: float,
                epsilon: float, t: int, *, stream: Any = 0) -> None:
    """Keras 3 Adam step in place (``amsgrad=False``); ``t`` is the 1-based step count."""
    n = _flat("adam_update", w, g, m, v)
    if t < 1:
        raise ValueError("adam_update: t is the 1-based step count")
    alpha = lr * math.sqrt(1.0 - beta_2 ** t) / (1.0 - beta_1 ** t)
    if n:
        _adam[config_1d(n) + (stream,)](w, g, m, v, float(alpha), 1.0 - float(beta_1),
                                       1.0 - float(beta_2), float(epsilon))
