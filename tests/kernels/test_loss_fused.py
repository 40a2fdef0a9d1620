"""The loss kernels' vectorised log and the one-call value-and-gradient kernels.

``_log`` is checked against ``np.log`` over the whole range the clipped losses use; each
``*_value_grad`` kernel against the two kernels it replaces (the same bits), against the
float64 NumPy references of ``test_loss`` and against central finite differences of the
reference composed with a NumPy softmax/sigmoid; ``value_and_grad`` for what it pairs; and a
training step of a model whose loss is bound as one call against the same model bound with
the two calls.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from nexec.kernels.cpu import loss as K
from nexec.testing import assert_close, check_gradients

from .test_loss import np_sigmoid, np_softmax, ref_bce, ref_cce, ref_sparse_cce

EPS = 1e-7
DTYPES = [np.float64, np.float32]


def test_log_matches_numpy_within_a_few_ulps():
    x = np.concatenate([np.geomspace(1e-7, 1.0, 20001), 1.0 - np.geomspace(1e-7, 0.5, 2001),
                        np.random.default_rng(0).random(5000),
                        np.nextafter(np.sqrt(0.5), [0.0, 1.0]),
                        np.nextafter(np.sqrt(2.0) / 2 * 2, [0.0, 2.0]), [1e-300, 3.0, 1e10]])
    got = np.array([K._log(float(v)) for v in x])
    want = np.log(x)
    ulps = np.abs(got - want) / np.spacing(np.maximum(np.abs(want), np.finfo(float).tiny))
    assert ulps.max() <= 4, (x[ulps.argmax()], ulps.max())
    assert K._log(1.0) == 0.0 and K._log(2.0) == math.log(2.0)
    assert math.isnan(K._log(float("nan")))


def data(dtype, n=37, k=7, seed=0, onehot=False):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 2.0
    y = np.eye(k)[rng.integers(0, k, n)] if onehot else rng.random((n, k)) * 1.5  # unnormalised
    return z, np_softmax(z).astype(dtype), y.astype(dtype), rng.integers(0, k, n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("onehot", [False, True])
def test_softmax_crossentropy_value_grad(dtype, onehot):
    z, p, y, _ = data(dtype, onehot=onehot)
    n = p.shape[0]
    out, dz = np.zeros(1), np.zeros_like(p)
    K.softmax_crossentropy_value_grad(p, y, EPS, 0.7 / n, out, dz)
    out2, dz2 = np.zeros(1), np.zeros_like(p)
    K.categorical_crossentropy(p, y, EPS, out2)
    K.softmax_crossentropy_grad(p, y, 0.7 / n, dz2)
    assert out[0] == out2[0] and dz.tobytes() == dz2.tobytes()
    assert_close(out[0], ref_cce(p.astype(np.float64), y.astype(np.float64)),
                 rtol=1e-12 if dtype == np.float64 else 1e-6)
    if dtype == np.float64:  # the logit gradient against finite differences
        check_gradients(lambda: 0.7 * ref_cce(np_softmax(z), y), {"z": dz}, {"z": z})


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_softmax_crossentropy_value_grad(dtype):
    z, p, _, labels = data(dtype, seed=1)
    n = p.shape[0]
    out, dz = np.zeros(1), np.zeros_like(p)
    K.sparse_softmax_crossentropy_value_grad(p, labels, EPS, 0.7 / n, out, dz)
    out2, dz2 = np.zeros(1), np.zeros_like(p)
    K.sparse_categorical_crossentropy(p, labels, EPS, out2)
    K.sparse_softmax_crossentropy_grad(p, labels, 0.7 / n, dz2)
    assert out[0] == out2[0] and dz.tobytes() == dz2.tobytes()
    assert_close(out[0], ref_sparse_cce(p.astype(np.float64), labels),
                 rtol=1e-12 if dtype == np.float64 else 1e-6)
    if dtype == np.float64:
        check_gradients(lambda: 0.7 * ref_sparse_cce(np_softmax(z), labels), {"z": dz},
                        {"z": z})


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_binary_crossentropy_value_grad(dtype):
    rng = np.random.default_rng(2)
    z = rng.normal(size=(29, 5)) * 2.0
    p = np_sigmoid(z).astype(dtype)
    y = rng.random((29, 5)).astype(dtype)
    out, dz = np.zeros(1), np.zeros_like(p)
    K.sigmoid_binary_crossentropy_value_grad(p, y, EPS, 0.7 / 29, out, dz)
    out2, dz2 = np.zeros(1), np.zeros_like(p)
    K.binary_crossentropy(p, y, EPS, out2)
    K.sigmoid_binary_crossentropy_grad(p, y, 0.7 / 29, dz2)
    assert out[0] == out2[0] and dz.tobytes() == dz2.tobytes()
    assert_close(out[0], ref_bce(p.astype(np.float64), y.astype(np.float64)),
                 rtol=1e-12 if dtype == np.float64 else 1e-6)
    if dtype == np.float64:
        check_gradients(lambda: 0.7 * ref_bce(np_sigmoid(z), y), {"z": dz}, {"z": z})


def test_value_grad_clipping_and_empty_batch():
    # saturated and zero probabilities: the value is the clipped reference's
    p = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]], np.float32)
    y = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.0]], np.float32)
    out, dz = np.zeros(1), np.zeros_like(p)
    K.softmax_crossentropy_value_grad(p, y, EPS, 0.5, out, dz)
    lo, hi = np.float32(EPS), np.float32(1) - np.float32(EPS)
    p64 = p.astype(np.float64)
    q = np.clip(p64 / p64.sum(1, keepdims=True), float(lo), float(hi))
    assert_close(out[0], np.mean(-np.sum(y * np.log(q), axis=1)), rtol=1e-12)
    empty = np.zeros((0, 3), np.float32)
    K.softmax_crossentropy_value_grad(empty, empty, EPS, 1.0, out, empty.copy())
    assert np.isnan(out[0])
    with pytest.raises(ValueError):
        K.softmax_crossentropy_value_grad(p, y, EPS, 1.0, out, np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError):
        K.sparse_softmax_crossentropy_value_grad(p, np.array([0, 3]), EPS, 1.0, out, dz)


def test_value_and_grad_pairs_only_matching_calls():
    p, y, out, dz = np.ones((2, 3)), np.ones((2, 3)), np.zeros(1), np.zeros((2, 3))
    both = K.value_and_grad((K.categorical_crossentropy, (p, y, EPS, out)),
                            (K.softmax_crossentropy_grad, (p, y, 0.5, dz)))
    assert both == (K.softmax_crossentropy_value_grad, (p, y, EPS, 0.5, out, dz))
    # the exact gradient w.r.t. p (no activation folded in) has no one-call form
    assert K.value_and_grad((K.categorical_crossentropy, (p, y, EPS, out)),
                            (K.categorical_crossentropy_grad, (p, y, EPS, 0.5, dz))) is None
    # calls on other arrays are not merged
    assert K.value_and_grad((K.categorical_crossentropy, (p, y, EPS, out)),
                            (K.softmax_crossentropy_grad, (p.copy(), y, 0.5, dz))) is None


@pytest.mark.parametrize("loss,act", [("categorical_crossentropy", "softmax"),
                                      ("sparse_categorical_crossentropy", "softmax"),
                                      ("binary_crossentropy", "sigmoid")])
def test_training_step_same_bits_with_one_call(monkeypatch, loss, act):
    import nexec
    from nexec import layers

    rng = np.random.default_rng(5)
    x = rng.random((24, 6)).astype(np.float32)
    y = rng.integers(0, 4, 24) if loss.startswith("sparse") else \
        rng.random((24, 4)).astype(np.float32)

    def trained():
        nexec.set_random_seed(3)
        inp = layers.Input((6,))
        out = layers.Dense(4, activation=act)(layers.Dense(5, activation="relu")(inp))
        model = nexec.Model(inp, out)
        model.compile(optimizer="rmsprop", loss=loss)
        hist = model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
        return hist.history["loss"], [w.copy() for w in model.get_weights()]

    fused_loss, fused_w = trained()
    monkeypatch.setattr(K, "_VALUE_AND_GRAD", {})
    sep_loss, sep_w = trained()
    assert fused_loss == sep_loss
    assert all(a.tobytes() == b.tobytes() for a, b in zip(fused_w, sep_w))
