"""CUDA losses, gradients and accuracy counts against the CPU kernels (Keras semantics)."""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels.cpu import loss as cpu
from nexec.kernels.cuda import loss as gpu

from .helpers import CUDA_MARKS, DTYPES, check, dev, host, rtol, sentinel

pytestmark = CUDA_MARKS

N, C = 5, 4
EPS = 1e-7
SCALE = 0.7 / N


def probs(dtype, seed=0):
    """Unnormalised probabilities with entries that clip at both ends."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 1.0, (N, C))
    p[0, 1] = 0.0                      # clipped low (and y > 0 there)
    p[1] = [1.0, 0.0, 0.0, 0.0]        # saturated row: q = 1 clips high
    p[2] *= 1.7                        # rows need not sum to 1
    return p.astype(dtype)


def soft_targets(dtype, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.uniform(0.0, 1.0, (N, C))
    y[3] = [0.0, 1.0, 0.0, 0.0]
    y[4, 2] = 0.0
    return y.astype(dtype)


def value(fn, *args):
    out = sentinel((1,), np.float64)
    fn(*args, out)
    return host(out)[0]


def count(fn, *args):
    out = sentinel((1,), np.int64)
    fn(*args, out)
    return int(host(out)[0])


def cpu_value(fn, *args):
    """The CPU kernel with the same positional signature, into a host slot."""
    out = np.full(1, np.nan)
    fn(*args, out)
    return out[0]


def cpu_count(fn, *args):
    out = np.full(1, -7, np.int64)
    fn(*args, out)
    return int(out[0])


def same_value(actual, expected, dtype, what):
    assert np.isfinite(expected)
    assert abs(actual - expected) <= rtol(dtype) * max(abs(expected), 1e-30), \
        f"{what}: {actual!r} != {expected!r}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_categorical(dtype):
    p, y = probs(dtype), soft_targets(dtype)
    same_value(value(gpu.categorical_crossentropy, dev(p), dev(y), EPS),
               cpu_value(cpu.categorical_crossentropy, p, y, EPS), dtype,
               "categorical_crossentropy")
    dp = np.empty_like(p)
    cpu.categorical_crossentropy_grad(p, y, EPS, SCALE, dp)
    d = sentinel(p.shape, dtype)
    gpu.categorical_crossentropy_grad(dev(p), dev(y), EPS, SCALE, d)
    check(d, dp, dtype, "categorical_crossentropy_grad")
    dz = np.empty_like(p)
    cpu.softmax_crossentropy_grad(p, y, SCALE, dz)
    d = sentinel(p.shape, dtype)
    gpu.softmax_crossentropy_grad(dev(p), dev(y), SCALE, d)
    check(d, dz, dtype, "softmax_crossentropy_grad (p * sum(y) - y)")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
def test_sparse_categorical(dtype, label_dtype):
    p = probs(dtype)
    labels = np.array([1, 0, 3, 2, 0], label_dtype)  # row 0: clipped low, row 1: clipped high
    same_value(value(gpu.sparse_categorical_crossentropy, dev(p), dev(labels), EPS),
               cpu_value(cpu.sparse_categorical_crossentropy, p, labels, EPS), dtype,
               "sparse_categorical_crossentropy")
    dp = np.empty_like(p)
    cpu.sparse_categorical_crossentropy_grad(p, labels, EPS, SCALE, dp)
    d = sentinel(p.shape, dtype)
    gpu.sparse_categorical_crossentropy_grad(dev(p), dev(labels), EPS, SCALE, d)
    check(d, dp, dtype, "sparse_categorical_crossentropy_grad")
    dz = np.empty_like(p)
    cpu.sparse_softmax_crossentropy_grad(p, labels, SCALE, dz)
    d = sentinel(p.shape, dtype)
    gpu.sparse_softmax_crossentropy_grad(dev(p), dev(labels), SCALE, d)
    check(d, dz, dtype, "sparse_softmax_crossentropy_grad")


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary(dtype):
    rng = np.random.default_rng(2)
    p = rng.uniform(0.0, 1.0, (N, C))
    p[0, 0], p[1, 1], p[2, 2] = 0.0, 1.0, 1e-9  # clipped entries
    p = p.astype(dtype)
    y = (rng.uniform(size=(N, C)) > 0.5).astype(dtype)
    y[4] = [0.25, 0.5, 0.75, 1.0]  # soft targets
    same_value(value(gpu.binary_crossentropy, dev(p), dev(y), EPS),
               cpu_value(cpu.binary_crossentropy, p, y, EPS), dtype, "binary_crossentropy")
    dp = np.empty_like(p)
    cpu.binary_crossentropy_grad(p, y, EPS, SCALE, dp)
    d = sentinel(p.shape, dtype)
    gpu.binary_crossentropy_grad(dev(p), dev(y), EPS, SCALE, d)
    check(d, dp, dtype, "binary_crossentropy_grad")
    dz = np.empty_like(p)
    cpu.sigmoid_binary_crossentropy_grad(p, y, SCALE, dz)
    d = sentinel(p.shape, dtype)
    gpu.sigmoid_binary_crossentropy_grad(dev(p), dev(y), SCALE, d)
    check(d, dz, dtype, "sigmoid_binary_crossentropy_grad")


@pytest.mark.parametrize("dtype", DTYPES)
def test_mean_squared_error(dtype):
    rng = np.random.default_rng(3)
    p = rng.standard_normal((N, C)).astype(dtype)
    y = rng.standard_normal((N, C)).astype(dtype)
    same_value(value(gpu.mean_squared_error, dev(p), dev(y)),
               cpu_value(cpu.mean_squared_error, p, y), dtype, "mean_squared_error")
    dp = np.empty_like(p)
    cpu.mean_squared_error_grad(p, y, SCALE, dp)
    d = sentinel(p.shape, dtype)
    gpu.mean_squared_error_grad(dev(p), dev(y), SCALE, d)
    check(d, dp, dtype, "mean_squared_error_grad")


@pytest.mark.parametrize("dtype", DTYPES)
def test_accuracy_counts(dtype):
    p = np.array([[0.1, 0.7, 0.2], [0.5, 0.5, 0.0], [0.2, 0.2, 0.6], [0.3, 0.6, 0.1],
                  [np.nan, 0.9, 0.0], [0.4, 0.1, 0.5]], dtype)
    y = np.array([[0, 1, 0], [1, 0, 0], [0, 1, 0], [0.5, 0.5, 0], [1, 0, 0], [0, 0, 1]],
                 dtype)
    labels = np.array([1, 1, 2, 0, 0, 2], np.int64)
    assert count(gpu.categorical_accuracy_count, dev(p), dev(y)) == \
        cpu_count(cpu.categorical_accuracy_count, p, y)
    assert count(gpu.sparse_categorical_accuracy_count, dev(p), dev(labels)) == \
        cpu_count(cpu.sparse_categorical_accuracy_count, p, labels)
    yb = (p > 0.45).astype(dtype)
    yb[0, 0] = 0.5  # never matches
    for thr in (0.5, 0.45, 0.1):
        assert count(gpu.binary_accuracy_count, dev(p), dev(yb), thr) == \
            cpu_count(cpu.binary_accuracy_count, p, yb, thr), f"threshold {thr}"


def test_counts_are_not_trivially_equal():
    """Guards against a count kernel that always writes the same number."""
    p = np.eye(4)
    assert count(gpu.categorical_accuracy_count, dev(p), dev(p)) == 4
    assert count(gpu.categorical_accuracy_count, dev(p), dev(p[::-1].copy())) == 0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf - inf in the simulator
def test_check_finite():
    x = np.arange(15.0).reshape(3, 5)
    assert count(gpu.check_finite, dev(x)) == cpu_count(cpu.check_finite, x) == 1
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[2, 4] = bad
        assert count(gpu.check_finite, dev(y)) == cpu_count(cpu.check_finite, y) == 0
    assert count(gpu.check_finite, dev(np.arange(6, dtype=np.int32))) == 1
    assert count(gpu.check_finite, dev(np.zeros((2, 0, 3)))) == 1


def test_empty_batch_and_device_only_behaviour():
    empty = np.zeros((0, C))
    assert np.isnan(value(gpu.categorical_crossentropy, dev(empty), dev(empty), EPS))
    assert np.isnan(value(gpu.mean_squared_error, dev(empty), dev(empty)))
    assert np.isnan(value(gpu.binary_crossentropy, dev(empty), dev(empty), EPS))
    assert np.isnan(value(gpu.sparse_categorical_crossentropy, dev(empty),
                          dev(np.zeros(0, np.int64)), EPS))
    assert count(gpu.categorical_accuracy_count, dev(empty), dev(empty)) == 0
    # A label outside [0, C): the CPU raises, the device gives NaN and a zero gradient row.
    p = probs(np.float64)
    bad = np.array([1, 0, C, 2, 0], np.int64)
    with pytest.raises(ValueError):
        cpu_value(cpu.sparse_categorical_crossentropy, p, bad, EPS)
    assert np.isnan(value(gpu.sparse_categorical_crossentropy, dev(p), dev(bad), EPS))
    d = sentinel(p.shape, np.float64)
    gpu.sparse_softmax_crossentropy_grad(dev(p), dev(bad), SCALE, d)
    assert (host(d)[2] == 0).all() and np.isfinite(host(d)).all()
    with pytest.raises(ValueError, match="batch sizes"):
        gpu.sparse_categorical_crossentropy(dev(p), dev(bad[:3]), EPS,
                                            sentinel((1,), np.float64))


@pytest.mark.parametrize("code_name,a", [("huber", 0.5), ("hinge", 0.0),
                                          ("categorical_crossentropy_logits", 0.1)])
def test_row_loss_matches_cpu(code_name, a):
    """The Keras losses by code (nexec.kernels.loss_rows): value and gradient as on the CPU."""
    from nexec.kernels.loss_rows import CODES

    code = CODES[code_name]
    rng = np.random.default_rng(5)
    p = rng.normal(0.0, 1.5, (N, C))
    y = np.eye(C)[rng.integers(0, C, N)]
    out = np.zeros(1)
    cpu.row_loss(p, y, code, a, EPS, out)
    got = sentinel((1,), np.float64)
    gpu.row_loss(dev(p), dev(y), code, a, EPS, got)
    assert abs(host(got)[0] - out[0]) <= 1e-12 * abs(out[0])
    dp = np.zeros_like(p)
    cpu.row_loss_grad(p, y, code, a, EPS, SCALE, dp)
    ddp = dev(np.full_like(p, np.nan))
    gpu.row_loss_grad(dev(p), dev(y), code, a, EPS, SCALE, ddp)
    check(ddp, dp, np.float64, "row_loss_grad")


def test_sparse_crossentropy_from_logits_matches_cpu():
    rng = np.random.default_rng(6)
    z = rng.normal(0.0, 2.0, (N, C))
    labels = np.array([0, 3, 1, 2, 2])
    out = np.zeros(1)
    cpu.sparse_categorical_crossentropy_logits(z, labels, out)
    got = sentinel((1,), np.float64)
    gpu.sparse_categorical_crossentropy_logits(dev(z), dev(labels), got)
    assert abs(host(got)[0] - out[0]) <= 1e-12 * abs(out[0])
    dz = np.zeros_like(z)
    cpu.sparse_categorical_crossentropy_logits_grad(z, labels, SCALE, dz)
    ddz = dev(np.full_like(z, np.nan))
    gpu.sparse_categorical_crossentropy_logits_grad(dev(z), dev(labels), SCALE, ddz)
    check(ddz, dz, np.float64, "sparse logits grad")


# --------------------------------------------------------------------------- weighted


def _sample_weights():
    w = np.random.default_rng(9).uniform(0.0, 2.0, N)
    w[1] = 0.0
    return w


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_values_match_cpu(dtype):
    """Every weighted value kernel (``fit(sample_weight=...)``) as its CPU twin."""
    from nexec.kernels.loss_rows import CODES

    p, y, w = probs(dtype), soft_targets(dtype), _sample_weights().astype(dtype)
    labels = np.array([0, 3, 1, 2, 2])
    huber = CODES["huber"]
    cases = {
        "categorical_crossentropy_weighted": ((p, y, EPS), (p, y, EPS)),
        "sparse_categorical_crossentropy_weighted": ((p, labels, EPS), (p, labels, EPS)),
        "binary_crossentropy_weighted": ((p, y, EPS), (p, y, EPS)),
        "mean_squared_error_weighted": ((p, y), (p, y)),
        "row_loss_weighted": ((p, y, huber, 0.5, EPS), (p, y, huber, 0.5, EPS)),
        "sparse_categorical_crossentropy_logits_weighted": ((p, labels), (p, labels)),
    }
    for name, (gpu_args, cpu_args) in cases.items():
        d_args = tuple(dev(a) if isinstance(a, np.ndarray) else a for a in gpu_args)
        got = value(getattr(gpu, name), *d_args, dev(w))
        same_value(got, cpu_value(getattr(cpu, name), *cpu_args, w), dtype, name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_scale_rows_matches_cpu(dtype):
    rng = np.random.default_rng(10)
    dp = rng.normal(size=(N, C)).astype(dtype)
    w = _sample_weights().astype(dtype)
    d = dev(dp)
    gpu.scale_rows(d, dev(w))
    expected = dp.copy()
    cpu.scale_rows(expected, w)
    check(d, expected, dtype, "scale_rows")
    with pytest.raises(ValueError, match="one weight per row"):
        gpu.scale_rows(d, dev(w[:-1]))


def test_weighted_value_with_a_bad_label_is_nan_and_unit_weights_are_unweighted():
    p = probs(np.float64)
    got = value(gpu.sparse_categorical_crossentropy_weighted, dev(p),
                dev(np.array([0, 9, 1, 2, 2])), EPS, dev(np.ones(N)))
    assert np.isnan(got)
    y = soft_targets(np.float64)
    ones = value(gpu.categorical_crossentropy_weighted, dev(p), dev(y), EPS, dev(np.ones(N)))
    assert ones == value(gpu.categorical_crossentropy, dev(p), dev(y), EPS)
