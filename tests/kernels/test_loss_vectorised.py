"""The crossentropy value kernels' vectorised log and their chunked, allocation-free sums.

``_log`` is checked against ``np.log`` over the whole range the clipped losses use; the
categorical and binary crossentropy values (plain and weighted) against float64 NumPy
references, for batches that fill several stack chunks, rows longer than a chunk, single
columns, unnormalised targets and saturated predictions; every value is the same bits on a
second call; and a call allocates nothing (no Numba runtime allocation beyond its argument
wrappers).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from nexec.kernels.cpu import loss as K
from nexec.testing import assert_close, count_allocations

from .test_loss import ref_bce, ref_cce

EPS = 1e-7
DTYPES = [np.float64, np.float32]
# (rows, columns): one chunk, several chunks with a partial last one, rows longer than a
# chunk (split over chunks), a single column
SHAPES = [(5, 3), (130, 10), (3, K._CHUNK + 37), (9, 1)]


def test_log_matches_numpy_within_a_few_ulps():
    x = np.concatenate([np.geomspace(1e-7, 1.0, 20001), 1.0 - np.geomspace(1e-7, 0.5, 2001),
                        np.random.default_rng(0).random(5000),
                        np.nextafter(np.sqrt(0.5), [0.0, 1.0]),
                        np.nextafter(np.sqrt(2.0), [0.0, 2.0]), [1e-300, 3.0, 1e10]])
    got = np.array([K._log(float(v)) for v in x])
    want = np.log(x)
    ulps = np.abs(got - want) / np.spacing(np.maximum(np.abs(want), np.finfo(float).tiny))
    assert ulps.max() <= 4, (x[ulps.argmax()], ulps.max())
    assert K._log(1.0) == 0.0 and K._log(2.0) == math.log(2.0)
    assert math.isnan(K._log(float("nan")))


def probabilities(n, k, dtype, seed):
    rng = np.random.default_rng(seed)
    p = rng.random((n, k)) + 0.05
    p /= p.sum(axis=1, keepdims=True)
    if k > 1:
        p[0, 0] = 0.0  # clipped low
        p[-1, -1] = 1.0  # a row that does not sum to 1; clipped high in binary crossentropy
    y = rng.random((n, k)) * 1.5  # unnormalised targets, as Keras takes them
    return p.astype(dtype), y.astype(dtype), rng.random(n).astype(dtype)


def rounded_eps(dtype):
    """Keras clips to bounds rounded to the prediction's dtype."""
    e = np.dtype(dtype).type(EPS)
    return float(e), float(np.dtype(dtype).type(1) - e)


def ref_cce_rows(p, y, lo, hi):
    q = np.clip(p / p.sum(axis=1, keepdims=True), lo, hi)
    return -np.sum(y * np.log(q), axis=1)


def ref_bce_rows(p, y, lo, hi):
    c = np.clip(p, lo, hi)
    return np.mean(-(y * np.log(c) + (1.0 - y) * np.log(1.0 - c)), axis=1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_categorical_crossentropy_values(dtype, shape):
    p, y, w = probabilities(*shape, dtype, seed=1)
    p64, y64, w64 = (a.astype(np.float64) for a in (p, y, w))
    lo, hi = rounded_eps(dtype)
    rows = ref_cce_rows(p64, y64, lo, hi)
    out = np.zeros(1)
    K.categorical_crossentropy(p, y, EPS, out)
    assert_close(out[0], rows.mean(), rtol=1e-13)
    if dtype == np.float64:
        assert_close(out[0], ref_cce(p64, y64), rtol=1e-13)
    again = np.zeros(1)
    K.categorical_crossentropy(p, y, EPS, again)
    assert again[0] == out[0]
    K.categorical_crossentropy_weighted(p, y, EPS, w, out)
    assert_close(out[0], np.sum(w64 * rows) / shape[0], rtol=1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_binary_crossentropy_values(dtype, shape):
    p, y, w = probabilities(*shape, dtype, seed=2)
    p64, y64, w64 = (a.astype(np.float64) for a in (p, y, w))
    lo, hi = rounded_eps(dtype)
    rows = ref_bce_rows(p64, y64, lo, hi)
    out = np.zeros(1)
    K.binary_crossentropy(p, y, EPS, out)
    assert_close(out[0], rows.mean(), rtol=1e-13)
    if dtype == np.float64:
        assert_close(out[0], ref_bce(p64, y64), rtol=1e-13)
    again = np.zeros(1)
    K.binary_crossentropy(p, y, EPS, again)
    assert again[0] == out[0]
    K.binary_crossentropy_weighted(p, y, EPS, w, out)
    assert_close(out[0], np.sum(w64 * rows) / shape[0], rtol=1e-13)


def test_nan_prediction_gives_nan_and_empty_batch_nan():
    p, y, _ = probabilities(4, 3, np.float32, seed=3)
    p[2, 1] = np.nan
    out = np.zeros(1)
    K.categorical_crossentropy(p, y, EPS, out)
    assert np.isnan(out[0])
    K.binary_crossentropy(p, y, EPS, out)
    assert np.isnan(out[0])
    empty = np.zeros((0, 3), np.float32)
    K.categorical_crossentropy(empty, empty, EPS, out)
    assert np.isnan(out[0])


def test_values_allocate_nothing():
    p, y, w = probabilities(300, 10, np.float32, seed=4)
    out = np.zeros(1)
    calls = [(K.categorical_crossentropy, (p, y, EPS, out)),
             (K.binary_crossentropy, (p, y, EPS, out)),
             (K.categorical_crossentropy_weighted, (p, y, EPS, w, out)),
             (K.binary_crossentropy_weighted, (p, y, EPS, w, out))]
    for f, args in calls:
        f(*args)
    wrappers = sum(isinstance(a, np.ndarray) for _, args in calls for a in args)
    nrt, numpy_blocks = count_allocations(lambda: [f(*args) for f, args in calls])
    assert nrt == wrappers and numpy_blocks == []
