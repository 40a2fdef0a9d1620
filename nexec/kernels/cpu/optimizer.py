"""Fused, in-place optimizer updates over flat parameter buffers, with Keras 3 rules.

All of a model's parameters live in one flat 1-D buffer ``w`` with the gradient ``g`` and
the optimizer slots (``velocity``, ``m``, ``v``) laid out alike, so one call updates the
whole model. float32 and float64 buffers both work. SGD, RMSprop and Adam compute in the
buffers' dtype, as Keras does (Keras computes in the variable's dtype; float64 buffers keep
their bits, float32 results are Keras' float32 arithmetic, no longer a float64 update rounded
once); the others compute each element's update in float64 and round it once when stored
(the difference is below the float32 resolution of the result).

Every update is also available split into ranges: ``advance_step(hyper, size, strict)`` counts
the step once (and advances Nadam's ``u_product``), then ``<name>_part`` (``sgd_part``,
``adam_part``, ...) with the update's own arguments, sliced to one contiguous range, applies
this step to that range without counting it. The ranges run as intra-op shards
(``nexec.training.optimizers``); each element's arithmetic is the same code whatever the
range, so a split update is bit-identical to the whole one. Clipping (its norms are sums
over variables) is never split.

Hyperparameters arrive in ``hyper``, a 1-D float64 array the kernel reads (and whose
step count it advances), so a training step's scalars that change (learning rate,
iteration count) live in memory every device can read without a new call signature.
Element 0 is the iteration count, element 1 the learning rate::

    sgd_update(w, g, velocity, hyper)   hyper = [iterations, lr, momentum, nesterov (0.0/1.0)]
    rmsprop_update(w, g, avg_sq, hyper) hyper = [iterations, lr, rho, epsilon]
    adam_update(w, g, m, v, hyper)      hyper = [iterations, lr, beta_1, beta_2, epsilon]
    nadam_update(w, g, m, v, hyper)     hyper = [iterations, lr, beta_1, beta_2, epsilon,
                                                 u_product]   (the kernel advances u_product)
    adamax_update(w, g, m, u, hyper)    hyper = [iterations, lr, beta_1, beta_2, epsilon]
    adagrad_update(w, g, acc, hyper)    hyper = [iterations, lr, epsilon]
    adadelta_update(w, g, acc_grad, acc_delta, hyper)  hyper = [iterations, lr, rho, epsilon]
    lion_update(w, g, m, hyper)         hyper = [iterations, lr, beta_1, beta_2]

and, as an instruction of its own before any update when an optimizer clips gradients or
decays weights (Keras 3's base optimizer applies both before ``update_step``)::

    clip_and_decay(w, g, offsets, norms, hyper, prep)
        prep = [mode (0 none, 1 clipnorm, 2 global_clipnorm, 3 clipvalue), clip, weight_decay]
        offsets: int64 variable boundaries in the flat buffer (len = variables + 1)
        norms: float64 scratch, one element per variable

Each update first increments ``hyper[0]`` by one, then applies the step with that new count
(Adam's ``t``; converted to int64 so ``beta ** t`` is Numba's exact integer power). A
``hyper`` starting at ``[0.0, ...]`` counts the steps taken, like Keras' ``iterations``.
Sizes are validated before anything (``hyper[0]`` included) is written.

The update rules, as in ``keras/src/optimizers/{sgd,rmsprop,adam}.py``:

* SGD (lr=0.01, momentum=0.0, nesterov=False)::

      momentum == 0:  w -= g * lr
      otherwise:      velocity = velocity * momentum - g * lr
                      w += velocity                              (plain)
                      w += velocity * momentum - g * lr          (nesterov)

* RMSprop, non-centred, no momentum (lr=0.001, rho=0.9, epsilon=1e-7)::

      velocity = rho * velocity + (1 - rho) * g**2
      w -= lr * g / sqrt(velocity + epsilon)                     (epsilon INSIDE the sqrt)

* Nadam (lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7), Keras 3's momentum cache::

      u_t = beta_1 * (1 - 0.5 * 0.96**t);  u_t1 = beta_1 * (1 - 0.5 * 0.96**(t + 1))
      u_product *= u_t                                          (kept in hyper[5], from 1.0)
      m += (g - m) * (1 - beta_1);  v += (g**2 - v) * (1 - beta_2)
      m_hat = u_t1 * m / (1 - u_product * u_t1) + (1 - u_t) * g / (1 - u_product)
      w -= lr * m_hat / (sqrt(v / (1 - beta_2**t)) + epsilon)

* Adamax (lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7)::

      m += (g - m) * (1 - beta_1);  u = max(beta_2 * u, |g|)
      w -= lr * m / ((1 - beta_1**t) * (u + epsilon))

* Adagrad (lr=0.001, initial_accumulator_value=0.1 in the slot, epsilon=1e-7)::

      acc += g**2;  w -= lr * g / sqrt(acc + epsilon)

* Adadelta (lr=0.001, rho=0.95, epsilon=1e-7)::

      acc_grad = rho * acc_grad + (1 - rho) * g**2
      delta = -sqrt(acc_delta + epsilon) * g / sqrt(acc_grad + epsilon)
      acc_delta = rho * acc_delta + (1 - rho) * delta**2;  w += lr * delta

* Lion (lr=0.001, beta_1=0.9, beta_2=0.99)::

      w -= lr * sign(beta_1 * m + (1 - beta_1) * g);  m = beta_2 * m + (1 - beta_2) * g

* Clipping (``keras/src/optimizers/base_optimizer.py``, ``_clip_gradients``): clipnorm
  scales each *variable's* gradient by ``clip / max(norm, clip)``; global_clipnorm scales
  all by ``clip * min(1 / norm, 1 / clip)`` (NaN when the norm is not finite, as Keras);
  clipvalue clamps to ``[-clip, clip]``. Weight decay then ``w -= w * weight_decay * lr``.

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
* float32 buffers, float32 arithmetic (SGD, RMSprop, Adam): float64 math per element (four
  lanes, and float64 ``sqrt``/divide cost two to four times their float32 forms) made
  RMSprop on the seed MLP's 3,466 parameters take 6.8 us per step, 2.3 us in float32
  (Adam 6.5 -> 2.3 us); SGD with momentum on the ResNet-18-style model's 11.2 M parameters
  went 6.8 -> 5.9 ms alone, 12.6 -> 9.9 ms inside its training step (medians); the result
  is what Keras computes;
* split updates (``advance_step`` + ``*_part`` as intra-op shards, only in programs that
  already run shards, from 512 Ki parameters: ``training/optimizers.py split_ranges``): the
  ResNet-18-style update in its step 9.9 -> 10.0 ms median, best 9.0 -> 5.1 ms (a shared
  2-core machine: the second core is often another process's);
* serial loops, no ``prange``: alone, ``prange`` halves Adam on 700k parameters
  (0.6 -> 0.31 ms), but inside a training step Numba's OpenMP workers keep spinning on the
  cores OpenBLAS needs for the next GEMM, and a wide-MLP step became ~2.5x slower
  (docs/performance.md). The update is memory-bound; serial costs nothing measurable.
"""
from __future__ import annotations

import math

import numpy as np

from nexec.kernels.jit import kernel

__all__ = ["sgd_update", "rmsprop_update", "adam_update", "nadam_update", "adamax_update",
           "adagrad_update", "adadelta_update", "lion_update", "clip_and_decay",
           "advance_step", "nadam_advance_step", "sgd_part", "rmsprop_part", "adam_part",
           "nadam_part", "adamax_part", "adagrad_part", "adadelta_part", "lion_part"]


@kernel
def _check_hyper(hyper, size):
    if hyper.ndim != 1 or hyper.shape[0] < size:
        raise ValueError("optimizer update: hyper is too short for this optimizer's layout")


@kernel
def _begin(hyper, size, where):
    """Checks ``hyper`` and the count, then advances it; returns this step's ``t``."""
    _check_hyper(hyper, size)
    if hyper[0] < 0.0:
        raise ValueError("optimizer update: hyper[0] counts the steps taken and cannot be "
                         "negative")
    hyper[0] += 1.0
    return np.int64(hyper[0])


@kernel
def _nadam_advance(hyper):
    """Nadam's momentum cache: ``u_product *= u_t`` with this step's (advanced) ``t``."""
    t = np.int64(hyper[0])
    hyper[5] = hyper[5] * (hyper[2] * (1.0 - 0.5 * 0.96 ** t))


@kernel
def advance_step(hyper, size, strict):
    """The once-per-step part of a split update, before its ranges (``*_part``) run:
    checks ``hyper`` holds ``size`` elements, refuses a negative count when ``strict`` is
    non-zero (as the optimizer's own ``*_update`` does) and advances ``hyper[0]``."""
    _check_hyper(hyper, size)
    if strict != 0.0 and hyper[0] < 0.0:
        raise ValueError("optimizer update: hyper[0] counts the steps taken and cannot be "
                         "negative")
    hyper[0] += 1.0


@kernel
def nadam_advance_step(hyper):
    """:func:`advance_step` for Nadam: also multiplies this step's momentum-cache factor
    into ``u_product`` (``hyper[5]``)."""
    _begin(hyper, 6, "nadam_update")
    _nadam_advance(hyper)


# ----- per-element steps: hyper[0] already counts this step --------------------------------
@kernel
def _sgd_steps(w, g, velocity, hyper):
    real = w.dtype.type
    lr = real(hyper[1])
    momentum = real(hyper[2])
    if hyper[2] == 0.0:
        for i in range(w.size):
            w[i] = w[i] - real(g[i]) * lr
        return
    if hyper[3] != 0.0:
        for i in range(w.size):
            gl = real(g[i]) * lr
            vel = real(velocity[i]) * momentum - gl
            velocity[i] = vel
            w[i] = w[i] + (vel * momentum - gl)
    else:
        for i in range(w.size):
            vel = real(velocity[i]) * momentum - real(g[i]) * lr
            velocity[i] = vel
            w[i] = w[i] + vel


@kernel
def _rmsprop_steps(w, g, avg_sq, hyper):
    real = w.dtype.type
    lr = real(hyper[1])
    rho = real(hyper[2])
    epsilon = real(hyper[3])
    b = real(1.0 - hyper[2])
    for i in range(w.size):
        gi = real(g[i])
        vel = rho * real(avg_sq[i]) + b * (gi * gi)
        avg_sq[i] = vel
        w[i] = w[i] - np.divide(lr * gi, np.sqrt(vel + epsilon))


@kernel
def _adam_steps(w, g, m, v, hyper):
    t = np.int64(hyper[0])
    beta_1 = hyper[2]
    beta_2 = hyper[3]
    real = w.dtype.type
    alpha = real(hyper[1] * math.sqrt(1.0 - beta_2 ** t) / (1.0 - beta_1 ** t))
    epsilon = real(hyper[4])
    a = real(1.0 - beta_1)
    b = real(1.0 - beta_2)
    for i in range(w.size):
        gi = real(g[i])
        m0 = real(m[i])
        v0 = real(v[i])
        mi = m0 + (gi - m0) * a
        vi = v0 + (gi * gi - v0) * b
        m[i] = mi
        v[i] = vi
        w[i] = w[i] - np.divide(alpha * mi, np.sqrt(vi) + epsilon)


@kernel
def _nadam_steps(w, g, m, v, hyper):
    t = np.int64(hyper[0])
    lr = hyper[1]
    beta_1 = hyper[2]
    beta_2 = hyper[3]
    epsilon = hyper[4]
    u_t = beta_1 * (1.0 - 0.5 * 0.96 ** t)
    u_t1 = beta_1 * (1.0 - 0.5 * 0.96 ** (t + 1))
    u_prod = hyper[5]
    c_m = np.divide(u_t1, 1.0 - u_prod * u_t1)
    c_g = np.divide(1.0 - u_t, 1.0 - u_prod)
    bias_2 = 1.0 - beta_2 ** t
    a = 1.0 - beta_1
    b = 1.0 - beta_2
    for i in range(w.size):
        gi = float(g[i])
        mi = m[i] + (gi - m[i]) * a
        vi = v[i] + (gi * gi - v[i]) * b
        m[i] = mi
        v[i] = vi
        m_hat = c_m * mi + c_g * gi
        w[i] = w[i] - np.divide(m_hat * lr, math.sqrt(np.divide(vi, bias_2)) + epsilon)


@kernel
def _adamax_steps(w, g, m, u, hyper):
    t = np.int64(hyper[0])
    lr = hyper[1]
    beta_1 = hyper[2]
    beta_2 = hyper[3]
    epsilon = hyper[4]
    bias_1 = 1.0 - beta_1 ** t
    a = 1.0 - beta_1
    for i in range(w.size):
        gi = float(g[i])
        mi = m[i] + (gi - m[i]) * a
        ui = max(beta_2 * u[i], abs(gi))
        m[i] = mi
        u[i] = ui
        w[i] = w[i] - np.divide(lr * mi, bias_1 * (ui + epsilon))


@kernel
def _adagrad_steps(w, g, acc, hyper):
    lr = hyper[1]
    epsilon = hyper[2]
    for i in range(w.size):
        gi = float(g[i])
        ai = acc[i] + gi * gi
        acc[i] = ai
        w[i] = w[i] - np.divide(lr * gi, math.sqrt(ai + epsilon))


@kernel
def _adadelta_steps(w, g, acc_grad, acc_delta, hyper):
    lr = hyper[1]
    rho = hyper[2]
    epsilon = hyper[3]
    b = 1.0 - rho
    for i in range(w.size):
        gi = float(g[i])
        ag = rho * acc_grad[i] + b * (gi * gi)
        acc_grad[i] = ag
        delta = -np.divide(math.sqrt(acc_delta[i] + epsilon) * gi, math.sqrt(ag + epsilon))
        acc_delta[i] = rho * acc_delta[i] + b * (delta * delta)
        w[i] = w[i] + lr * delta


@kernel
def _lion_steps(w, g, m, hyper):
    lr = hyper[1]
    beta_1 = hyper[2]
    beta_2 = hyper[3]
    for i in range(w.size):
        gi = float(g[i])
        c = m[i] * beta_1 + gi * (1.0 - beta_1)
        s = 1.0 if c > 0.0 else (-1.0 if c < 0.0 else c)  # sign; NaN stays NaN
        w[i] = w[i] - lr * s
        m[i] = m[i] * beta_2 + gi * (1.0 - beta_2)


# ----- checks -------------------------------------------------------------------------------
@kernel
def _sizes_sgd(w, g, velocity, hyper):
    n = w.size
    if g.size != n:
        raise ValueError("sgd_update: w and g sizes differ")
    _check_hyper(hyper, 4)
    if hyper[2] != 0.0 and velocity.size != n:
        raise ValueError("sgd_update: velocity size differs from w")


@kernel
def _sizes_2(w, g, s):
    if g.size != w.size or s.size != w.size:
        raise ValueError("optimizer update: w, g and the slot sizes differ")


@kernel
def _sizes_3(w, g, s, s2):
    if g.size != w.size or s.size != w.size or s2.size != w.size:
        raise ValueError("optimizer update: w, g and the slot sizes differ")


# ----- whole updates (check, count, step) and their ranges (``*_part``) ---------------------
@kernel
def sgd_update(w, g, velocity, hyper):
    """Keras 3 SGD step in place; ``hyper = [iterations, lr, momentum, nesterov]``.

    ``velocity`` is neither read nor written (and may be empty) when ``momentum == 0``, as
    Keras then keeps no momentum slot; ``nesterov`` is true when non-zero. Arithmetic in
    the buffers' dtype, as Keras (``lr`` and ``momentum`` rounded to it once).
    """
    _sizes_sgd(w, g, velocity, hyper)
    hyper[0] += 1.0
    _sgd_steps(w, g, velocity, hyper)


@kernel
def sgd_part(w, g, velocity, hyper):
    """:func:`sgd_update` on one range, after :func:`advance_step` counted the step."""
    _sizes_sgd(w, g, velocity, hyper)
    _sgd_steps(w, g, velocity, hyper)


@kernel
def rmsprop_update(w, g, avg_sq, hyper):
    """Keras 3 RMSprop step in place (``centered=False``, ``momentum=0``);
    ``hyper = [iterations, lr, rho, epsilon]``; ``avg_sq`` is Keras' ``velocity`` slot.

    Arithmetic in the buffers' dtype, as Keras (see the module notes); ``g`` and ``avg_sq``
    must have ``w``'s dtype.
    """
    if g.size != w.size or avg_sq.size != w.size:
        raise ValueError("rmsprop_update: w, g, avg_sq sizes differ")
    _check_hyper(hyper, 4)
    hyper[0] += 1.0
    _rmsprop_steps(w, g, avg_sq, hyper)


@kernel
def rmsprop_part(w, g, avg_sq, hyper):
    """:func:`rmsprop_update` on one range, after :func:`advance_step` counted the step."""
    _sizes_2(w, g, avg_sq)
    _check_hyper(hyper, 4)
    _rmsprop_steps(w, g, avg_sq, hyper)


@kernel
def adam_update(w, g, m, v, hyper):
    """Keras 3 Adam step in place (``amsgrad=False``);
    ``hyper = [iterations, lr, beta_1, beta_2, epsilon]``, iterations counting steps already
    taken (so this step's ``t`` is ``iterations + 1``).

    Arithmetic in the buffers' dtype, as Keras, except ``alpha`` (one float64 scalar,
    rounded once); ``g``, ``m``, ``v`` must have ``w``'s dtype.
    """
    n = w.size
    if g.size != n or m.size != n or v.size != n:
        raise ValueError("adam_update: w, g, m, v sizes differ")
    _check_hyper(hyper, 5)
    if hyper[0] < 0.0:
        raise ValueError("adam_update: hyper[0] counts the steps taken and cannot be negative")
    hyper[0] += 1.0
    _adam_steps(w, g, m, v, hyper)


@kernel
def adam_part(w, g, m, v, hyper):
    """:func:`adam_update` on one range, after :func:`advance_step` counted the step."""
    _sizes_3(w, g, m, v)
    _check_hyper(hyper, 5)
    _adam_steps(w, g, m, v, hyper)


@kernel
def nadam_update(w, g, m, v, hyper):
    """Keras 3 Nadam step in place;
    ``hyper = [iterations, lr, beta_1, beta_2, epsilon, u_product]`` (u_product starts at
    1.0 and this kernel multiplies it by this step's momentum-cache factor)."""
    n = w.size
    if g.size != n or m.size != n or v.size != n:
        raise ValueError("nadam_update: w, g, m, v sizes differ")
    _begin(hyper, 6, "nadam_update")
    _nadam_advance(hyper)
    _nadam_steps(w, g, m, v, hyper)


@kernel
def nadam_part(w, g, m, v, hyper):
    """:func:`nadam_update` on one range, after :func:`advance_step` counted the step."""
    _sizes_3(w, g, m, v)
    _check_hyper(hyper, 6)
    _nadam_steps(w, g, m, v, hyper)


@kernel
def adamax_update(w, g, m, u, hyper):
    """Keras 3 Adamax step in place; ``hyper = [iterations, lr, beta_1, beta_2, epsilon]``."""
    n = w.size
    if g.size != n or m.size != n or u.size != n:
        raise ValueError("adamax_update: w, g, m, u sizes differ")
    _begin(hyper, 5, "adamax_update")
    _adamax_steps(w, g, m, u, hyper)


@kernel
def adamax_part(w, g, m, u, hyper):
    """:func:`adamax_update` on one range, after :func:`advance_step` counted the step."""
    _sizes_3(w, g, m, u)
    _check_hyper(hyper, 5)
    _adamax_steps(w, g, m, u, hyper)


@kernel
def adagrad_update(w, g, acc, hyper):
    """Keras 3 Adagrad step in place; ``hyper = [iterations, lr, epsilon]``; ``acc`` starts
    at ``initial_accumulator_value``."""
    n = w.size
    if g.size != n or acc.size != n:
        raise ValueError("adagrad_update: w, g, acc sizes differ")
    _begin(hyper, 3, "adagrad_update")
    _adagrad_steps(w, g, acc, hyper)


@kernel
def adagrad_part(w, g, acc, hyper):
    """:func:`adagrad_update` on one range, after :func:`advance_step` counted the step."""
    _sizes_2(w, g, acc)
    _check_hyper(hyper, 3)
    _adagrad_steps(w, g, acc, hyper)


@kernel
def adadelta_update(w, g, acc_grad, acc_delta, hyper):
    """Keras 3 Adadelta step in place; ``hyper = [iterations, lr, rho, epsilon]``."""
    n = w.size
    if g.size != n or acc_grad.size != n or acc_delta.size != n:
        raise ValueError("adadelta_update: w, g, acc_grad, acc_delta sizes differ")
    _begin(hyper, 4, "adadelta_update")
    _adadelta_steps(w, g, acc_grad, acc_delta, hyper)


@kernel
def adadelta_part(w, g, acc_grad, acc_delta, hyper):
    """:func:`adadelta_update` on one range, after :func:`advance_step` counted the step."""
    _sizes_3(w, g, acc_grad, acc_delta)
    _check_hyper(hyper, 4)
    _adadelta_steps(w, g, acc_grad, acc_delta, hyper)


@kernel
def lion_update(w, g, m, hyper):
    """Keras 3 Lion step in place; ``hyper = [iterations, lr, beta_1, beta_2]``."""
    n = w.size
    if g.size != n or m.size != n:
        raise ValueError("lion_update: w, g, m sizes differ")
    _begin(hyper, 4, "lion_update")
    _lion_steps(w, g, m, hyper)


@kernel
def lion_part(w, g, m, hyper):
    """:func:`lion_update` on one range, after :func:`advance_step` counted the step."""
    _sizes_2(w, g, m)
    _check_hyper(hyper, 4)
    _lion_steps(w, g, m, hyper)


@kernel
def clip_and_decay(w, g, offsets, norms, hyper, prep):
    """Keras 3's gradient clipping (``g`` in place) then decoupled weight decay (``w`` in
    place, with the learning rate ``hyper[1]``); ``prep = [mode, clip, weight_decay]``,
    mode 0 none, 1 clipnorm per variable (``offsets`` bounds them), 2 global_clipnorm,
    3 clipvalue. Does not count a step."""
    n = w.size
    if g.size != n:
        raise ValueError("clip_and_decay: w and g sizes differ")
    if prep.size < 3 or hyper.size < 2:
        raise ValueError("clip_and_decay: prep needs 3 elements and hyper 2")
    mode = np.int64(prep[0])
    c = prep[1]
    wd = prep[2]
    nseg = offsets.size - 1
    if mode == 1 or mode == 2:
        if nseg < 0 or norms.size < nseg or (nseg > 0 and offsets[nseg] > n):
            raise ValueError("clip_and_decay: offsets or norms do not fit the buffers")
        for k in range(nseg):
            s = 0.0
            for i in range(offsets[k], offsets[k + 1]):
                gi = float(g[i])
                s += gi * gi
            norms[k] = s
        if mode == 1:
            for k in range(nseg):
                d = max(math.sqrt(norms[k]), c)
                for i in range(offsets[k], offsets[k + 1]):
                    g[i] = np.divide(g[i] * c, d)
        else:
            total = 0.0
            for k in range(nseg):
                total += norms[k]
            norm = math.sqrt(total)
            scale = c * min(np.divide(1.0, norm), np.divide(1.0, c)) + (norm - norm)
            for i in range(n):
                g[i] = g[i] * scale
    elif mode == 3:
        for i in range(n):
            g[i] = min(max(g[i], -c), c)
    if wd != 0.0:
        f = wd * hyper[1]
        for i in range(n):
            w[i] = w[i] - w[i] * f
