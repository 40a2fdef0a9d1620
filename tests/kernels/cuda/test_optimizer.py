"""CUDA optimizer steps against the CPU kernels, over several steps."""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels.cpu import optimizer as cpu
from nexec.kernels.cuda import optimizer as gpu

from .helpers import CUDA_MARKS, DTYPES, check, dev

pytestmark = CUDA_MARKS

SIZE = 37
STEPS = 3


def state(dtype, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(SIZE).astype(dtype)
    grads = [rng.standard_normal(SIZE).astype(dtype) for _ in range(STEPS)]
    return w, grads


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd(momentum, nesterov, dtype):
    w, grads = state(dtype)
    vel = np.zeros(SIZE if momentum else 0, dtype)
    dw, dvel = dev(w), dev(vel)
    for g in grads:
        cpu.sgd_update(w, g, vel, 0.05, momentum, nesterov)
        gpu.sgd_update(dw, dev(g), dvel, 0.05, momentum, nesterov)
    check(dw, w, dtype, "sgd w")
    if momentum:
        check(dvel, vel, dtype, "sgd velocity")


@pytest.mark.parametrize("dtype", DTYPES)
def test_rmsprop(dtype):
    w, grads = state(dtype, seed=1)
    vel = np.zeros(SIZE, dtype)
    dw, dvel = dev(w), dev(vel)
    for g in grads:
        cpu.rmsprop_update(w, g, vel, 0.01, 0.9, 1e-7)
        gpu.rmsprop_update(dw, dev(g), dvel, 0.01, 0.9, 1e-7)
    check(dw, w, dtype, "rmsprop w")
    check(dvel, vel, dtype, "rmsprop velocity")


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam(dtype):
    w, grads = state(dtype, seed=2)
    m = np.zeros(SIZE, dtype)
    v = np.zeros(SIZE, dtype)
    dw, dm, dv = dev(w), dev(m), dev(v)
    for t, g in enumerate(grads, start=1):
        cpu.adam_update(w, g, m, v, 0.01, 0.9, 0.999, 1e-7, t)
        gpu.adam_update(dw, dev(g), dm, dv, 0.01, 0.9, 0.999, 1e-7, t)
    check(dw, w, dtype, "adam w")
    check(dm, m, dtype, "adam m")
    check(dv, v, dtype, "adam v")


def test_rejects_bad_arguments():
    w = dev(np.zeros(4))
    with pytest.raises(ValueError, match="1-based"):
        gpu.adam_update(w, w, w, w, 0.1, 0.9, 0.999, 1e-7, 0)
    with pytest.raises(ValueError, match="one size"):
        gpu.rmsprop_update(w, dev(np.zeros(3)), w, 0.1, 0.9, 1e-7)
