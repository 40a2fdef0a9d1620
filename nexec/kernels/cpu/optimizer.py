"""Fused, in-place optimizer updates over flat parameter buffers, with Keras 3 rules.

All of a model's parameters live in one flat 1-D buffer ``w`` with the gradient ``g`` and
the optimizer slots (``velocity``, ``m``, ``v``) laid out alike, so one call updates the
whole model. float32 and float64 buffers both work; each element's update is computed in
float64 and rounded once when stored (Keras computes in the variable's dtype; the
difference is below the float32 resolution of the result).

Hyperparameters arrive in ``hyper``, a 1-D float64 array the kernel reads (and whose
step count it advances), so a training step's scalars that change (learning rate,
iteration count) live in memory every device can read without a new call signature.
Element 0 is the iteration count, element 1 the learning rate::

    sgd_update(w, g, velocity, hyper)   hyper = [iterations, lr, momentum, nesterov (0.0/1.0)]
    rmsprop_update(w, g, avg_sq, hyper) hyper = [iterations, lr, rho, epsilon]
    adam_update(w, g, m, v, hyper)      hyper = [iterations, lr, beta_1, beta_2, epsilon]

Each update first increments ``hyper[0]`` by one, then applies the step with that new count
(Adam's ``t``; converted to int64 so ``beta ** t`` is Numba's exact integer power). A
``hyper`` starting at ``[0.0, ...]`` counts the steps taken, like Keras' ``iterations``.
Sizes are validated before anything (``hyper[0]`` included) is written.

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
def _check_hyper(hyper, size):
    if hyper.ndim != 1 or hyper.shape[0] < size:
        raise ValueError("optimizer update: hyper is too short for this optimizer's layout")


@kernel
def sgd_update(w, g, velocity, hyper):
    """Keras 3 SGD step in place; ``hyper = [iterations, lr, momentum, nesterov]``.

    ``velocity`` is neither read nor written (and may be empty) when ``momentum == 0``, as
    Keras then keeps no momentum slot; ``nesterov`` is true when non-zero.
    """
    n = w.size
    if g.size != n:
        raise ValueError("sgd_update: w and g sizes differ")
    _check_hyper(hyper, 4)
    lr = hyper[1]
    momentum = hyper[2]
    nesterov = hyper[3] != 0.0
    if momentum != 0.0 and velocity.size != n:
        raise ValueError("sgd_update: velocity size differs from w")
    hyper[0] += 1.0
    if momentum == 0.0:
        for i in range(n):
            w[i] = w[i] - lr * g[i]
        return
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
def rmsprop_update(w, g, avg_sq, hyper):
    """Keras 3 RMSprop step in place (``centered=False``, ``momentum=0``);
    ``hyper = [iterations, lr, rho, epsilon]``; ``avg_sq`` is Keras' ``velocity`` slot."""
    n = w.size
    if g.size != n or avg_sq.size != n:
        raise ValueError("rmsprop_update: w, g, avg_sq sizes differ")
    _check_hyper(hyper, 4)
    lr = hyper[1]
    rho = hyper[2]
    epsilon = hyper[3]
    hyper[0] += 1.0
    b = 1.0 - rho
    for i in range(n):
        gi = float(g[i])
        vel = rho * avg_sq[i] + b * (gi * gi)
        avg_sq[i] = vel
        w[i] = w[i] - np.divide(lr * gi, math.sqrt(vel + epsilon))


@kernel
def adam_update(w, g, m, v, hyper):
    """Keras 3 Adam step in place (``amsgrad=False``);
    ``hyper = [iterations, lr, beta_1, beta_2, epsilon]``, iterations counting steps already
    taken (so this step's ``t`` is ``iterations + 1``)."""
    n = w.size
    if g.size != n or m.size != n or v.size != n:
        raise ValueError("adam_update: w, g, m, v sizes differ")
    _check_hyper(hyper, 5)
    if hyper[0] < 0.0:
        raise ValueError("adam_update: hyper[0] counts the steps taken and cannot be negative")
    hyper[0] += 1.0
    t = np.int64(hyper[0])
    lr = hyper[1]
    beta_1 = hyper[2]
    beta_2 = hyper[3]
    epsilon = hyper[4]
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
