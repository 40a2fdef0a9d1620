"""CUDA Nadam, Adamax, Adagrad, Adadelta, Lion and clip_and_decay against the CPU kernels
(themselves tested against NumPy references), over several steps in the simulator."""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels.cpu import optimizer as cpu
from nexec.kernels.cuda import optimizer as gpu

from .helpers import CUDA_MARKS, check, dev, host

pytestmark = CUDA_MARKS

SIZE = 37
STEPS = 3

CASES = {  # name: (slots, initial slot value, hyper)
    "nadam": (2, 0.0, [2.0, 0.01, 0.9, 0.999, 1e-7, 0.7]),
    "adamax": (2, 0.0, [0.0, 0.02, 0.9, 0.999, 1e-7]),
    "adagrad": (1, 0.1, [0.0, 0.1, 1e-7]),
    "adadelta": (2, 0.0, [0.0, 1.0, 0.95, 1e-7]),
    "lion": (1, 0.0, [0.0, 0.003, 0.9, 0.99]),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(CASES))
def test_update_matches_cpu(name, dtype):
    slots, init, h = CASES[name]
    rng = np.random.default_rng(len(name))
    w = rng.standard_normal(SIZE).astype(dtype)
    state = [np.full(SIZE, init, dtype) for _ in range(slots)]
    hyper = np.array(h)
    dw, dstate, dh = dev(w), [dev(s) for s in state], dev(hyper)
    for _ in range(STEPS):
        g = rng.standard_normal(SIZE).astype(dtype)
        getattr(cpu, f"{name}_update")(w, g, *state, hyper)
        getattr(gpu, f"{name}_update")(dw, dev(g), *dstate, dh)
    check(dw, w, dtype, f"{name} w")
    for d, s in zip(dstate, state):
        check(d, s, dtype, f"{name} state")
    got = host(dh)
    assert got[0] == hyper[0] == h[0] + STEPS
    np.testing.assert_allclose(got, hyper, rtol=1e-15)


@pytest.mark.parametrize("mode,clip,wd", [(1, 0.8, 0.0), (2, 1.5, 0.25), (3, 0.4, 0.1)])
def test_clip_and_decay_matches_cpu(mode, clip, wd):
    rng = np.random.default_rng(mode)
    w, g = rng.standard_normal(SIZE), rng.standard_normal(SIZE) * 2
    offsets = np.array([0, 5, 6, SIZE], np.int64)
    hyper, prep = np.array([3.0, 0.1]), np.array([float(mode), clip, wd])
    dw, dg = dev(w), dev(g)
    gpu.clip_and_decay(dw, dg, dev(offsets), dev(np.zeros(3)), dev(hyper), dev(prep))
    cpu.clip_and_decay(w, g, offsets, np.zeros(3), hyper, prep)
    check(dg, g, np.float64, "clipped g")
    check(dw, w, np.float64, "decayed w")
