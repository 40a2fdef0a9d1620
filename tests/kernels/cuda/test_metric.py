"""CUDA metric kernels against the CPU kernels (themselves tested against NumPy)."""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels.cpu import metric as cpu
from nexec.kernels.cuda import metric as gpu

from .helpers import CUDA_MARKS, dev, host, sentinel

pytestmark = CUDA_MARKS


def data(dtype, n=7, c=4, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.uniform(-0.1, 1.1, (n, c)).astype(dtype)
    p[0, :3] = [0.0, 0.5, 1.0]
    p[1, 1] = np.nan
    y = (rng.random((n, c)) > 0.5).astype(dtype)
    return p, y


def both(name, *args, size=1, dtype=np.int64):
    ref = np.full(size, -7, dtype)
    getattr(cpu, name)(*args, ref)
    out = sentinel((size,), dtype)
    getattr(gpu, name)(*[dev(a) if isinstance(a, np.ndarray) else a for a in args], out)
    return host(out), ref


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_counts_match_cpu(dtype):
    p, y = data(dtype)
    got, ref = both("auc_buckets", p, y, 7, size=14)
    np.testing.assert_array_equal(got, ref)
    got, ref = both("confusion_counts", p, y, 0.5, size=4)
    np.testing.assert_array_equal(got, ref)


def test_sums_and_top_k_match_cpu():
    p, y = data(np.float32)
    p = np.nan_to_num(p)
    for name in ("absolute_error_sum", "squared_error_sum"):
        got, ref = both(name, p, y, dtype=np.float64)
        np.testing.assert_allclose(got, ref, rtol=1e-12)
    labels = np.array([0, 1, 2, 3, 9, 1, 2])
    onehot = np.eye(4, dtype=np.float32)[labels % 4]
    for k in (1, 2):
        got, ref = both("top_k_count", p, onehot, k)
        np.testing.assert_array_equal(got, ref)
        got, ref = both("sparse_top_k_count", p, labels, k)
        np.testing.assert_array_equal(got, ref)
