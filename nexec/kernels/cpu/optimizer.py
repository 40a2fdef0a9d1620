"""Fused, in-place optimizer updates over flat parameter buffers, with Keras 3 rules.

All of a model's parameters live in one flat 1-D buffer ``w`` with the gradient ``g`` and
the optimizer slots (``velocity``, ``m``, ``v``) laid out alike, so one call updates the
whole model. float32 and float64 buffers both work; each element's update is computed in
float64 and rounded once when stored (Keras computes in the variable's dtype; the
difference is below the float32 resolution of the result).

The update rules, as in ``keras/src/optimizers/{sgd,rmsprop,adam}.py``:

* SGD (lr=0.01, momentum=0.0, nesterov=False)::

      momentum == 0:  w -= lr * g
      otherwise:      velocity = momentum * velocity - lr * g
                      w += velocity                              (plain)
                      w += momentum * velocity - lr * g          (nesterov)

* RMSprop, non-centred, no momentum (lr=0.001, rho=0.9, epsilon=1e-7)::

      velocity = rho * velocity + (1 - rho) * g**2
      w -= lr * g / sqrt(velocity + epsilon)                     (epsilon INSIDE the sqrt)

* Adam, no AMSGrad (lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7), t = 1, 2, ...::

      alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)
      m += (g - m) * (1 - beta_1)
      v += (g**2 - v) * (1 - beta_2)
      w -= alpha * m / (sqrt(v) + epsilon)                       (epsilon OUTSIDE the sqrt,
                                                                   not bias-corrected)

Performance notes (measured on 700k float32 parameters, 2 cores):

* divisions go through ``np.divide``: a plain ``/`` compiles to Numba's Python error
  model, a zero-check-and-raise per element that blocks SIMD and made Adam/RMSprop
  ~4.5x slower (2.7 ms -> 0.6 ms per step);
* serial loops, no ``prange``: alone, ``prange`` halves Adam on 700k parameters
  (0.6 -> 0.31 ms), but inside a training step Numba's OpenMP workers keep spinning on the
  cores OpenBLAS needs for the next GEMM, and a wide-MLP step became ~2.5x slower
  (docs/performance.md). The update is memory-bound; serial costs nothing measurable.
"""
from __future__ import annotations

import math

import numpy as np

from nexec.kernels.jit import kernel

__all__ = ["sgd_update", "rmsprop_update", "adam_update"]


@kernel
def sgd_update(w, g, velocity, lr, momentum, nesterov):
    """Keras 3 SGD step in place. ``velocity`` is neither read nor written (and may be
    empty) when ``momentum == 0``, as Keras then keeps no momentum slot."""
    n = w.size
    if g.size != n:
        raise ValueError("sgd_update: w and g sizes differ")
    if momentum == 0.0:
        for i in range(n):
            w[i] = w[i] - lr * g[i]
        return
    if velocity.size != n:
        raise ValueError("sgd_update: velocity size differs from w")
    if nesterov:
        for i in range(n):
            vel = momentum * velocity[i] - lr * g[i]
            velocity[i] = vel
            w[i] = w[i] + (momentum * vel - lr * g[i])
    else:
        for i in range(n):
            vel = momentum * velocity[i] - lr * g[i]
            velocity[i] = vel
            w[i] = w[i] + vel


@kernel
def rmsprop_update(w, g, velocity, lr, rho, epsilon):
    """Keras 3 RMSprop step in place (``centered=False``, ``momentum=0``)."""
    n = w.size
    if g.size != n or velocity.size != n:
        raise ValueError("rmsprop_update: w, g, velocity sizes differ")
    b = 1.0 - rho
    for i in range(n):
        gi = float(g[i])
        vel = rho * velocity[i] + b * (gi * gi)
        velocity[i] = vel
        w[i] = w[i] - np.divide(lr * gi, math.sqrt(vel + epsilon))


@kernel
def adam_update(w, g, m, v, lr, beta_1, beta_2, epsilon, t):
    """Keras 3 Adam step in place (``amsgrad=False``); ``t`` is the 1-based step count."""
    n = w.size
    if g.size != n or m.size != n or v.size != n:
        raise ValueError("adam_update: w, g, m, v sizes differ")
    if t < 1:
        raise ValueError("adam_update: t is the 1-based step count")
    alpha = lr * math.sqrt(1.0 - beta_2 ** t) / (1.0 - beta_1 ** t)
    a = 1.0 - beta_1
    b = 1.0 - beta_2
    for i in range(n):
        gi = float(g[i])
        mi = m[i] + (gi - m[i]) * a
        vi = v[i] + (gi * gi - v[i]) * b
        m[i] = mi
        v[i] = vi
        w[i] = w[i] - np.divide(alpha * mi, math.sqrt(vi) + epsilon)
