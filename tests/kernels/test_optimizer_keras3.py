"""The Nadam, Adamax, Adagrad, Adadelta, Lion and clip_and_decay kernels against plain
NumPy references written from Keras 3's ``update_step`` formulas (float64 arithmetic),
over several steps, in float64 and float32."""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels.cpu import optimizer as k

DTYPES = [np.float64, np.float32]
N, STEPS = 11, 4


def tol(dtype):
    return 1e-12 if dtype == np.float64 else 2e-6


def run(dtype, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(N)
    grads = [rng.standard_normal(N) for _ in range(STEPS)]
    grads[1][3] = 0.0  # a zero gradient (Lion's sign(0), Adamax's max)
    return w.astype(dtype), [g.astype(dtype) for g in grads]


def ref_nadam(w, grads, lr, b1, b2, eps):
    w, m, v, up = w.astype(np.float64), np.zeros(N), np.zeros(N), 1.0
    for t, g in enumerate(grads, 1):
        g = g.astype(np.float64)
        u_t, u_t1 = b1 * (1 - 0.5 * 0.96 ** t), b1 * (1 - 0.5 * 0.96 ** (t + 1))
        up = up * u_t
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        m_hat = u_t1 * m / (1 - up * u_t1) + (1 - u_t) * g / (1 - up)
        w = w - m_hat * lr / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return w, up


def ref_adamax(w, grads, lr, b1, b2, eps):
    w, m, u = w.astype(np.float64), np.zeros(N), np.zeros(N)
    for t, g in enumerate(grads, 1):
        m = m + (g - m) * (1 - b1)
        u = np.maximum(b2 * u, np.abs(g))
        w = w - lr * m / ((1 - b1 ** t) * (u + eps))
    return w


def ref_adagrad(w, grads, lr, init, eps):
    w, acc = w.astype(np.float64), np.full(N, init)
    for g in grads:
        acc = acc + g.astype(np.float64) ** 2
        w = w - lr * g / np.sqrt(acc + eps)
    return w


def ref_adadelta(w, grads, lr, rho, eps):
    w, ag, ad = w.astype(np.float64), np.zeros(N), np.zeros(N)
    for g in grads:
        g = g.astype(np.float64)
        ag = rho * ag + (1 - rho) * g * g
        delta = -np.sqrt(ad + eps) * g / np.sqrt(ag + eps)
        ad = rho * ad + (1 - rho) * delta * delta
        w = w + lr * delta
    return w


def ref_lion(w, grads, lr, b1, b2):
    w, m = w.astype(np.float64), np.zeros(N)
    for g in grads:
        w = w - lr * np.sign(m * b1 + g * (1 - b1))
        m = m * b2 + g * (1 - b2)
    return w


@pytest.mark.parametrize("dtype", DTYPES)
def test_nadam(dtype):
    w, grads = run(dtype)
    want, up = ref_nadam(w, grads, 0.01, 0.9, 0.999, 1e-7)
    m, v = np.zeros(N, dtype), np.zeros(N, dtype)
    hyper = np.array([0.0, 0.01, 0.9, 0.999, 1e-7, 1.0])
    for g in grads:
        k.nadam_update(w, g, m, v, hyper)
    np.testing.assert_allclose(w, want, rtol=tol(dtype), atol=tol(dtype))
    assert hyper[0] == STEPS
    np.testing.assert_allclose(hyper[5], up, rtol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adamax(dtype):
    w, grads = run(dtype, 1)
    want = ref_adamax(w, grads, 0.02, 0.8, 0.99, 1e-7)
    m, u = np.zeros(N, dtype), np.zeros(N, dtype)
    hyper = np.array([0.0, 0.02, 0.8, 0.99, 1e-7])
    for g in grads:
        k.adamax_update(w, g, m, u, hyper)
    np.testing.assert_allclose(w, want, rtol=tol(dtype), atol=tol(dtype))
    assert hyper[0] == STEPS


@pytest.mark.parametrize("dtype", DTYPES)
def test_adagrad(dtype):
    w, grads = run(dtype, 2)
    want = ref_adagrad(w, grads, 0.1, 0.1, 1e-7)
    acc = np.full(N, 0.1, dtype)
    hyper = np.array([0.0, 0.1, 1e-7])
    for g in grads:
        k.adagrad_update(w, g, acc, hyper)
    np.testing.assert_allclose(w, want, rtol=tol(dtype), atol=tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_adadelta(dtype):
    w, grads = run(dtype, 3)
    want = ref_adadelta(w, grads, 1.0, 0.95, 1e-6)
    ag, ad = np.zeros(N, dtype), np.zeros(N, dtype)
    hyper = np.array([0.0, 1.0, 0.95, 1e-6])
    for g in grads:
        k.adadelta_update(w, g, ag, ad, hyper)
    np.testing.assert_allclose(w, want, rtol=tol(dtype), atol=tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_lion(dtype):
    w, grads = run(dtype, 4)
    want = ref_lion(w, grads, 0.003, 0.9, 0.99)
    m = np.zeros(N, dtype)
    hyper = np.array([0.0, 0.003, 0.9, 0.99])
    for g in grads:
        k.lion_update(w, g, m, hyper)
    np.testing.assert_allclose(w, want, rtol=tol(dtype), atol=tol(dtype))


def test_lion_sign_of_zero_leaves_the_weight():
    w, m = np.array([1.0, 2.0]), np.zeros(2)
    k.lion_update(w, np.array([0.0, -1.0]), m, np.array([0.0, 0.5, 0.9, 0.99]))
    np.testing.assert_array_equal(w, [1.0, 2.5])


# ----------------------------------------------------------------- clipping and decay
OFFSETS = np.array([0, 3, 4, 11], np.int64)  # three variables of 3, 1 and 7 elements


def ref_clip(g, mode, c):
    g = g.astype(np.float64)
    if mode == 1:
        return np.concatenate([s * c / max(np.linalg.norm(s), c)
                               for s in np.split(g, OFFSETS[1:-1])])
    if mode == 2:
        return g * min(1.0, c / np.linalg.norm(g))
    if mode == 3:
        return np.clip(g, -c, c)
    return g


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode,clip", [(0, 0.0), (1, 0.8), (2, 1.5), (3, 0.4)])
@pytest.mark.parametrize("wd", [0.0, 0.25])
def test_clip_and_decay(mode, clip, wd, dtype):
    w, (g, *_) = run(dtype, 5)
    g = g * 2
    w0 = w.astype(np.float64)
    want_g = ref_clip(g, mode, clip)
    hyper = np.array([7.0, 0.1])
    k.clip_and_decay(w, g, OFFSETS, np.zeros(3), hyper, np.array([mode, clip, wd]))
    np.testing.assert_allclose(g, want_g, rtol=tol(dtype), atol=tol(dtype))
    np.testing.assert_allclose(w, w0 - w0 * wd * 0.1, rtol=tol(dtype), atol=tol(dtype))
    assert hyper[0] == 7.0  # not a step


def test_clipnorm_leaves_a_short_variable_alone_and_a_zero_one_zero():
    g = np.array([0.3, 0.4, 0.0, 0.0, 6.0, 8.0])
    k.clip_and_decay(np.zeros(6), g, np.array([0, 2, 4, 6]), np.zeros(3),
                     np.array([0.0, 0.1]), np.array([1.0, 1.0, 0.0]))
    np.testing.assert_allclose(g, [0.3, 0.4, 0.0, 0.0, 0.6, 0.8])


def test_global_clipnorm_of_an_infinite_gradient_is_nan_as_keras():
    g = np.array([np.inf, 1.0])
    k.clip_and_decay(np.zeros(2), g, np.array([0, 2]), np.zeros(1), np.array([0.0, 0.1]),
                     np.array([2.0, 1.0, 0.0]))
    assert np.isnan(g).all()


def test_bad_sizes_raise_before_writing():
    hyper = np.array([0.0, 0.1, 0.9, 0.99])
    with pytest.raises(ValueError, match="sizes differ"):
        k.lion_update(np.zeros(3), np.zeros(2), np.zeros(3), hyper)
    assert hyper[0] == 0.0
    with pytest.raises(ValueError, match="too short"):
        k.nadam_update(np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3), hyper)
