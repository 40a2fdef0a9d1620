"""CUDA optimizer steps against the CPU kernels, over several steps, with the
hyperparameters (and the step count the update advances) in a float64 device array."""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels.cpu import optimizer as cpu
from nexec.kernels.cuda import optimizer as gpu

from .helpers import CUDA_MARKS, DTYPES, check, dev, host

pytestmark = CUDA_MARKS

SIZE = 37
STEPS = 3


def state(dtype, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(SIZE).astype(dtype)
    grads = [rng.standard_normal(SIZE).astype(dtype) for _ in range(STEPS)]
    return w, grads


def counted(d_hyper, hyper, start):
    """The device hyper array equals the CPU one, and both counted STEPS steps."""
    got = host(d_hyper)
    assert got[0] == hyper[0] == start + STEPS
    assert np.array_equal(got, hyper)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd(momentum, nesterov, dtype):
    w, grads = state(dtype)
    vel = np.zeros(SIZE if momentum else 0, dtype)
    hyper = np.array([4.0, 0.05, momentum, float(nesterov)])
    dw, dvel, dh = dev(w), dev(vel), dev(hyper)
    for g in grads:
        cpu.sgd_update(w, g, vel, hyper)
        gpu.sgd_update(dw, dev(g), dvel, dh)
    check(dw, w, dtype, "sgd w")
    if momentum:
        check(dvel, vel, dtype, "sgd velocity")
    counted(dh, hyper, 4.0)


def test_sgd_momentum_zero_leaves_a_full_velocity_alone():
    w, grads = state(np.float64)
    vel = np.full(SIZE, 3.0)
    hyper = np.array([0.0, 0.05, 0.0, 1.0])
    dw, dvel, dh = dev(w), dev(vel), dev(hyper)
    for g in grads:
        cpu.sgd_update(w, g, vel, hyper)
        gpu.sgd_update(dw, dev(g), dvel, dh)
    check(dw, w, np.float64, "sgd w")
    assert (host(dvel) == 3.0).all()
    counted(dh, hyper, 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rmsprop(dtype):
    w, grads = state(dtype, seed=1)
    avg_sq = np.zeros(SIZE, dtype)
    hyper = np.array([0.0, 0.01, 0.9, 1e-7])
    dw, ds, dh = dev(w), dev(avg_sq), dev(hyper)
    for g in grads:
        cpu.rmsprop_update(w, g, avg_sq, hyper)
        gpu.rmsprop_update(dw, dev(g), ds, dh)
    check(dw, w, dtype, "rmsprop w")
    check(ds, avg_sq, dtype, "rmsprop avg_sq")
    counted(dh, hyper, 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("start", [0.0, 5.0])
def test_adam(dtype, start):
    w, grads = state(dtype, seed=2)
    m = np.zeros(SIZE, dtype)
    v = np.zeros(SIZE, dtype)
    hyper = np.array([start, 0.01, 0.9, 0.999, 1e-7])
    dw, dm, dv, dh = dev(w), dev(m), dev(v), dev(hyper)
    for g in grads:
        cpu.adam_update(w, g, m, v, hyper)
        gpu.adam_update(dw, dev(g), dm, dv, dh)
    check(dw, w, dtype, "adam w")
    check(dm, m, dtype, "adam m")
    check(dv, v, dtype, "adam v")
    counted(dh, hyper, start)


def test_adam_bias_correction_follows_the_device_count():
    """Two buffers from one state, stepped at counts 0 and 50: different step sizes, each
    matching the CPU at that count (the count is read on the device, not passed in)."""
    w, grads = state(np.float64, seed=3)
    results = []
    for start in (0.0, 50.0):
        cw, cm, cv = w.copy(), np.zeros(SIZE), np.zeros(SIZE)
        hyper = np.array([start, 0.01, 0.9, 0.999, 1e-7])
        dw, dm, dv, dh = dev(w), dev(cm), dev(cv), dev(hyper)
        cpu.adam_update(cw, grads[0], cm, cv, hyper)
        gpu.adam_update(dw, dev(grads[0]), dm, dv, dh)
        check(dw, cw, np.float64, f"adam w from count {start}")
        results.append(host(dw))
    assert np.max(np.abs(results[0] - results[1])) > 1e-3


def test_empty_buffers_still_count_the_step():
    dh = dev(np.array([0.0, 0.1, 0.9, 0.999, 1e-7]))
    e = dev(np.zeros(0))
    gpu.adam_update(e, e, e, e, dh)
    gpu.adam_update(e, e, e, e, dh)
    assert host(dh)[0] == 2.0


def test_rejects_bad_arguments():
    w = dev(np.zeros(4))
    h5 = dev(np.zeros(5))
    with pytest.raises(ValueError, match="one size"):
        gpu.rmsprop_update(w, dev(np.zeros(3)), w, h5)
    with pytest.raises(ValueError, match="velocity"):
        gpu.sgd_update(w, w, dev(np.zeros(3)), h5)
    with pytest.raises(ValueError, match="hyper"):
        gpu.adam_update(w, w, w, w, dev(np.zeros(4)))
    with pytest.raises(ValueError, match="float64"):
        gpu.sgd_update(w, w, w, dev(np.zeros(4, np.float32)))
    assert host(h5)[0] == 0.0  # nothing launched
