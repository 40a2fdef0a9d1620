"""Mask kernels (nexec/kernels/cpu/masking.py) against NumPy: Keras 3's ``apply_mask``
weights of a masked loss and the masked metric sums."""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels import masked_rows as codes
from nexec.kernels.cpu import masking as k


def _ids(n: int = 9, seed: int = 0) -> np.ndarray:
    ids = np.random.default_rng(seed).integers(0, 4, n).astype(np.int32)
    ids[:2] = [0, 3]
    return ids


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_mask_weights_are_total_over_valid(dtype):
    ids = _ids()
    out = np.full(len(ids), np.nan, dtype)
    k.loss_mask_weights(ids, out)
    mask = ids != 0
    np.testing.assert_allclose(out, mask * len(ids) / mask.sum(), rtol=1e-7)
    sw = np.random.default_rng(1).uniform(0, 2, len(ids)).astype(dtype)
    k.loss_mask_weights_times(ids, sw, out)
    np.testing.assert_allclose(out, sw * mask * len(ids) / mask.sum(), rtol=1e-6)
    k.loss_mask_weights_times(ids, sw, sw)  # in place
    np.testing.assert_array_equal(sw, out)


def test_loss_mask_weights_of_padding_only_are_zero():
    out = np.full(4, np.nan)
    k.loss_mask_weights(np.zeros(4, np.int64), out)
    np.testing.assert_array_equal(out, 0.0)


def test_loss_mask_weights_check_lengths():
    with pytest.raises(ValueError, match="lengths"):
        k.loss_mask_weights(np.ones(3, np.int32), np.zeros(4))


def _dense(n: int = 9, c: int = 4, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, (n, c))
    y = np.eye(c)[rng.integers(0, c, n)]
    return p, y


def _reference(code: int, p: np.ndarray, y: np.ndarray, param: float) -> np.ndarray:
    if code == codes.CATEGORICAL_ACCURACY:
        return (p.argmax(1) == y.argmax(1)) * 1.0
    if code == codes.TOP_K:
        target = p[np.arange(len(p)), y.argmax(1)]
        return ((p > target[:, None]).sum(1) < param) * 1.0
    if code == codes.BINARY_ACCURACY:
        return ((p > param) == y).mean(1)
    if code == codes.ABSOLUTE_ERROR:
        return np.abs(p - y).mean(1)
    return ((p - y) ** 2).mean(1)


@pytest.mark.parametrize("code,param", [(codes.CATEGORICAL_ACCURACY, 0.0), (codes.TOP_K, 2),
                                        (codes.BINARY_ACCURACY, 0.4),
                                        (codes.ABSOLUTE_ERROR, 0.0),
                                        (codes.SQUARED_ERROR, 0.0)])
def test_masked_metric_sums(code, param):
    p, y = _dense()
    ids = _ids()
    out = np.full(2, np.nan)
    k.masked_metric_sums(p, y, code, float(param), ids, out)
    mask = ids != 0
    want = (_reference(code, p, y, param) * mask).sum()
    np.testing.assert_allclose(out, [want, mask.sum()], rtol=1e-12)


@pytest.mark.parametrize("code,param", [(codes.SPARSE_ACCURACY, 0.0), (codes.SPARSE_TOP_K, 2)])
def test_masked_sparse_metric_sums(code, param):
    p, y = _dense()
    labels = y.argmax(1)
    ids = _ids()
    out = np.full(2, np.nan)
    k.masked_sparse_metric_sums(p, labels, code, float(param), ids, out)
    dense_code = codes.CATEGORICAL_ACCURACY if code == codes.SPARSE_ACCURACY else codes.TOP_K
    mask = ids != 0
    want = (_reference(dense_code, p, y, param) * mask).sum()
    np.testing.assert_allclose(out, [want, mask.sum()], rtol=1e-12)


@pytest.mark.parametrize("da,db", [(np.int32, np.int32), (np.int64, np.int32),
                                   (np.int32, np.int8)])
def test_mask_or_is_the_or_of_nonzero(da, db):
    """Keras' OR of a merge's masks: ``(a != 0) | (b != 0)`` as 0/1, ids of any integer
    dtype (negative ids count as valid, as ``!= 0`` in Keras), chained in place."""
    rng = np.random.default_rng(2)
    a = rng.integers(-2, 3, (5, 7)).astype(da)
    b = rng.integers(-1, 2, (5, 7)).astype(db)
    c = rng.integers(0, 2, (5, 7)).astype(np.int64)
    out = np.full((5, 7), 9, np.int32)
    k.mask_or(a, b, out)
    np.testing.assert_array_equal(out, ((a != 0) | (b != 0)).astype(np.int32))
    assert 0 < out.sum() < out.size
    k.mask_or(out, c, out)  # a third source, into the same array
    np.testing.assert_array_equal(out, ((a != 0) | (b != 0) | (c != 0)).astype(np.int32))


def test_mask_or_checks_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        k.mask_or(np.ones((2, 3), np.int32), np.ones((2, 4), np.int32),
                  np.zeros((2, 3), np.int32))
