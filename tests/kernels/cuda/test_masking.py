"""CUDA mask kernels against the CPU kernels (themselves tested against NumPy)."""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels import masked_rows as codes
from nexec.kernels.cpu import masking as cpu
from nexec.kernels.cuda import masking as gpu

from .helpers import CUDA_MARKS, dev, host, sentinel

pytestmark = CUDA_MARKS


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_mask_weights_match_cpu(dtype):
    ids = np.array([0, 3, 1, 0, 2, 0, 5], np.int32)
    sw = np.random.default_rng(0).uniform(0, 2, 7).astype(dtype)
    ref = np.zeros(7, dtype)
    cpu.loss_mask_weights(ids, ref)
    out = sentinel((7,), dtype)
    gpu.loss_mask_weights(dev(ids), out)
    np.testing.assert_allclose(host(out), ref, rtol=1e-6)
    cpu.loss_mask_weights_times(ids, sw, ref)
    gpu.loss_mask_weights_times(dev(ids), dev(sw), out)
    np.testing.assert_allclose(host(out), ref, rtol=1e-6)
    gpu.loss_mask_weights(dev(np.zeros(3, np.int64)), out[:3])
    np.testing.assert_array_equal(host(out)[:3], 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_masked_metric_sums_match_cpu(dtype):
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, (7, 3)).astype(dtype)
    y = np.eye(3, dtype=dtype)[rng.integers(0, 3, 7)]
    ids = np.array([0, 3, 1, 0, 2, 4, 5], np.int64)
    for code, param in ((codes.CATEGORICAL_ACCURACY, 0.0), (codes.TOP_K, 2.0),
                        (codes.BINARY_ACCURACY, 0.4), (codes.ABSOLUTE_ERROR, 0.0),
                        (codes.SQUARED_ERROR, 0.0)):
        ref = np.zeros(2)
        cpu.masked_metric_sums(p, y, code, param, ids, ref)
        out = sentinel((2,), np.float64)
        gpu.masked_metric_sums(dev(p), dev(y), code, param, dev(ids), out)
        np.testing.assert_allclose(host(out), ref, rtol=1e-6, err_msg=str(code))
    labels = y.argmax(1)
    for code, param in ((codes.SPARSE_ACCURACY, 0.0), (codes.SPARSE_TOP_K, 2.0)):
        ref = np.zeros(2)
        cpu.masked_sparse_metric_sums(p, labels, code, param, ids, ref)
        out = sentinel((2,), np.float64)
        gpu.masked_sparse_metric_sums(dev(p), dev(labels), code, param, dev(ids), out)
        np.testing.assert_allclose(host(out), ref, rtol=1e-12, err_msg=str(code))


def test_mask_or_matches_numpy():
    rng = np.random.default_rng(3)
    a = rng.integers(-1, 3, (5, 7)).astype(np.int64)
    b = rng.integers(0, 2, (5, 7)).astype(np.int32)
    c = rng.integers(0, 2, (5, 7)).astype(np.int32)
    out = sentinel((5, 7), np.int32)
    gpu.mask_or(dev(a), dev(b), out)
    np.testing.assert_array_equal(host(out), ((a != 0) | (b != 0)).astype(np.int32))
    gpu.mask_or(out, dev(c), out)  # chained in place
    np.testing.assert_array_equal(host(out), ((a != 0) | (b != 0) | (c != 0)).astype(np.int32))
    with pytest.raises(ValueError, match="one shape"):
        gpu.mask_or(dev(a), dev(b[:, :3]), out)
