"""CUDA optimizer steps over flat 1-D parameter buffers, with the Keras 3 rules of
:mod:`nexec.kernels.cpu.optimizer` (read its docstring for the formulas).

Same positional signatures as the CPU kernels, on device arrays, plus an optional
keyword-only ``stream``. ``hyper`` is a 1-D float64 *device* array with the CPU layouts::

    sgd_update(w, g, velocity, hyper)   hyper = [iterations, lr, momentum, nesterov (0.0/1.0)]
    rmsprop_update(w, g, avg_sq, hyper) hyper = [iterations, lr, rho, epsilon]
    adam_update(w, g, m, v, hyper)      hyper = [iterations, lr, beta_1, beta_2, epsilon]
    nadam_update(w, g, m, v, hyper)     hyper = [..., epsilon, u_product]
    adamax_update(w, g, m, u, hyper)    hyper = [iterations, lr, beta_1, beta_2, epsilon]
    adagrad_update(w, g, acc, hyper)    hyper = [iterations, lr, epsilon]
    adadelta_update(w, g, acc_grad, acc_delta, hyper)  hyper = [iterations, lr, rho, epsilon]
    lion_update(w, g, m, hyper)         hyper = [iterations, lr, beta_1, beta_2]
    clip_and_decay(w, g, offsets, norms, hyper, prep)  prep = [mode, clip, weight_decay]

Each call is two launches on ``stream``: a one-thread kernel adds 1 to ``hyper[0]``, then
the update kernel (one thread per element, grid-stride) reads the new count and the other
hyperparameters. Stream order makes the increment happen exactly once per step and before
any thread of the update reads it; the host never reads ``hyper``, so a training step needs
no synchronisation and the learning rate can change by writing ``hyper[1]`` on the device.
Adam's step size ``alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)`` is computed by
every thread from ``t = int64(hyper[0])``, as the CPU kernel computes it (integer power).

Each update is computed in float64 and rounded once when stored, as on the CPU.

Nadam's one-thread kernel also advances ``u_product`` (``hyper[5]``) by this step's
momentum-cache factor. ``clip_and_decay`` is three launches that each read the mode from
``prep`` on the device: one block per variable sums its squared gradient into ``norms``,
one block per variable scales its gradient (by its own norm, or by the global norm all
blocks add up from ``norms``), then a grid-stride pass clamps (clipvalue) and decays.

Differences from the CPU kernels (a kernel cannot raise): ``hyper``'s values are not
checked (the CPU raises for a negative Adam count); an SGD ``velocity`` of size 0 means no
momentum slot, and the plain update runs whatever ``hyper[2]`` says (the CPU raises when
the momentum is non-zero).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import float64, int64

from nexec.kernels.cuda.backend import MAX_THREADS, config_1d, cuda, jit, max_threads
from nexec.kernels.cuda.loss import block_sum

__all__ = ["adam_update", "rmsprop_update", "sgd_update", "nadam_update", "adamax_update",
           "adagrad_update", "adadelta_update", "lion_update", "clip_and_decay"]


@jit
def _count_step(hyper):
    """hyper[0] += 1, by one thread: launched alone before the update that reads it."""
    if cuda.grid(1) == 0:
        hyper[0] += 1.0


@jit
def _count_nadam_step(hyper):
    """hyper[0] += 1 and u_product *= beta_1 * (1 - 0.5 * 0.96**t), by one thread."""
    if cuda.grid(1) == 0:
        hyper[0] += 1.0
        t = int64(hyper[0])
        hyper[5] = hyper[5] * (hyper[2] * (1.0 - 0.5 * 0.96 ** t))


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


@jit
def _nadam(w, g, m, v, hyper):
    t = int64(hyper[0])
    lr = hyper[1]
    beta_1 = hyper[2]
    beta_2 = hyper[3]
    epsilon = hyper[4]
    u_prod = hyper[5]
    u_t = beta_1 * (1.0 - 0.5 * 0.96 ** t)
    u_t1 = beta_1 * (1.0 - 0.5 * 0.96 ** (t + 1))
    c_m = u_t1 / (1.0 - u_prod * u_t1)
    c_g = (1.0 - u_t) / (1.0 - u_prod)
    bias_2 = 1.0 - beta_2 ** t
    a = 1.0 - beta_1
    b = 1.0 - beta_2
    for i in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        gi = g[i] * 1.0  # float64
        mi = m[i] + (gi - m[i]) * a
        vi = v[i] + (gi * gi - v[i]) * b
        m[i] = mi
        v[i] = vi
        m_hat = c_m * mi + c_g * gi
        w[i] = w[i] - m_hat * lr / (math.sqrt(vi / bias_2) + epsilon)


@jit
def _adamax(w, g, m, u, hyper):
    t = int64(hyper[0])
    lr = hyper[1]
    beta_1 = hyper[2]
    beta_2 = hyper[3]
    epsilon = hyper[4]
    bias_1 = 1.0 - beta_1 ** t
    a = 1.0 - beta_1
    for i in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        gi = g[i] * 1.0
        mi = m[i] + (gi - m[i]) * a
        ui = max(beta_2 * u[i], abs(gi))
        m[i] = mi
        u[i] = ui
        w[i] = w[i] - lr * mi / (bias_1 * (ui + epsilon))


@jit
def _adagrad(w, g, acc, hyper):
    lr = hyper[1]
    epsilon = hyper[2]
    for i in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        gi = g[i] * 1.0
        ai = acc[i] + gi * gi
        acc[i] = ai
        w[i] = w[i] - lr * gi / math.sqrt(ai + epsilon)


@jit
def _adadelta(w, g, acc_grad, acc_delta, hyper):
    lr = hyper[1]
    rho = hyper[2]
    epsilon = hyper[3]
    b = 1.0 - rho
    for i in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        gi = g[i] * 1.0
        ag = rho * acc_grad[i] + b * (gi * gi)
        acc_grad[i] = ag
        delta = -(math.sqrt(acc_delta[i] + epsilon) * gi / math.sqrt(ag + epsilon))
        acc_delta[i] = rho * acc_delta[i] + b * (delta * delta)
        w[i] = w[i] + lr * delta


@jit
def _lion(w, g, m, hyper):
    lr = hyper[1]
    beta_1 = hyper[2]
    beta_2 = hyper[3]
    for i in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        gi = g[i] * 1.0
        c = m[i] * beta_1 + gi * (1.0 - beta_1)
        s = 1.0 if c > 0.0 else (-1.0 if c < 0.0 else c)
        w[i] = w[i] - lr * s
        m[i] = m[i] * beta_2 + gi * (1.0 - beta_2)


@jit
def _segment_sumsq(g, offsets, norms, prep):
    """Block k: norms[k] = sum of g**2 over variable k (modes 1 and 2 only)."""
    mode = int64(prep[0])
    if mode != 1 and mode != 2:
        return
    part = cuda.shared.array(MAX_THREADS, float64)
    k = cuda.blockIdx.x
    s = 0.0
    for i in range(offsets[k] + cuda.threadIdx.x, offsets[k + 1], cuda.blockDim.x):
        gi = g[i] * 1.0
        s += gi * gi
    total = block_sum(part, s)
    if cuda.threadIdx.x == 0:
        norms[k] = total


@jit
def _segment_scale(g, offsets, norms, prep):
    """Block k scales variable k's gradient: by its own norm (clipnorm) or the global one."""
    mode = int64(prep[0])
    if mode != 1 and mode != 2:
        return
    c = prep[1]
    k = cuda.blockIdx.x
    d = max(math.sqrt(norms[k]), c)  # clipnorm: g * c / d, as the CPU rounds it
    scale = 1.0
    if mode == 2:
        total = 0.0
        for j in range(offsets.shape[0] - 1):
            total += norms[j]
        norm = math.sqrt(total)
        inv = 1.0 / norm if norm > 0.0 else math.inf  # NaN stays NaN through the last term
        scale = c * min(inv, 1.0 / c) + (norm - norm)
    for i in range(offsets[k] + cuda.threadIdx.x, offsets[k + 1], cuda.blockDim.x):
        if mode == 1:
            g[i] = g[i] * c / d
        else:
            g[i] = g[i] * scale


@jit
def _clip_value_decay(w, g, hyper, prep):
    mode = int64(prep[0])
    c = prep[1]
    f = prep[2] * hyper[1]
    for i in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        if mode == 3:
            g[i] = min(max(g[i], -c), c)
        if f != 0.0:
            w[i] = w[i] - w[i] * f


def nadam_update(w: Any, g: Any, m: Any, v: Any, hyper: Any, *, stream: Any = 0) -> None:
    """Keras 3 Nadam step in place;
    ``hyper = [iterations, lr, beta_1, beta_2, epsilon, u_product]``."""
    n = _flat("nadam_update", w, g, m, v)
    _check_hyper("nadam_update", hyper, 6)
    _count_nadam_step[1, 1, stream](hyper)
    if n:
        _nadam[config_1d(n) + (stream,)](w, g, m, v, hyper)


def adamax_update(w: Any, g: Any, m: Any, u: Any, hyper: Any, *, stream: Any = 0) -> None:
    """Keras 3 Adamax step in place; ``hyper = [iterations, lr, beta_1, beta_2, epsilon]``."""
    n = _flat("adamax_update", w, g, m, u)
    _check_hyper("adamax_update", hyper, 5)
    _step(_adamax, n, stream, w, g, m, u, hyper)


def adagrad_update(w: Any, g: Any, acc: Any, hyper: Any, *, stream: Any = 0) -> None:
    """Keras 3 Adagrad step in place; ``hyper = [iterations, lr, epsilon]``."""
    n = _flat("adagrad_update", w, g, acc)
    _check_hyper("adagrad_update", hyper, 3)
    _step(_adagrad, n, stream, w, g, acc, hyper)


def adadelta_update(w: Any, g: Any, acc_grad: Any, acc_delta: Any, hyper: Any, *,
                    stream: Any = 0) -> None:
    """Keras 3 Adadelta step in place; ``hyper = [iterations, lr, rho, epsilon]``."""
    n = _flat("adadelta_update", w, g, acc_grad, acc_delta)
    _check_hyper("adadelta_update", hyper, 4)
    _step(_adadelta, n, stream, w, g, acc_grad, acc_delta, hyper)


def lion_update(w: Any, g: Any, m: Any, hyper: Any, *, stream: Any = 0) -> None:
    """Keras 3 Lion step in place; ``hyper = [iterations, lr, beta_1, beta_2]``."""
    n = _flat("lion_update", w, g, m)
    _check_hyper("lion_update", hyper, 4)
    _step(_lion, n, stream, w, g, m, hyper)


def clip_and_decay(w: Any, g: Any, offsets: Any, norms: Any, hyper: Any, prep: Any, *,
                   stream: Any = 0) -> None:
    """Keras 3's gradient clipping then decoupled weight decay, in place (see the CPU
    kernel); ``offsets`` int64 and ``norms``, ``prep`` float64 device arrays."""
    n = _flat("clip_and_decay", w, g)
    nseg = offsets.shape[0] - 1
    if offsets.ndim != 1 or nseg < 0 or norms.ndim != 1 or norms.shape[0] < nseg:
        raise ValueError("clip_and_decay: offsets must be 1-D int64 with norms one element "
                         "per variable")
    if prep.ndim != 1 or prep.shape[0] < 3:
        raise ValueError("clip_and_decay: prep needs 3 elements")
    _check_hyper("clip_and_decay", hyper, 2)
    if nseg:
        t = max_threads()
        _segment_sumsq[nseg, t, stream](g, offsets, norms, prep)
        _segment_scale[nseg, t, stream](g, offsets, norms, prep)
    if n:
        _clip_value_decay[config_1d(n) + (stream,)](w, g, hyper, prep)
