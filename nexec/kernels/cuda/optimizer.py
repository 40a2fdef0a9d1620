"""CUDA optimizer steps over flat 1-D parameter buffers, with the Keras 3 rules of
:mod:`nexec.kernels.cpu.optimizer` (read its docstring for the formulas).

Same positional signatures as the CPU kernels, on device arrays, plus an optional
keyword-only ``stream``. ``hyper`` is a 1-D float64 *device* array with the CPU layouts::

    sgd_update(w, g, velocity, hyper)   hyper = [iterations, lr, momentum, nesterov (0.0/1.0)]
    rmsprop_update(w, g, avg_sq, hyper) hyper = [iterations, lr, rho, epsilon]
    adam_update(w, g, m, v, hyper)      hyper = [iterations, lr, beta_1, beta_2, epsilon]

Each call is two launches on ``stream``: a one-thread kernel adds 1 to ``hyper[0]``, then
the update kernel (one thread per element, grid-stride) reads the new count and the other
hyperparameters. Stream order makes the increment happen exactly once per step and before
any thread of the update reads it; the host never reads ``hyper``, so a training step needs
no synchronisation and the learning rate can change by writing ``hyper[1]`` on the device.
Adam's step size ``alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)`` is computed by
every thread from ``t = int64(hyper[0])``, as the CPU kernel computes it (integer power).

Each update is computed in float64 and rounded once when stored, as on the CPU.

Differences from the CPU kernels (a kernel cannot raise): ``hyper``'s values are not
checked (the CPU raises for a negative Adam count); an SGD ``velocity`` of size 0 means no
momentum slot, and the plain update runs whatever ``hyper[2]`` says (the CPU raises when
the momentum is non-zero).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import int64

from nexec.kernels.cuda.backend import config_1d, cuda, jit

__all__ = ["adam_update", "rmsprop_update", "sgd_update"]


@jit
def _count_step(hyper):
    """hyper[0] += 1, by one thread: launched alone before the update that reads it."""
    if cuda.grid(1) == 0:
        hyper[0] += 1.0


@jit
def _sgd(w, g, velocity, hyper):
    lr = hyper[1]
    momentum = hyper[2]
    nesterov = hyper[3] != 0.0
    if momentum == 0.0 or velocity.shape[0] < w.shape[0]:
        for i in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
            w[i] = w[i] - lr * g[i]
        return
    for i in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        vel = momentum * velocity[i] - lr * g[i]
        velocity[i] = vel
        if nesterov:
            w[i] = w[i] + (momentum * vel - lr * g[i])
        else:
            w[i] = w[i] + vel


@jit
def _rmsprop(w, g, avg_sq, hyper):
    lr = hyper[1]
    rho = hyper[2]
    epsilon = hyper[3]
    b = 1.0 - rho
    for i in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        gi = g[i] * 1.0  # float64
        vel = rho * avg_sq[i] + b * (gi * gi)
        avg_sq[i] = vel
        w[i] = w[i] - lr * gi / math.sqrt(vel + epsilon)


@jit
def _adam(w, g, m, v, hyper):
    t = int64(hyper[0])
    lr = hyper[1]
    beta_1 = hyper[2]
    beta_2 = hyper[3]
    epsilon = hyper[4]
    alpha = lr * math.sqrt(1.0 - beta_2 ** t) / (1.0 - beta_1 ** t)
    a = 1.0 - beta_1
    b = 1.0 - beta_2
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


def _check_hyper(where: str, hyper: Any, size: int) -> None:
    if hyper.ndim != 1 or hyper.shape[0] < size or np.dtype(hyper.dtype) != np.float64:
        raise ValueError(f"{where}: hyper must be a 1-D float64 device array of at least "
                         f"{size} elements")


def _step(kernel: Any, n: int, stream: Any, *args: Any) -> None:
    """Counts the step, then runs the update (if there is anything to update)."""
    hyper = args[-1]
    _count_step[1, 1, stream](hyper)
    if n:
        kernel[config_1d(n) + (stream,)](*args)


def sgd_update(w: Any, g: Any, velocity: Any, hyper: Any, *, stream: Any = 0) -> None:
    """Keras 3 SGD step in place; ``hyper = [iterations, lr, momentum, nesterov]``.

    ``velocity`` is neither read nor written when ``momentum == 0``; it may then be empty
    (size 0), which always means the plain update.
    """
    n = _flat("sgd_update", w, g)
    if velocity.ndim != 1 or velocity.shape[0] not in (0, n):
        raise ValueError("sgd_update: velocity must be 1-D of w's size, or empty")
    _check_hyper("sgd_update", hyper, 4)
    _step(_sgd, n, stream, w, g, velocity, hyper)


def rmsprop_update(w: Any, g: Any, avg_sq: Any, hyper: Any, *, stream: Any = 0) -> None:
    """Keras 3 RMSprop step in place (``centered=False``, ``momentum=0``);
    ``hyper = [iterations, lr, rho, epsilon]``."""
    n = _flat("rmsprop_update", w, g, avg_sq)
    _check_hyper("rmsprop_update", hyper, 4)
    _step(_rmsprop, n, stream, w, g, avg_sq, hyper)


def adam_update(w: Any, g: Any, m: Any, v: Any, hyper: Any, *, stream: Any = 0) -> None:
    """Keras 3 Adam step in place (``amsgrad=False``);
    ``hyper = [iterations, lr, beta_1, beta_2, epsilon]`` (iterations = steps taken)."""
    n = _flat("adam_update", w, g, m, v)
    _check_hyper("adam_update", hyper, 5)
    _step(_adam, n, stream, w, g, m, v, hyper)
