"""Optimizer kernels against hand-computed Keras 3 updates.

Expected numbers are written out by hand (or from the Keras docstring example) for the
first steps; longer runs compare with a scalar reference written here in the textbook
form, independently of the kernels' arithmetic. Both the serial path (small buffers)
and large buffers (the size of a real model) are exercised. The hyperparameters travel in
an array whose element 0 counts the steps; the updates are also checked bit for bit
against copies of the kernels as they were when the scalars were arguments.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit

from nexec.kernels.cpu.optimizer import adam_update, rmsprop_update, sgd_update
from nexec.testing import assert_close

DTYPES = [np.float64, np.float32]
W0 = [1.0, -2.0, 0.5]
G1 = [0.1, -0.3, 2.0]
G2 = [0.2, 0.1, -1.0]


def arr(values, dtype):
    return np.array(values, dtype=dtype)


def tol(dtype):
    return 1e-12 if dtype == np.float64 else 1e-6


def sgd_h(lr, momentum, nesterov, iterations=0.0):
    return np.array([iterations, lr, momentum, 1.0 if nesterov else 0.0])


def rms_h(lr, rho, epsilon, iterations=0.0):
    return np.array([iterations, lr, rho, epsilon])


def adam_h(lr, beta_1, beta_2, epsilon, iterations=0.0):
    return np.array([iterations, lr, beta_1, beta_2, epsilon])


# ----------------------------------------------------------------- SGD


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_plain_two_steps(dtype):
    w = arr(W0, dtype)
    empty = np.empty(0, dtype)  # no momentum slot is needed without momentum
    sgd_update(w, arr(G1, dtype), empty, sgd_h(0.1, 0.0, False))
    assert_close(w, np.array([0.99, -1.97, 0.3]), rtol=tol(dtype))
    sgd_update(w, arr(G2, dtype), empty, sgd_h(0.1, 0.0, False))
    assert_close(w, np.array([0.97, -1.98, 0.4]), rtol=tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_momentum_two_steps(dtype):
    w, vel = arr(W0, dtype), np.zeros(3, dtype)
    sgd_update(w, arr(G1, dtype), vel, sgd_h(0.1, 0.9, False))
    # velocity = 0.9 * 0 - 0.1 * g1 ; w += velocity
    assert_close(vel, np.array([-0.01, 0.03, -0.2]), rtol=tol(dtype))
    assert_close(w, np.array([0.99, -1.97, 0.3]), rtol=tol(dtype))
    sgd_update(w, arr(G2, dtype), vel, sgd_h(0.1, 0.9, False))
    # velocity = 0.9 * [-0.01, 0.03, -0.2] - 0.1 * [0.2, 0.1, -1.0]
    assert_close(vel, np.array([-0.029, 0.017, -0.08]), rtol=tol(dtype))
    assert_close(w, np.array([0.961, -1.953, 0.22]), rtol=tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_nesterov_two_steps(dtype):
    w, vel = arr(W0, dtype), np.zeros(3, dtype)
    sgd_update(w, arr(G1, dtype), vel, sgd_h(0.1, 0.9, True))
    # w += 0.9 * velocity - 0.1 * g1 = [-0.009 - 0.01, 0.027 + 0.03, -0.18 - 0.2]
    assert_close(vel, np.array([-0.01, 0.03, -0.2]), rtol=tol(dtype))
    assert_close(w, np.array([0.981, -1.943, 0.12]), rtol=tol(dtype))
    sgd_update(w, arr(G2, dtype), vel, sgd_h(0.1, 0.9, True))
    # w += 0.9 * [-0.029, 0.017, -0.08] - 0.1 * g2 = [-0.0461, 0.0053, 0.028]
    assert_close(vel, np.array([-0.029, 0.017, -0.08]), rtol=tol(dtype))
    assert_close(w, np.array([0.9349, -1.9377, 0.148]), rtol=tol(dtype))


# ----------------------------------------------------------------- RMSprop


@pytest.mark.parametrize("dtype", DTYPES)
def test_rmsprop_keras_docstring_example(dtype):
    # keras.optimizers.RMSprop(learning_rate=0.1); var = 10, loss = var**2 / 2 -> 9.683772
    w, vel = arr([10.0], dtype), np.zeros(1, dtype)
    rmsprop_update(w, arr([10.0], dtype), vel, rms_h(0.1, 0.9, 1e-7))
    assert_close(vel, np.array([10.0]), rtol=tol(dtype))
    assert abs(float(w[0]) - 9.683772) < (1e-6 if dtype == np.float64 else 2e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rmsprop_epsilon_inside_sqrt(dtype):
    # epsilon = 1: inside the sqrt 10 - 1 / sqrt(11) = 9.69849, outside it would give
    # 10 - 1 / (sqrt(10) + 1) = 9.75975.
    w, vel = arr([10.0], dtype), np.zeros(1, dtype)
    rmsprop_update(w, arr([10.0], dtype), vel, rms_h(0.1, 0.9, 1.0))
    assert_close(w, np.array([9.698488655422236]), rtol=tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_rmsprop_two_steps(dtype):
    w, vel = arr(W0, dtype), np.zeros(3, dtype)
    rmsprop_update(w, arr(G1, dtype), vel, rms_h(0.01, 0.8, 1e-7))
    g1 = np.array(G1)
    v1 = 0.2 * g1 ** 2
    w1 = np.array(W0) - 0.01 * g1 / np.sqrt(v1 + 1e-7)
    assert_close(vel, v1, rtol=tol(dtype))
    assert_close(w, w1, rtol=tol(dtype))
    rmsprop_update(w, arr(G2, dtype), vel, rms_h(0.01, 0.8, 1e-7))
    g2 = np.array(G2)
    v2 = 0.8 * v1 + 0.2 * g2 ** 2
    assert_close(vel, v2, rtol=tol(dtype))
    assert_close(w, w1 - 0.01 * g2 / np.sqrt(v2 + 1e-7), rtol=tol(dtype))


# ----------------------------------------------------------------- Adam


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_first_step_from_scratch(dtype):
    # t = 1: m = 0.1 g, v = 0.001 g^2, alpha = lr sqrt(0.001) / 0.1, so
    # w -= lr * sqrt(0.001) * g / (sqrt(0.001) |g| + eps); with eps = 0.1, g = 1:
    # 0.1 * 0.0316227766 / 0.1316227766 = 0.0240253073. (A bias-corrected epsilon, as in
    # Algorithm 1 of the paper, would give 0.1 / 1.1 = 0.0909 instead.)
    w, m, v = arr([1.0, 1.0], dtype), np.zeros(2, dtype), np.zeros(2, dtype)
    adam_update(w, arr([1.0, -1.0], dtype), m, v, adam_h(0.1, 0.9, 0.999, 0.1))
    assert_close(m, np.array([0.1, -0.1]), rtol=tol(dtype))
    assert_close(v, np.array([0.001, 0.001]), rtol=tol(dtype))
    assert_close(w, np.array([1.0 - 0.0240253073, 1.0 + 0.0240253073]),
                 rtol=1e-9 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_first_step_is_lr_sign_g_with_default_epsilon(dtype):
    w, m, v = arr(W0, dtype), np.zeros(3, dtype), np.zeros(3, dtype)
    adam_update(w, arr(G1, dtype), m, v, adam_h(0.001, 0.9, 0.999, 1e-7))
    g = np.abs(np.array(G1))
    shrink = 1.0 - 1e-7 / (math.sqrt(0.001) * g + 1e-7)
    expected = np.array(W0) - 0.001 * np.sign(G1) * shrink
    assert_close(w, expected, rtol=tol(dtype))


def ref_adam(w, grads, lr, b1, b2, eps):
    """Textbook Adam with Keras' epsilon-hat, one float64 scalar at a time."""
    w = [float(x) for x in w]
    m = [0.0] * len(w)
    v = [0.0] * len(w)
    for t, g in enumerate(grads, start=1):
        lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        for i, gi in enumerate(g):
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            w[i] -= lr_t * m[i] / (math.sqrt(v[i]) + eps)
    return np.array(w), np.array(m), np.array(v)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_several_steps(dtype):
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=7)
    grads = [rng.normal(size=7) for _ in range(5)]
    w, m, v = w0.astype(dtype), np.zeros(7, dtype), np.zeros(7, dtype)
    hyper = adam_h(0.05, 0.8, 0.99, 1e-3)
    for g in grads:
        adam_update(w, g.astype(dtype), m, v, hyper)
    assert hyper.tolist() == [5.0, 0.05, 0.8, 0.99, 1e-3]
    ew, em, ev = ref_adam(w0, grads, 0.05, 0.8, 0.99, 1e-3)
    rt = 1e-10 if dtype == np.float64 else 1e-5
    assert_close(m, em, rtol=rt)
    assert_close(v, ev, rtol=rt)
    assert_close(w - w0, ew - w0, rtol=rt * 10, what="total update")


def test_adam_rejects_a_negative_count():
    z = np.zeros(2)
    hyper = adam_h(0.1, 0.9, 0.999, 1e-7, iterations=-1.0)
    with pytest.raises(ValueError, match="cannot be negative"):
        adam_update(z.copy(), z, z.copy(), z.copy(), hyper)
    assert hyper[0] == -1.0


# ----------------------------------------------------------------- large buffers


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_buffer_matches_numpy(dtype):
    n = 70001
    rng = np.random.default_rng(1)
    w0, g = rng.normal(size=n), rng.normal(size=n)
    s0 = rng.uniform(0.0, 1.0, size=n)  # a non-zero starting slot
    rt = 1e-12 if dtype == np.float64 else 1e-6

    for nesterov in (False, True):
        w, vel = w0.astype(dtype), s0.astype(dtype)
        sgd_update(w, g.astype(dtype), vel, sgd_h(0.1, 0.9, nesterov))
        ev = 0.9 * s0 - 0.1 * g
        ew = w0 + (0.9 * ev - 0.1 * g if nesterov else ev)
        assert_close(vel, ev, rtol=rt)
        assert_close(w, ew, rtol=rt)

    w = w0.astype(dtype)
    sgd_update(w, g.astype(dtype), np.empty(0, dtype), sgd_h(0.1, 0.0, False))
    assert_close(w, w0 - 0.1 * g, rtol=rt)

    w, vel = w0.astype(dtype), s0.astype(dtype)
    rmsprop_update(w, g.astype(dtype), vel, rms_h(0.01, 0.9, 1e-7))
    ev = 0.9 * s0 + 0.1 * g * g
    assert_close(vel, ev, rtol=rt)
    assert_close(w, w0 - 0.01 * g / np.sqrt(ev + 1e-7), rtol=rt)

    w, m, v = w0.astype(dtype), s0.astype(dtype), (s0 ** 2).astype(dtype)
    hyper = adam_h(0.01, 0.9, 0.999, 1e-7, iterations=2.0)  # resumes: this is step t = 3
    adam_update(w, g.astype(dtype), m, v, hyper)
    assert hyper[0] == 3.0
    em = 0.9 * s0 + 0.1 * g
    ev = 0.999 * s0 ** 2 + 0.001 * g * g
    alpha = 0.01 * math.sqrt(1 - 0.999 ** 3) / (1 - 0.9 ** 3)
    assert_close(m, em, rtol=rt)
    assert_close(v, ev, rtol=rt)
    assert_close(w, w0 - alpha * em / (np.sqrt(ev) + 1e-7), rtol=rt)


def test_size_mismatch_raises_before_counting():
    w = np.zeros(4)
    h = sgd_h(0.1, 0.9, False)
    with pytest.raises(ValueError):
        sgd_update(w, np.zeros(3), np.zeros(4), h)
    with pytest.raises(ValueError, match="velocity"):
        sgd_update(w, np.zeros(4), np.zeros(0), h)  # momentum needs the slot
    assert h[0] == 0.0
    h = rms_h(0.1, 0.9, 1e-7)
    with pytest.raises(ValueError):
        rmsprop_update(w, np.zeros(4), np.zeros(3), h)
    with pytest.raises(ValueError, match="too short"):
        rmsprop_update(w, np.zeros(4), np.zeros(4), h[:3])
    assert h[0] == 0.0
    h = adam_h(0.1, 0.9, 0.999, 1e-7)
    with pytest.raises(ValueError):
        adam_update(w, np.zeros(4), np.zeros(4), np.zeros(5), h)
    with pytest.raises(ValueError, match="too short"):
        adam_update(w, np.zeros(4), np.zeros(4), np.zeros(4), h[:4])
    assert h[0] == 0.0


# ----------------------------------------------------------------- the hyper array


@pytest.mark.parametrize("dtype", DTYPES)
def test_hyper_counts_steps_and_is_otherwise_read_only(dtype):
    rng = np.random.default_rng(2)
    w = rng.normal(size=5).astype(dtype)
    g = rng.normal(size=5).astype(dtype)
    cases = [
        (lambda h: sgd_update(w, g, np.zeros(5, dtype), h), sgd_h(0.1, 0.9, True, 7.0)),
        (lambda h: sgd_update(w, g, np.empty(0, dtype), h), sgd_h(0.1, 0.0, False)),
        (lambda h: rmsprop_update(w, g, np.zeros(5, dtype), h), rms_h(0.01, 0.9, 1e-7)),
        (lambda h: adam_update(w, g, np.zeros(5, dtype), np.zeros(5, dtype), h),
         adam_h(0.001, 0.9, 0.999, 1e-7)),
    ]
    for step, hyper in cases:
        start = hyper.copy()
        for k in range(1, 4):
            step(hyper)
            assert hyper[0] == start[0] + k
            assert np.array_equal(hyper[1:], start[1:])


@pytest.mark.parametrize("dtype", DTYPES)
def test_learning_rate_is_read_at_every_step(dtype):
    """A schedule writes hyper[1] between steps; the next update uses the new value."""
    w = arr(W0, dtype)
    hyper = sgd_h(0.1, 0.0, False)
    sgd_update(w, arr(G1, dtype), np.empty(0, dtype), hyper)
    hyper[1] = 0.5
    sgd_update(w, arr(G2, dtype), np.empty(0, dtype), hyper)
    expected = np.array(W0) - 0.1 * np.array(G1) - 0.5 * np.array(G2)
    assert_close(w, expected, rtol=tol(dtype))


# Copies of the kernels as they were when the hyperparameters were scalar arguments.


@njit
def old_sgd(w, g, velocity, lr, momentum, nesterov):
    n = w.size
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


@njit
def old_rmsprop(w, g, velocity, lr, rho, epsilon):
    real = w.dtype.type  # arithmetic in the buffers' dtype, as Keras
    b = real(1.0 - rho)
    lr, rho, epsilon = real(lr), real(rho), real(epsilon)
    for i in range(w.size):
        gi = g[i]
        vel = rho * velocity[i] + b * (gi * gi)
        velocity[i] = vel
        w[i] = w[i] - np.divide(lr * gi, np.sqrt(vel + epsilon))


@njit
def old_adam(w, g, m, v, lr, beta_1, beta_2, epsilon, t):
    real = w.dtype.type
    alpha = real(lr * math.sqrt(1.0 - beta_2 ** t) / (1.0 - beta_1 ** t))
    a = real(1.0 - beta_1)
    b = real(1.0 - beta_2)
    epsilon = real(epsilon)
    for i in range(w.size):
        gi = g[i]
        mi = m[i] + (gi - m[i]) * a
        vi = v[i] + (gi * gi - v[i]) * b
        m[i] = mi
        v[i] = vi
        w[i] = w[i] - np.divide(alpha * mi, np.sqrt(vi) + epsilon)


def same_bits(a, b):
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_bits_identical_to_scalar_argument_kernels(dtype):
    rng = np.random.default_rng(3)
    n, steps = 1001, 12  # odd size: vector loop and remainder; t up to 12 in beta ** t
    w0 = (rng.normal(size=n) * 3).astype(dtype)
    grads = [(rng.normal(size=n) * 10.0 ** rng.integers(-4, 3, size=n)).astype(dtype)
             for _ in range(steps)]

    for momentum, nesterov in ((0.0, False), (0.9, False), (0.95, True)):
        if dtype != np.float64:  # SGD now computes in float32 (test_sgd_computes_in_...)
            break
        w, vel, ow, ovel = w0.copy(), np.zeros(n, dtype), w0.copy(), np.zeros(n, dtype)
        hyper = sgd_h(0.0123, momentum, nesterov)
        for g in grads:
            sgd_update(w, g, vel, hyper)
            old_sgd(ow, g, ovel, 0.0123, momentum, nesterov)
        assert same_bits(w, ow) and same_bits(vel, ovel), (momentum, nesterov)

    w, s, ow, os_ = w0.copy(), np.zeros(n, dtype), w0.copy(), np.zeros(n, dtype)
    hyper = rms_h(0.00321, 0.87, 1e-7)
    for g in grads:
        rmsprop_update(w, g, s, hyper)
        old_rmsprop(ow, g, os_, 0.00321, 0.87, 1e-7)
    assert same_bits(w, ow) and same_bits(s, os_)

    w, m, v = w0.copy(), np.zeros(n, dtype), np.zeros(n, dtype)
    ow, om, ov = w0.copy(), np.zeros(n, dtype), np.zeros(n, dtype)
    hyper = adam_h(0.00137, 0.9, 0.999, 1e-7)
    for t, g in enumerate(grads, start=1):
        adam_update(w, g, m, v, hyper)
        old_adam(ow, g, om, ov, 0.00137, 0.9, 0.999, 1e-7, t)
        assert same_bits(w, ow) and same_bits(m, om) and same_bits(v, ov), f"step {t}"
    assert hyper[0] == steps


@pytest.mark.parametrize("dtype", DTYPES)
def test_rmsprop_and_adam_compute_in_the_buffer_dtype(dtype):
    """Keras 3 computes the update in the variable's dtype: each step equals NumPy's
    arithmetic in that dtype bit for bit (float32 too), and a float64 reference to float32
    rounding."""
    rng = np.random.default_rng(11)
    n = 517
    real = np.dtype(dtype).type
    w0 = rng.normal(size=n).astype(dtype)
    grads = [(rng.normal(size=n) * 10.0 ** rng.integers(-4, 2, size=n)).astype(dtype)
             for _ in range(5)]
    w, s = w0.copy(), np.zeros(n, dtype)
    rw, rs = w0.copy(), np.zeros(n, dtype)
    fw, fs = w0.astype(np.float64), np.zeros(n)
    hyper = rms_h(0.001, 0.9, 1e-7)
    for g in grads:
        rmsprop_update(w, g, s, hyper)
        rs = real(0.9) * rs + real(1.0 - 0.9) * (g * g)
        rw = rw - (real(0.001) * g) / np.sqrt(rs + real(1e-7))
        fs = 0.9 * fs + 0.1 * g.astype(np.float64) ** 2
        fw = fw - 0.001 * g / np.sqrt(fs + 1e-7)
        assert same_bits(w, rw) and same_bits(s, rs)
    # float32: w's own rounding (1 ulp of |w| ~ 1 per step) against updates of ~0.005
    assert_close(w - w0, fw - w0, rtol=1e-4 if dtype == np.float32 else 1e-9,
                 what="rmsprop total update")

    w, m, v = w0.copy(), np.zeros(n, dtype), np.zeros(n, dtype)
    rw, rm, rv = w0.copy(), np.zeros(n, dtype), np.zeros(n, dtype)
    hyper = adam_h(0.001, 0.9, 0.999, 1e-7)
    for t, g in enumerate(grads, start=1):
        adam_update(w, g, m, v, hyper)
        alpha = real(0.001 * math.sqrt(1.0 - 0.999 ** t) / (1.0 - 0.9 ** t))
        rm = rm + (g - rm) * real(1.0 - 0.9)
        rv = rv + (g * g - rv) * real(1.0 - 0.999)
        rw = rw - (alpha * rm) / (np.sqrt(rv) + real(1e-7))
        np.testing.assert_allclose(w, rw, rtol=2e-7 if dtype == np.float32 else 1e-15)
        np.testing.assert_allclose(m, rm, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_computes_in_the_buffer_dtype(dtype, momentum, nesterov):
    """Keras 3's SGD (``keras/src/optimizers/sgd.py``): lr and momentum cast to the
    variable's dtype, ``m = m * momentum - g * lr``, then ``w += m`` or, Nesterov,
    ``w += m * momentum - g * lr``; each step equals NumPy's arithmetic in that dtype bit for
    bit (float64 buffers: the float64 update as before)."""
    rng = np.random.default_rng(12)
    n = 517
    real = np.dtype(dtype).type
    lr, mom = real(0.0123), real(momentum)
    w0 = rng.normal(size=n).astype(dtype)
    grads = [(rng.normal(size=n) * 10.0 ** rng.integers(-4, 2, size=n)).astype(dtype)
             for _ in range(5)]
    w, vel = w0.copy(), np.zeros(n, dtype)
    rw, rv = w0.copy(), np.zeros(n, dtype)
    fw = w0.astype(np.float64)
    fv = np.zeros(n)
    hyper = sgd_h(0.0123, momentum, nesterov)
    for g in grads:
        sgd_update(w, g, vel, hyper)
        g64 = g.astype(np.float64)
        if momentum == 0.0:
            rw = rw - g * lr
            fw = fw - g64 * 0.0123
        else:
            rv = rv * mom - g * lr
            rw = rw + (rv * mom - g * lr if nesterov else rv)
            fv = fv * momentum - g64 * 0.0123
            fw = fw + (fv * momentum - g64 * 0.0123 if nesterov else fv)
            assert same_bits(vel, rv)
        assert same_bits(w, rw)
    assert hyper[0] == len(grads)
    assert_close(w - w0, fw - w0, rtol=1e-3 if dtype == np.float32 else 1e-9,
                 what="sgd total update")
