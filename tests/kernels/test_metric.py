"""Metric kernels (nexec.kernels.cpu.metric) and the Keras formulas of the metric classes,
against plain NumPy written here and hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest

from nexec import metrics
from nexec.kernels.cpu import metric as K

DTYPES = [np.float32, np.float64]


def data(dtype, n=9, c=4, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.uniform(-0.1, 1.1, (n, c)).astype(dtype)  # some outside [0, 1]: AUC clips
    p[0, :3] = [0.0, 0.5, 1.0]
    y = (rng.random((n, c)) > 0.5).astype(dtype)
    y[1, 0] = 0.3  # a non-zero target counts as positive (Keras casts to bool)
    return p, y


def run(fn, *args, size=1, dtype=np.int64):
    out = np.full(size, -7, dtype)
    fn(*args, out)
    return out


# ----------------------------------------------------------------- regression sums


@pytest.mark.parametrize("dtype", DTYPES)
def test_error_sums(dtype):
    p, y = data(dtype)
    d = p.astype(np.float64) - y.astype(np.float64)
    np.testing.assert_allclose(run(K.absolute_error_sum, p, y, dtype=np.float64)[0],
                               np.abs(d).sum(), rtol=1e-12)
    np.testing.assert_allclose(run(K.squared_error_sum, p, y, dtype=np.float64)[0],
                               (d * d).sum(), rtol=1e-12)


def test_regression_results():
    sums = np.array([12.0])
    assert metrics.MeanSquaredError().result(sums, 3) == 4.0
    assert metrics.RootMeanSquaredError().result(sums, 3) == 2.0
    assert metrics.MeanAbsoluteError().result(sums, 4) == 3.0


# ----------------------------------------------------------------- top k


def ref_in_top_k(p, targets, k):
    """Keras/TF semantics: in when p[target] >= the k-th largest score (ties all in)."""
    out = []
    for row, t in zip(p, targets):
        kth = np.sort(row)[::-1][k - 1] if k <= row.size else -np.inf
        out.append(0 <= t < row.size and row[t] >= kth)
    return np.array(out)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 2, 5])
def test_top_k_counts(dtype, k):
    rng = np.random.default_rng(k)
    p = rng.random((12, 4)).astype(dtype)
    p[3] = [0.2, 0.5, 0.5, 0.5]  # a tie across the boundary
    labels = rng.integers(0, 4, 12)
    labels[3] = 1
    labels[4] = 7  # out of range: never counts
    onehot = np.eye(4, dtype=dtype)[labels % 4]
    expected = ref_in_top_k(p, labels, k)
    assert run(K.sparse_top_k_count, p, labels, k)[0] == expected.sum()
    expected_dense = ref_in_top_k(p, labels % 4, k)
    assert run(K.top_k_count, p, onehot, k)[0] == expected_dense.sum()


def test_top_k_tie_and_nan_by_hand():
    p = np.array([[0.1, 0.3, 0.3, 0.3], [np.nan, 0.1, 0.2, 0.3]])
    # row 0: class 1 ties with two others for the top place: in the top 1 (rank 1).
    assert run(K.sparse_top_k_count, p, np.array([1, 0]), 1)[0] == 1
    # row 1: a NaN target counts as -inf (rank 4): in the top 4 only.
    assert run(K.sparse_top_k_count, p[1:], np.array([0]), 3)[0] == 0
    assert run(K.sparse_top_k_count, p[1:], np.array([0]), 4)[0] == 1


# ----------------------------------------------------------------- precision / recall


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_confusion_counts(dtype, threshold):
    p, y = data(dtype)
    pos = p > dtype(threshold)
    lab = y != 0
    expected = [np.sum(lab & pos), np.sum(~lab & pos), np.sum(~lab & ~pos), np.sum(lab & ~pos)]
    assert run(K.confusion_counts, p, y, threshold, size=4).tolist() == expected


def test_threshold_compared_in_the_prediction_dtype():
    # float32(0.1) > 0.1 in float64, but not once 0.1 is rounded to float32 as Keras does.
    p = np.array([[np.float32(0.1)]], np.float32)
    assert run(K.confusion_counts, p, np.ones((1, 1), np.float32), 0.1, size=4)[0] == 0


def test_precision_recall_results():
    sums = np.array([3, 1, 5, 2])  # tp, fp, tn, fn
    assert metrics.Precision().result(sums, 11) == 0.75
    assert metrics.Recall().result(sums, 11) == 0.6
    assert metrics.Precision().result(np.zeros(4), 0) == 0.0  # divide_no_nan


# ----------------------------------------------------------------- AUC


def ref_auc(p, y, num_thresholds):
    """Keras' ROC AUC written out: explicit thresholds, confusion counts per threshold,
    trapezoids between consecutive (fpr, recall) points."""
    eps = 1e-7
    t = num_thresholds
    thresholds = [0.0 - eps] + [(i + 1) / (t - 1) for i in range(t - 2)] + [1.0 + eps]
    p = np.clip(p, 0, 1).ravel()
    lab = (y != 0).ravel()
    tp, fp, tn, fn = (np.zeros(t) for _ in range(4))
    for i, th in enumerate(thresholds):
        pos = p > p.dtype.type(th)
        tp[i], fp[i] = np.sum(lab & pos), np.sum(~lab & pos)
        tn[i], fn[i] = np.sum(~lab & ~pos), np.sum(lab & ~pos)
    recall = np.divide(tp, tp + fn, out=np.zeros(t), where=tp + fn > 0)
    fpr = np.divide(fp, fp + tn, out=np.zeros(t), where=fp + tn > 0)
    return float(np.sum((fpr[:-1] - fpr[1:]) * (recall[:-1] + recall[1:]) / 2))


def auc_of(p, y, num_thresholds=200):
    m = metrics.AUC(num_thresholds=num_thresholds)
    return m.result(run(K.auc_buckets, p, y, num_thresholds, size=2 * num_thresholds), p.size)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_thresholds", [3, 7, 200])
def test_auc_against_keras_formula(dtype, num_thresholds):
    p, y = data(dtype, n=20, seed=num_thresholds)
    np.testing.assert_allclose(auc_of(p, y, num_thresholds), ref_auc(p, y, num_thresholds),
                               rtol=1e-12)


def test_auc_by_hand():
    # Keras' docstring example: thresholds [-eps, 0.5, 1 + eps] give 0.75.
    p = np.array([[0.0, 0.5, 0.3, 0.9]])
    y = np.array([[0.0, 0.0, 1.0, 1.0]])
    assert auc_of(p, y, 3) == pytest.approx(0.75, abs=1e-15)
    ranked = np.array([[0.1, 0.2, 0.8, 0.9]])
    assert auc_of(ranked, y) == pytest.approx(1.0, abs=1e-15)
    assert auc_of(ranked[:, ::-1].copy(), y) == pytest.approx(0.0, abs=1e-15)


def test_auc_sums_over_batches():
    p, y = data(np.float32, n=20, seed=3)
    m = metrics.AUC()
    sums = run(K.auc_buckets, p[:7], y[:7], 200, size=400) + \
        run(K.auc_buckets, p[7:], y[7:], 200, size=400)
    np.testing.assert_allclose(m.result(sums, p.size), ref_auc(p, y, 200), rtol=1e-12)


def test_auc_buckets_histogram_by_hand():
    p = np.array([[0.0, 0.25, 0.5, 1.0, np.nan]])
    y = np.array([[1.0, 0.0, 1.0, 0.0, 1.0]])
    out = run(K.auc_buckets, p, y, 3, size=6)
    # buckets: max(ceil(p * 2) - 1, 0) = 0, 0, 0, 1; the NaN is in none.
    assert out.tolist() == [2, 0, 0, 1, 1, 0]


def test_slot_too_short_is_refused():
    p, y = data(np.float64)
    with pytest.raises(ValueError, match="shorter"):
        K.auc_buckets(p, y, 200, np.zeros(10, np.int64))
    with pytest.raises(ValueError, match="shapes differ"):
        K.confusion_counts(p, y[:, :2].copy(), 0.5, np.zeros(4, np.int64))
