"""Loss, gradient and metric kernels against plain float64 NumPy written here.

Loss values are compared with independent NumPy references of the Keras 3 definitions;
every gradient is compared with central finite differences of those references (for the
fused softmax/sigmoid forms, of the reference composed with a NumPy softmax/sigmoid of
the logits). Probabilities are kept well away from the clip bounds for finite
differences; the clipped branches are exercised with a large ``eps`` so that clipped
entries sit far from the bound.
"""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels.cpu import loss as K
from nexec.testing import assert_close, check_gradients

EPS = 1e-7
LOSS_WEIGHT = 0.7


# ----------------------------------------------------------------- NumPy references


def ref_cce(p, y, eps=EPS):
    q = p / p.sum(axis=-1, keepdims=True)
    q = np.clip(q, eps, 1.0 - eps)
    return float(np.mean(-np.sum(y * np.log(q), axis=-1)))


def ref_sparse_cce(p, labels, eps=EPS):
    onehot = np.zeros_like(p, dtype=np.float64)
    onehot[np.arange(p.shape[0]), labels] = 1.0
    return ref_cce(p, onehot, eps)


def ref_bce(p, y, eps=EPS):
    c = np.clip(p, eps, 1.0 - eps)
    per = -(y * np.log(c) + (1.0 - y) * np.log(1.0 - c))
    return float(np.mean(np.mean(per, axis=-1)))


def ref_mse(p, y):
    return float(np.mean(np.mean((p - y) ** 2, axis=-1)))


def np_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# ----------------------------------------------------------------- data


def rng(seed=0):
    return np.random.default_rng(seed)


def probs_unnormalised(n=4, c=5, seed=0):
    """Positive, rows not summing to 1, every normalised entry far from the bounds."""
    return rng(seed).uniform(0.2, 1.0, size=(n, c))


def one_hot(labels, c):
    y = np.zeros((labels.size, c))
    y[np.arange(labels.size), labels] = 1.0
    return y


def soft_targets(n=4, c=5, seed=1):
    """Non-negative targets whose rows do NOT sum to 1 (some zeros included)."""
    y = rng(seed).uniform(0.0, 1.5, size=(n, c))
    y[0, 1] = 0.0
    y[2, 3] = 0.0
    assert np.all(np.abs(y.sum(axis=1) - 1.0) > 0.1)
    return y


LABELS = np.array([0, 3, 4, 1])
TARGETS = {"one_hot": one_hot(LABELS, 5), "soft": soft_targets()}


def nan_like(a):
    return np.full_like(a, np.nan)


def value(fn, *args):
    """A loss kernel's result: it writes the batch mean into a 1-element float64 array."""
    out = np.full(1, -123.0)
    assert fn(*args, out) is None
    return float(out[0])


def count(fn, *args):
    """A count kernel's result: it writes into a 1-element int64 array."""
    out = np.full(1, -7, np.int64)
    assert fn(*args, out) is None
    return int(out[0])


# ----------------------------------------------------------------- categorical


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("target", list(TARGETS))
def test_categorical_crossentropy_value(dtype, target):
    p = probs_unnormalised().astype(dtype)
    y = TARGETS[target].astype(dtype)
    got = value(K.categorical_crossentropy, p, y, EPS)
    assert_close(np.float64(got), np.float64(ref_cce(p.astype(np.float64), y.astype(np.float64))),
                 rtol=1e-6 if dtype == np.float64 else 1e-5)


def test_categorical_crossentropy_value_clips_zero_probability():
    p = np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    y = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    got = value(K.categorical_crossentropy, p, y, EPS)
    expected = (-np.log(1e-7) - np.log(1.0 - 1e-7)) / 2
    assert_close(np.float64(got), np.float64(expected))
    assert_close(np.float64(got), np.float64(ref_cce(p, y)))


@pytest.mark.parametrize("target", list(TARGETS))
def test_categorical_crossentropy_grad_fd(target):
    p = probs_unnormalised()
    y = TARGETS[target]
    n = p.shape[0]
    dp = nan_like(p)
    K.categorical_crossentropy_grad(p, y, EPS, LOSS_WEIGHT / n, dp)
    check_gradients(lambda: LOSS_WEIGHT * ref_cce(p, y), {"p": dp}, {"p": p})


def test_categorical_crossentropy_grad_fd_through_clipping():
    # eps = 0.05: q = [0.02, 0.6, 0.38] clips its first entry (low) and
    # q = [0.97, 0.01, 0.02] clips all three; every clipped q is far from its bound.
    eps = 0.05
    p = np.array([[0.2, 6.0, 3.8], [9.7, 0.1, 0.2], [0.3, 0.5, 0.4]])
    y = np.array([[1.0, 0.5, 0.7], [1.0, 0.2, 0.3], [0.2, 0.9, 0.0]])
    dp = nan_like(p)
    K.categorical_crossentropy_grad(p, y, eps, LOSS_WEIGHT / 3, dp)
    check_gradients(lambda: LOSS_WEIGHT * ref_cce(p, y, eps), {"p": dp}, {"p": p})
    assert np.all(dp[1] == 0.0)  # the fully clipped row carries no gradient
    assert np.all(dp[0] != 0.0)  # a clipped entry still moves through the row sum


@pytest.mark.parametrize("target", list(TARGETS))
def test_softmax_crossentropy_grad_fd(target):
    z = rng(3).normal(size=(4, 5))
    y = TARGETS[target]
    n = z.shape[0]
    dz = nan_like(z)
    K.softmax_crossentropy_grad(np_softmax(z), y, LOSS_WEIGHT / n, dz)
    check_gradients(lambda: LOSS_WEIGHT * ref_cce(np_softmax(z), y), {"z": dz}, {"z": z})


def test_softmax_crossentropy_grad_is_not_p_minus_y_for_soft_targets():
    z = rng(3).normal(size=(4, 5))
    p, y = np_softmax(z), TARGETS["soft"]
    dz = np.empty_like(z)
    K.softmax_crossentropy_grad(p, y, 1.0, dz)
    assert np.max(np.abs(dz - (p - y))) > 1e-2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_categorical_grads_float32_match_float64(dtype):
    p64, y64 = probs_unnormalised(), TARGETS["soft"]
    p, y = p64.astype(dtype), y64.astype(dtype)
    ref = np.empty_like(p64)
    K.categorical_crossentropy_grad(p.astype(np.float64), y.astype(np.float64), EPS, 0.25, ref)
    got = np.empty_like(p)
    K.categorical_crossentropy_grad(p, y, EPS, 0.25, got)
    assert got.dtype == dtype
    assert_close(got, ref)
    K.softmax_crossentropy_grad(p.astype(np.float64), y.astype(np.float64), 0.25, ref)
    K.softmax_crossentropy_grad(p, y, 0.25, got)
    assert_close(got, ref)


# ----------------------------------------------------------------- sparse


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
def test_sparse_categorical_crossentropy_value(dtype, label_dtype):
    p = probs_unnormalised().astype(dtype)
    labels = LABELS.astype(label_dtype)
    got = value(K.sparse_categorical_crossentropy, p, labels, EPS)
    assert_close(np.float64(got), np.float64(ref_sparse_cce(p.astype(np.float64), LABELS)),
                 rtol=1e-6 if dtype == np.float64 else 1e-5)


@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
def test_sparse_categorical_crossentropy_grad_fd(label_dtype):
    p = probs_unnormalised()
    labels = LABELS.astype(label_dtype)
    dp = nan_like(p)
    K.sparse_categorical_crossentropy_grad(p, labels, EPS, LOSS_WEIGHT / 4, dp)
    check_gradients(lambda: LOSS_WEIGHT * ref_sparse_cce(p, LABELS), {"p": dp}, {"p": p})


def test_sparse_categorical_crossentropy_grad_fd_through_clipping():
    eps = 0.05
    p = np.array([[0.2, 6.0, 3.8], [9.7, 0.1, 0.2], [0.3, 0.5, 0.4]])
    labels = np.array([0, 0, 1])  # q_label = 0.02 (clipped), 0.97 (clipped), 0.42
    dp = nan_like(p)
    K.sparse_categorical_crossentropy_grad(p, labels, eps, LOSS_WEIGHT / 3, dp)
    check_gradients(lambda: LOSS_WEIGHT * ref_sparse_cce(p, labels, eps), {"p": dp}, {"p": p})
    assert np.all(dp[:2] == 0.0) and np.all(dp[2] != 0.0)


def test_sparse_softmax_crossentropy_grad_fd():
    z = rng(4).normal(size=(4, 5))
    dz = nan_like(z)
    K.sparse_softmax_crossentropy_grad(np_softmax(z), LABELS, LOSS_WEIGHT / 4, dz)
    check_gradients(lambda: LOSS_WEIGHT * ref_sparse_cce(np_softmax(z), LABELS),
                    {"z": dz}, {"z": z})


def test_sparse_labels_out_of_range_raise():
    p = probs_unnormalised()
    out = np.empty_like(p)
    for bad in (np.array([0, 5, 1, 1]), np.array([0, -1, 1, 1])):
        with pytest.raises(ValueError):
            K.sparse_categorical_crossentropy(p, bad, EPS, np.zeros(1))
        with pytest.raises(ValueError):
            K.sparse_categorical_crossentropy_grad(p, bad, EPS, 1.0, out)
        with pytest.raises(ValueError):
            K.sparse_softmax_crossentropy_grad(p, bad, 1.0, out)
    with pytest.raises(ValueError):
        K.sparse_categorical_crossentropy(p, LABELS[:3], EPS, np.zeros(1))


# ----------------------------------------------------------------- binary


def binary_probs(n=4, c=3, seed=5):
    return rng(seed).uniform(0.1, 0.9, size=(n, c))


BIN_TARGETS = {
    "hard": (rng(6).uniform(size=(4, 3)) > 0.5).astype(np.float64),
    "soft": rng(7).uniform(size=(4, 3)),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("target", list(BIN_TARGETS))
def test_binary_crossentropy_value(dtype, target):
    p = binary_probs().astype(dtype)
    y = BIN_TARGETS[target].astype(dtype)
    got = value(K.binary_crossentropy, p, y, EPS)
    assert_close(np.float64(got), np.float64(ref_bce(p.astype(np.float64), y.astype(np.float64))),
                 rtol=1e-6 if dtype == np.float64 else 1e-5)


def test_binary_crossentropy_value_clips():
    p = np.array([[0.0, 1.0, 0.5]])
    y = np.array([[1.0, 0.0, 1.0]])
    expected = (-2 * np.log(1e-7) - np.log(0.5)) / 3
    assert_close(np.float64(value(K.binary_crossentropy, p, y, EPS)), np.float64(expected))


@pytest.mark.parametrize("target", list(BIN_TARGETS))
def test_binary_crossentropy_grad_fd(target):
    p = binary_probs()
    y = BIN_TARGETS[target]
    dp = nan_like(p)
    K.binary_crossentropy_grad(p, y, EPS, LOSS_WEIGHT / 4, dp)
    check_gradients(lambda: LOSS_WEIGHT * ref_bce(p, y), {"p": dp}, {"p": p})


def test_binary_crossentropy_grad_fd_through_clipping():
    eps = 0.05
    p = np.array([[0.01, 0.5, 0.99], [0.3, 0.02, 0.97]])
    y = np.array([[1.0, 0.0, 0.3], [0.6, 1.0, 0.0]])
    dp = nan_like(p)
    K.binary_crossentropy_grad(p, y, eps, LOSS_WEIGHT / 2, dp)
    check_gradients(lambda: LOSS_WEIGHT * ref_bce(p, y, eps), {"p": dp}, {"p": p})
    clipped = (p < eps) | (p > 1 - eps)
    assert np.all(dp[clipped] == 0.0) and np.all(dp[~clipped] != 0.0)


@pytest.mark.parametrize("target", list(BIN_TARGETS))
def test_sigmoid_binary_crossentropy_grad_fd(target):
    z = rng(8).normal(size=(4, 3))
    y = BIN_TARGETS[target]
    dz = nan_like(z)
    K.sigmoid_binary_crossentropy_grad(np_sigmoid(z), y, LOSS_WEIGHT / 4, dz)
    check_gradients(lambda: LOSS_WEIGHT * ref_bce(np_sigmoid(z), y), {"z": dz}, {"z": z})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_grads_dtype(dtype):
    p64, y64 = binary_probs(), BIN_TARGETS["soft"]
    p, y = p64.astype(dtype), y64.astype(dtype)
    ref = np.empty_like(p64)
    got = np.empty_like(p)
    K.binary_crossentropy_grad(p.astype(np.float64), y.astype(np.float64), EPS, 0.25, ref)
    K.binary_crossentropy_grad(p, y, EPS, 0.25, got)
    assert_close(got, ref)
    K.sigmoid_binary_crossentropy_grad(p.astype(np.float64), y.astype(np.float64), 0.25, ref)
    K.sigmoid_binary_crossentropy_grad(p, y, 0.25, got)
    assert_close(got, ref)


# ----------------------------------------------------------------- mse


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mean_squared_error_value(dtype):
    p = rng(9).normal(size=(4, 3)).astype(dtype)
    y = rng(10).normal(size=(4, 3)).astype(dtype)
    got = value(K.mean_squared_error, p, y)
    assert_close(np.float64(got), np.float64(ref_mse(p.astype(np.float64), y.astype(np.float64))),
                 rtol=1e-6 if dtype == np.float64 else 1e-5)


def test_mean_squared_error_grad_fd():
    p = rng(9).normal(size=(4, 3))
    y = rng(10).normal(size=(4, 3))
    dp = nan_like(p)
    K.mean_squared_error_grad(p, y, LOSS_WEIGHT / 4, dp)
    check_gradients(lambda: LOSS_WEIGHT * ref_mse(p, y), {"p": dp}, {"p": p})


def test_mean_squared_error_grad_float32():
    p = rng(9).normal(size=(4, 3)).astype(np.float32)
    y = rng(10).normal(size=(4, 3)).astype(np.float32)
    got = np.empty_like(p)
    K.mean_squared_error_grad(p, y, 0.25, got)
    assert_close(got, 0.25 * 2 * (p.astype(np.float64) - y) / 3)


def test_shape_mismatch_raises():
    p = np.ones((2, 3))
    with pytest.raises(ValueError):
        K.mean_squared_error(p, np.ones((2, 4)), np.zeros(1))
    with pytest.raises(ValueError):
        K.categorical_crossentropy_grad(p, p, EPS, 1.0, np.empty((3, 2)))


# ----------------------------------------------------------------- metrics


def test_categorical_accuracy_count():
    r = rng(11)
    p = r.uniform(size=(50, 4))
    y = one_hot(r.integers(0, 4, 50), 4)
    expected = int(np.sum(np.argmax(p, -1) == np.argmax(y, -1)))
    assert 0 < expected < 50
    assert count(K.categorical_accuracy_count, p, y) == expected
    assert count(K.categorical_accuracy_count, p.astype(np.float32),
                 y.astype(np.float32)) == expected


def test_categorical_accuracy_ties_take_first_index():
    p = np.array([[0.4, 0.4, 0.2], [0.1, 0.45, 0.45]])
    y = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    expected = int(np.sum(np.argmax(p, -1) == np.argmax(y, -1)))
    assert count(K.categorical_accuracy_count, p, y) == expected
    assert count(K.categorical_accuracy_count, p, y) == 1


@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
def test_sparse_categorical_accuracy_count(label_dtype):
    r = rng(12)
    p = r.uniform(size=(50, 4)).astype(np.float32)
    labels = r.integers(0, 4, 50).astype(label_dtype)
    expected = int(np.sum(np.argmax(p, -1) == labels))
    assert 0 < expected < 50
    assert count(K.sparse_categorical_accuracy_count, p, labels) == expected


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_binary_accuracy_count(threshold):
    r = rng(13)
    p = r.uniform(size=(20, 3))
    p[0, 0] = threshold  # not above the threshold: predicts 0
    y = (r.uniform(size=(20, 3)) > 0.5).astype(np.float64)
    y[0, 0] = 0.0
    y[1, 1] = 0.4  # soft target never matches, as in Keras
    expected = int(np.sum((p > threshold).astype(np.float64) == y))
    assert 0 < expected < 60
    assert count(K.binary_accuracy_count, p, y, threshold) == expected
    assert count(K.binary_accuracy_count, p.astype(np.float32), y.astype(np.float32),
                 threshold) == expected


# ----------------------------------------------------------------- check_finite


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 4)])
def test_check_finite(dtype, shape):
    x = rng(14).normal(size=shape).astype(dtype)
    assert count(K.check_finite, x) == 1
    for bad in (np.nan, np.inf, -np.inf):
        for pos in (0, x.size // 2, x.size - 1):
            y = x.copy()
            y.reshape(-1)[pos] = bad
            assert count(K.check_finite, y) == 0
    assert count(K.check_finite, np.empty((0,) + shape[1:], dtype)) == 1


def test_float32_clip_bounds_are_rounded_to_float32():
    # Keras clips a float32 prediction to float32(1) - float32(1e-7) = 0.99999988, so a
    # saturated p == 1 costs -log(1 - 0.99999988), not -log(1e-7).
    p = np.array([[1.0, 0.5]], np.float32)
    y = np.array([[0.0, 1.0]], np.float32)
    hi = float(np.float32(1.0) - np.float32(1e-7))
    assert hi < 1.0 - 1e-7
    expected = (-np.log(1.0 - hi) - np.log(0.5)) / 2
    assert_close(np.float64(value(K.binary_crossentropy, p, y, EPS)), np.float64(expected),
                 rtol=1e-6)
    assert_close(np.float64(value(K.binary_crossentropy, p.astype(np.float64),
                                  y.astype(np.float64), EPS)),
                 np.float64((-np.log(1e-7) - np.log(0.5)) / 2), rtol=1e-6)


def test_check_finite_strided_and_integer():
    x = np.ones((4, 6))
    x[3, 1] = np.nan
    assert count(K.check_finite, x[:, ::2]) == 1  # the NaN is in a skipped column
    assert count(K.check_finite, x[:, 1::2]) == 0
    assert count(K.check_finite, x.T) == 0
    assert count(K.check_finite, np.arange(12, dtype=np.int32).reshape(3, 4)) == 1


# ----------------------------------------------------------------- result slots


def test_empty_batch_writes_nan_and_zero_counts():
    empty, labels = np.zeros((0, 3)), np.zeros(0, np.int64)
    assert np.isnan(value(K.categorical_crossentropy, empty, empty, EPS))
    assert np.isnan(value(K.sparse_categorical_crossentropy, empty, labels, EPS))
    assert np.isnan(value(K.binary_crossentropy, empty, empty, EPS))
    assert np.isnan(value(K.mean_squared_error, empty, empty))
    assert count(K.categorical_accuracy_count, empty, empty) == 0
    assert count(K.sparse_categorical_accuracy_count, empty, labels) == 0
    assert count(K.binary_accuracy_count, empty, empty, 0.5) == 0
    no_cols = np.zeros((4, 0))
    assert count(K.categorical_accuracy_count, no_cols, no_cols) == 0
    assert count(K.sparse_categorical_accuracy_count, no_cols, LABELS) == 0


def test_results_land_in_element_zero_of_a_longer_slot():
    """A slot may be one entry of a longer array; only its first element is written."""
    p, y = probs_unnormalised(), TARGETS["soft"]
    slots = np.full(3, -5.0)
    K.categorical_crossentropy(p, y, EPS, slots[1:])
    assert_close(np.float64(slots[1]), np.float64(ref_cce(p, y)))
    assert slots[0] == -5.0 and slots[2] == -5.0
    counts = np.full(2, -5, np.int64)
    K.check_finite(p, counts)
    assert counts.tolist() == [1, -5]


def test_empty_slot_raises():
    p = probs_unnormalised()
    with pytest.raises(ValueError, match="1-element"):
        K.mean_squared_error(p, p, np.zeros(0))
    with pytest.raises(ValueError, match="1-element"):
        K.categorical_accuracy_count(p, p, np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="1-element"):
        K.check_finite(p, np.zeros(0, np.int64))
