"""CUDA conv2d kernels against the CPU kernels: N=2, 5x5x3 -> 4, strides 1 and 2, "same"
and "valid", a pointwise 1x1, a strided 1x1 and a non-square kernel."""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels.activations import LINEAR, RELU, SIGMOID, SOFTMAX, TANH
from nexec.kernels.cpu import conv as cpu
from nexec.kernels.cuda import conv as gpu

from .helpers import CUDA_MARKS, check, dev, sentinel

pytestmark = CUDA_MARKS

N, H, W, CIN, F = 2, 5, 5, 3, 4

# (kh, kw, sh, sw, padding, act, dtype)
CASES = [
    (3, 3, 1, 1, "same", RELU, np.float64),
    (3, 3, 1, 1, "same", SOFTMAX, np.float32),
    (3, 3, 1, 1, "valid", SIGMOID, np.float64),
    (3, 3, 2, 2, "same", TANH, np.float32),
    (3, 3, 2, 2, "valid", LINEAR, np.float64),
    (1, 1, 1, 1, "valid", RELU, np.float32),   # pointwise: no im2col
    (1, 1, 2, 2, "same", SIGMOID, np.float64),  # 1x1 but strided: im2col path
    (2, 3, 2, 1, "same", SOFTMAX, np.float64),  # non-square kernel, mixed strides, odd pad
]


def ident(case) -> str:
    kh, kw, sh, sw, pad, act, dtype = case
    return f"{kh}x{kw}-s{sh}{sw}-{pad}-act{act}-{np.dtype(dtype).name}"


def make(kh, kw, dtype, seed, bias=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, H, W, CIN)).astype(dtype)
    w = (rng.standard_normal((kh, kw, CIN, F)) / np.sqrt(kh * kw * CIN)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype) if bias else np.zeros(0, dtype)
    return x, w, b


def run_case(kh, kw, sh, sw, pad, act, dtype, seed=0, bias=True, need_dx=True,
             separate_dcols=False):
    x, w, b = make(kh, kw, dtype, seed, bias)
    ho, wo, pt, pl = cpu.conv2d_geometry(H, W, kh, kw, sh, sw, pad)
    shapes = cpu.conv2d_workspace_shapes(N, H, W, CIN, kh, kw, F, ho, wo, sh, sw, True)
    m = N * ho * wo

    # CPU reference
    cols = np.zeros(shapes["cols"], dtype)
    y = np.empty((m, F), dtype)
    cpu.conv2d_forward(x, w, b, sh, sw, pt, pl, ho, wo, act, cols, y, y)
    dy = np.random.default_rng(seed + 100).standard_normal((m, F)).astype(dtype)
    dz = np.empty_like(y)
    dx = np.empty(x.shape if need_dx else (0, H, W, CIN), dtype)
    dw = np.empty_like(w)
    db = np.empty_like(b)
    cpu.conv2d_backward(x, w, y, dy, sh, sw, pt, pl, ho, wo, act, cols, dz,
                        np.zeros((0, 0), dtype), dx, dw, db)

    # CUDA
    d_x, d_w = dev(x), dev(w)
    d_cols = sentinel(shapes["cols"], dtype)
    d_y = sentinel((m, F), dtype)
    gpu.conv2d_forward(d_x, d_w, dev(b), sh, sw, pt, pl, ho, wo, act, d_cols, d_y, d_y)
    check(d_y, y, dtype, "conv2d_forward")

    d_dz = sentinel((m, F), dtype)
    d_dcols = sentinel(shapes["cols"], dtype) if separate_dcols else dev(np.zeros((0, 0), dtype))
    d_dx = sentinel(dx.shape, dtype)
    d_dw = sentinel(w.shape, dtype)
    d_db = sentinel(b.shape, dtype)
    gpu.conv2d_backward(d_x, d_w, dev(y), dev(dy), sh, sw, pt, pl, ho, wo, act, d_cols, d_dz,
                        d_dcols, d_dx, d_dw, d_db)
    check(d_dz, dz, dtype, "dz")
    if need_dx:
        check(d_dx, dx, dtype, "dx")
    check(d_dw, dw, dtype, "dw")
    if bias:
        check(d_db, db, dtype, "db")


@pytest.mark.parametrize("case", CASES, ids=ident)
def test_conv2d_matches_cpu(case):
    run_case(*case, seed=CASES.index(case))


def test_conv2d_no_bias_no_dx():
    run_case(3, 3, 2, 2, "same", RELU, np.float64, seed=11, bias=False, need_dx=False)


def test_conv2d_separate_dcols_workspace():
    run_case(3, 3, 1, 1, "valid", TANH, np.float64, seed=12, separate_dcols=True)


def test_geometry_is_the_cpu_one():
    assert gpu.conv2d_geometry is cpu.conv2d_geometry
    assert gpu.conv2d_workspace_shapes is cpu.conv2d_workspace_shapes


def test_conv2d_rejects_bad_shapes():
    x = dev(np.zeros((N, H, W, CIN)))
    w = dev(np.zeros((3, 3, CIN, F)))
    with pytest.raises(ValueError, match="out has shape"):
        gpu.conv2d_forward(x, w, dev(np.zeros(F)), 1, 1, 1, 1, H, W, RELU,
                           dev(np.zeros((N * H * W, 27))), dev(np.zeros((3, F))),
                           dev(np.zeros((3, F))))
    with pytest.raises(ValueError, match="cols has shape"):
        out = dev(np.zeros((N * H * W, F)))
        gpu.conv2d_forward(x, w, dev(np.zeros(F)), 1, 1, 1, 1, H, W, RELU,
                           dev(np.zeros((N * H * W, 26))), out, out)
