"""CUDA Embedding kernels (simulator) against the CPU kernels."""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels.cpu import embedding as cpu
from nexec.kernels.cuda import embedding as gpu

from .helpers import CUDA_MARKS, DTYPES, check, dev, sentinel

pytestmark = CUDA_MARKS

V, D, N = 5, 3, 6


def _case(dtype, id_dtype=np.int32, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, (N, 1)).astype(id_dtype)
    ids[:2, 0] = 4  # a repeated id: atomic adds into one row
    return ids, rng.normal(size=(V, D)).astype(dtype), rng.normal(size=(N, D)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("id_dtype", [np.int64, np.float32])
def test_forward_and_backward_match_the_cpu(dtype, id_dtype):
    ids, table, d_out = _case(dtype, id_dtype)
    out = np.empty((N, D), dtype)
    cpu.embedding_forward(ids, table, out)
    d = sentinel((N, D), dtype)
    gpu.embedding_forward(dev(ids), dev(table), d)
    check(d, out, dtype, "embedding_forward")
    d_table = np.empty((V, D), dtype)
    cpu.embedding_backward(ids, d_out, d_table)
    dd = sentinel((V, D), dtype)  # NaN everywhere: backward must zero it first
    gpu.embedding_backward(dev(ids), dev(d_out), dd)
    check(dd, d_table, dtype, "embedding_backward")


def test_out_of_range_id_gives_zero_row_and_no_gradient():
    ids, table, d_out = _case(np.float64)
    ids[3, 0] = V
    d = sentinel((N, D), np.float64)
    gpu.embedding_forward(dev(ids), dev(table), d)
    out = d.copy_to_host()
    assert (out[3] == 0).all() and np.isfinite(out).all()
    dd = sentinel((V, D), np.float64)
    gpu.embedding_backward(dev(ids), dev(d_out), dd)
    expected = np.zeros((V, D))
    good = np.arange(N) != 3
    np.add.at(expected, ids[good, 0].astype(int), d_out[good])
    check(dd, expected, np.float64, "embedding_backward skipping a bad id")
