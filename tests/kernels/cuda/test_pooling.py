"""CUDA pooling and shape kernels against the CPU kernels (simulator or GPU), and compiled
to PTX for the real target where a CUDA toolkit is installed."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nexec.kernels.cpu import pooling as CP
from nexec.kernels.cpu import reshaping as CR
from nexec.kernels.cuda import pooling as GP
from nexec.kernels.cuda import reshaping as GR
from tests.kernels.cuda.helpers import CUDA_MARKS, DTYPES, check, dev, sentinel

pytestmark = CUDA_MARKS

WINDOWS = [  # (x shape, (ph, pw, sh, sw, pt, pl), (ho, wo))
    ((2, 5, 4, 3), (3, 3, 2, 2, 1, 1), (3, 2)),   # "same", overlapping
    ((1, 4, 4, 2), (2, 2, 2, 2, 0, 0), (2, 2)),   # "valid"
    ((2, 1, 7, 2), (1, 3, 1, 1, 0, 1), (1, 7)),   # 1-D, stride 1, "same"
    ((2, 3, 3, 2), (3, 3, 3, 3, 0, 0), (1, 1)),   # global
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,window,out_hw", WINDOWS)
def test_pooling_kernels_match_the_cpu(shape, window, out_hw, dtype):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(dtype)
    out_shape = (shape[0], *out_hw, shape[3])
    dy = rng.normal(size=out_shape).astype(dtype)
    # max
    out, argmax = np.empty(out_shape, dtype), np.empty(out_shape, np.int32)
    CP.max_pool_forward(x, *window, out, argmax)
    d_out, d_arg = sentinel(out_shape, dtype), sentinel(out_shape, np.int32)
    GP.max_pool_forward(dev(x), *window, d_out, d_arg)
    check(d_out, out, dtype, "max forward")
    np.testing.assert_array_equal(d_arg.copy_to_host(), argmax)
    d_inf = sentinel(out_shape, dtype)
    GP.max_pool_forward(dev(x), *window, d_inf, dev(np.empty((0, 0, 0, 0), np.int32)))
    check(d_inf, out, dtype, "max forward at inference")
    dx = np.empty_like(x)
    CP.max_pool_backward(dy, argmax, *window, dx)
    d_dx = sentinel(shape, dtype)
    GP.max_pool_backward(dev(dy), d_arg, *window, d_dx)
    check(d_dx, dx, dtype, "max backward")
    # average
    CP.avg_pool_forward(x, *window, out)
    GP.avg_pool_forward(dev(x), *window, d_out)
    check(d_out, out, dtype, "avg forward")
    CP.avg_pool_backward(dy, *window, dx)
    d_dx = sentinel(shape, dtype)
    GP.avg_pool_backward(dev(dy), *window, d_dx)
    check(d_dx, dx, dtype, "avg backward")


@pytest.mark.parametrize("dtype", DTYPES)
def test_shape_kernels_match_the_cpu(dtype):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 2, 3)).astype(dtype)
    up = np.empty((2, 6, 4, 3), dtype)
    CR.upsample_forward(x, 2, 2, up)
    d_up = sentinel(up.shape, dtype)
    GR.upsample_forward(dev(x), 2, 2, d_up)
    check(d_up, up, dtype, "upsample forward")
    dx = np.empty_like(x)
    CR.upsample_backward(up, 2, 2, dx)
    d_dx = sentinel(x.shape, dtype)
    GR.upsample_backward(dev(up), 2, 2, d_dx)
    check(d_dx, dx, dtype, "upsample backward")
    for top, left, hw in [(1, 2, (5, 5)), (-1, 0, (1, 2))]:
        out = np.empty((2, *hw, 3), dtype)
        CR.pad_shift(x, top, left, out)
        d_out = sentinel(out.shape, dtype)
        GR.pad_shift(dev(x), top, left, d_out)
        check(d_out, out, dtype, f"pad_shift {top} {left}")
    x5 = rng.normal(size=(2, 3, 1, 2, 4)).astype(dtype)
    perm = (2, 0, 3, 1)
    out = np.empty(x5.transpose(0, *(p + 1 for p in perm)).shape, dtype)
    q = [perm.index(a) for a in range(4)]
    CR.permute_copy(x5, *q, out)
    d_out = sentinel(out.shape, dtype)
    GR.permute_copy(dev(x5), *q, d_out)
    check(d_out, out, dtype, "permute")


_PTX = textwrap.dedent("""
    import importlib
    from nexec.kernels.cuda.backend import cuda
    try:
        importlib.import_module(cuda.__name__ + ".cudadrv.nvvm").NVVM()
    except Exception:
        print("SKIP no libNVVM")
        raise SystemExit(0)
    dispatcher = importlib.import_module(cuda.__name__ + ".dispatcher")
    class _Device:
        compute_capability = (8, 0)
    dispatcher.get_current_device = lambda: _Device()
    from numba import types as T
    from nexec.kernels.cuda import pooling as P, reshaping as R
    i64 = T.int64
    for dt in (T.float32, T.float64):
        a4, a5 = T.Array(dt, 4, "C"), T.Array(dt, 5, "C")
        i4 = T.Array(T.int32, 4, "C")
        for k, sig in [(P._max_fwd, (a4,) + (i64,) * 6 + (a4, i4)),
                       (P._max_bwd, (a4, i4) + (i64,) * 6 + (a4,)),
                       (P._avg_fwd, (a4,) + (i64,) * 6 + (a4,)),
                       (P._avg_bwd, (a4,) + (i64,) * 6 + (a4,)),
                       (R._upsample_fwd, (a4, i64, i64, a4)),
                       (R._upsample_bwd, (a4, i64, i64, a4)),
                       (R._pad_shift, (a4, i64, i64, a4)),
                       (R._permute, (a5,) + (i64,) * 4 + (a5,))]:
            cuda.compile_ptx(k.py_func, sig, cc=(8, 0))
    print("OK")
""")


def test_kernels_compile_to_ptx():
    """The simulator runs Python; only the CUDA compiler sees what the target rejects."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    done = subprocess.run([sys.executable, "-c", _PTX], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() in ("OK", "SKIP no libNVVM"), done.stdout
