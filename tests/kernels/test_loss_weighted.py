"""Weighted loss values (``fit(sample_weight=...)``) and ``scale_rows`` on the CPU: values
against NumPy's ``sum(w * per_sample_loss) / N`` (Keras' "sum_over_batch_size"), gradients
(unweighted gradient kernel, then ``scale_rows``) against finite differences of the
weighted value."""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels.cpu import elementwise
from nexec.kernels.cpu import loss as k
from nexec.kernels.loss_rows import CODES
from nexec.testing import assert_close, check_gradients
from nexec.training.loss_objects import _per_sample
from tests.kernels.scalar_functions import LOSSES, separated

N, C = 7, 4
EPS = 1e-7


def _data(kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, C, N)
    if kind == "probs":  # probabilities well inside (eps, 1 - eps)
        p = rng.uniform(0.1, 1.0, (N, C))
        return p / p.sum(axis=1, keepdims=True), np.eye(C)[labels]
    if kind == "sparse":
        p = rng.uniform(0.1, 1.0, (N, C))
        return p / p.sum(axis=1, keepdims=True), labels
    if kind == "logits":
        return rng.normal(0.0, 1.5, (N, C)), np.eye(C)[labels]
    if kind == "sparse_logits":
        return rng.normal(0.0, 1.5, (N, C)), labels
    if kind == "binary":
        return rng.uniform(0.1, 0.9, (N, C)), (rng.random((N, C)) > 0.5) * 1.0
    return separated(rng, (N, C))  # regression: |p - y| >= 0.1, no kink within reach


def _weights(seed: int = 3) -> np.ndarray:
    w = np.random.default_rng(seed).uniform(0.0, 2.0, N)
    w[2] = 0.0  # a sample that does not count
    return w


# name -> (data kind, weighted value(p, y, w, out), gradient(p, y, scale, dp), Keras name,
#          reference arguments)
CASES = {
    "categorical_crossentropy": (
        "probs", lambda p, y, w, o: k.categorical_crossentropy_weighted(p, y, EPS, w, o),
        lambda p, y, s, d: k.categorical_crossentropy_grad(p, y, EPS, s, d),
        "categorical_crossentropy", {}),
    "sparse_categorical_crossentropy": (
        "sparse", lambda p, y, w, o: k.sparse_categorical_crossentropy_weighted(p, y, EPS, w, o),
        lambda p, y, s, d: k.sparse_categorical_crossentropy_grad(p, y, EPS, s, d),
        "sparse_categorical_crossentropy", {}),
    "binary_crossentropy": (
        "binary", lambda p, y, w, o: k.binary_crossentropy_weighted(p, y, EPS, w, o),
        lambda p, y, s, d: k.binary_crossentropy_grad(p, y, EPS, s, d),
        "binary_crossentropy", {}),
    "mean_squared_error": (
        "reg", k.mean_squared_error_weighted, k.mean_squared_error_grad,
        "mean_squared_error", {}),
    "huber": (
        "reg", lambda p, y, w, o: k.row_loss_weighted(p, y, CODES["huber"], 0.5, EPS, w, o),
        lambda p, y, s, d: k.row_loss_grad(p, y, CODES["huber"], 0.5, EPS, s, d),
        "huber", {"delta": 0.5}),
    "mean_absolute_error": (
        "reg", lambda p, y, w, o: k.row_loss_weighted(p, y, CODES["mean_absolute_error"], 0.0,
                                                      EPS, w, o),
        lambda p, y, s, d: k.row_loss_grad(p, y, CODES["mean_absolute_error"], 0.0, EPS, s, d),
        "mean_absolute_error", {}),
    "categorical_crossentropy_logits": (
        "logits", lambda p, y, w, o: k.row_loss_weighted(
            p, y, CODES["categorical_crossentropy_logits"], 0.1, EPS, w, o),
        lambda p, y, s, d: k.row_loss_grad(p, y, CODES["categorical_crossentropy_logits"], 0.1,
                                           EPS, s, d),
        "categorical_crossentropy", {"from_logits": True, "label_smoothing": 0.1}),
    "sparse_categorical_crossentropy_logits": (
        "sparse_logits", k.sparse_categorical_crossentropy_logits_weighted,
        k.sparse_categorical_crossentropy_logits_grad,
        "sparse_categorical_crossentropy", {"from_logits": True}),
}


def _value(fn, p, y, w) -> float:
    out = np.full(1, np.nan)
    fn(p, y, w, out)
    return float(out[0])


@pytest.mark.parametrize("name", sorted(CASES))
def test_weighted_value_is_kerass_sum_over_batch_size(name):
    kind, value, _, keras_name, cfg = CASES[name]
    p, y = _data(kind)
    w = _weights()
    expected = np.sum(w * _per_sample(keras_name, y, p, **cfg)) / N
    assert_close(_value(value, p, y, w), expected, rtol=1e-12)
    # The divisor is the number of rows, not the sum of the weights (Keras' default).
    assert abs(np.sum(w) - N) > 0.1


@pytest.mark.parametrize("name", sorted(CASES))
def test_weighted_gradient_matches_finite_differences(name):
    kind, value, grad, _, _ = CASES[name]
    p, y = _data(kind, seed=1)
    w = _weights(4)
    dp = np.full_like(p, np.nan)
    grad(p, y, 1.0 / N, dp)
    k.scale_rows(dp, w)
    check_gradients(lambda: _value(value, p, y, w), {"p": dp}, {"p": p}, rtol=1e-6)


@pytest.mark.parametrize("fused,activation", [
    (k.softmax_crossentropy_grad, "softmax"), (k.sigmoid_binary_crossentropy_grad, "sigmoid")])
def test_fused_logit_gradients_scaled_by_row_match_finite_differences(fused, activation):
    """Row scaling commutes with the activation's Jacobian: weighted fused gradients too."""
    rng = np.random.default_rng(2)
    z = rng.normal(0.0, 1.0, (N, C))
    y = np.eye(C)[rng.integers(0, C, N)]
    w = _weights(5)

    def act(z):
        if activation == "sigmoid":
            return 1.0 / (1.0 + np.exp(-z))
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    value = k.categorical_crossentropy_weighted if activation == "softmax" else \
        k.binary_crossentropy_weighted
    dz = np.full_like(z, np.nan)
    fused(act(z), y, 1.0 / N, dz)
    k.scale_rows(dz, w)
    check_gradients(lambda: _value(lambda p, t, ww, o: value(p, t, EPS, ww, o), act(z), y, w),
                    {"z": dz}, {"z": z}, rtol=1e-6)


@pytest.mark.parametrize("name", ["categorical_crossentropy", "sparse_categorical_crossentropy",
                                  "binary_crossentropy", "huber",
                                  "sparse_categorical_crossentropy_logits"])
def test_unit_weights_give_the_unweighted_value_exactly(name):
    kind, value, _, _, _ = CASES[name]
    p, y = _data(kind, seed=3)
    unweighted = {
        "categorical_crossentropy": lambda o: k.categorical_crossentropy(p, y, EPS, o),
        "sparse_categorical_crossentropy":
            lambda o: k.sparse_categorical_crossentropy(p, y, EPS, o),
        "binary_crossentropy": lambda o: k.binary_crossentropy(p, y, EPS, o),
        "huber": lambda o: k.row_loss(p, y, CODES["huber"], 0.5, EPS, o),
        "sparse_categorical_crossentropy_logits":
            lambda o: k.sparse_categorical_crossentropy_logits(p, y, o),
    }[name]
    out = np.zeros(1)
    unweighted(out)
    assert _value(value, p, y, np.ones(N)) == out[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scale_rows_against_numpy(dtype):
    rng = np.random.default_rng(6)
    dp = rng.normal(size=(N, C)).astype(dtype)
    w = rng.uniform(-1.0, 2.0, N).astype(dtype)
    expected = (dp.astype(np.float64) * w.astype(np.float64)[:, None]).astype(dtype)
    k.scale_rows(dp, w)
    np.testing.assert_array_equal(dp, expected)


def test_weights_of_the_wrong_length_are_refused():
    p, y = _data("probs")
    with pytest.raises(ValueError, match="one weight per row"):
        k.categorical_crossentropy_weighted(p, y, EPS, np.ones(N - 1), np.zeros(1))
    with pytest.raises(ValueError, match="one weight per row"):
        k.scale_rows(p.copy(), np.ones(N + 1))


def test_empty_batch_gives_nan():
    out = np.zeros(1)
    k.mean_squared_error_weighted(np.zeros((0, C)), np.zeros((0, C)), np.zeros(0), out)
    assert np.isnan(out[0])


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_generated_weighted_loss_against_numpy(name):
    fn, grad, np_fn = LOSSES[name]
    p, y = separated(np.random.default_rng(7), (N, C))
    w = _weights(8)
    value = elementwise.weighted_loss_kernel(fn)
    expected = np.sum(w * np.mean(np_fn(p, y), axis=-1)) / N
    assert_close(_value(value, p, y, w), expected, rtol=1e-12)
    _, grad_kernel = elementwise.loss_kernels(fn, grad)
    dp = np.full_like(p, np.nan)
    grad_kernel(p, y, 1.0 / N, dp)
    k.scale_rows(dp, w)
    check_gradients(lambda: _value(value, p, y, w), {"p": dp}, {"p": p}, rtol=1e-6)
