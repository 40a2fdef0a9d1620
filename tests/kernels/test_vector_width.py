"""Kernels are lowered with LLVM's 512-bit vector preference (``nexec.kernels.vector_width``):
the attribute reaches the function, the CPU's widest registers are used where it has them,
and the numbers are those of Numba's default pipeline."""
from __future__ import annotations

import llvmlite.binding as llvm
import numpy as np
from numba import njit

from nexec.kernels import jit
from nexec.kernels.vector_width import VECTOR_WIDTH, WideVectorPipeline


def _axpy(a, x, y):
    for i in range(x.shape[0]):
        y[i] += a * x[i]


def _dot(x, y):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * y[i]
    return s


def _fresh(fn):
    """``fn`` with the kernel options of ``nexec.kernels.jit``, but compiled here (cached
    code cannot be inspected)."""
    return jit.uncached_kernel(fn)


def test_every_kernel_kind_is_lowered_by_the_wide_pipeline():
    for decorator in (jit.kernel, jit.fma_kernel, jit.inline_kernel, jit.uncached_kernel,
                      jit.parallel_kernel):
        made = decorator(_axpy)
        assert made._compiler.pipeline_class is WideVectorPipeline


def test_the_function_asks_for_wide_vectors_and_gets_them_where_the_cpu_has_them():
    fn = _fresh(_axpy)
    x = np.arange(100, dtype=np.float32)
    fn(np.float32(2), x, np.ones(100, np.float32))
    sig = fn.signatures[0]
    assert f'"prefer-vector-width"="{VECTOR_WIDTH}"' in fn.inspect_llvm(sig)
    asm = fn.inspect_asm(sig)
    if "+avx512f" in llvm.get_host_cpu_features().flatten():
        assert "zmm" in asm
    else:  # no 512-bit registers: the attribute must not break compilation
        assert "zmm" not in asm


def test_wide_vectors_give_numbas_default_bits():
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal(1037).astype(dtype)
        y0 = rng.standard_normal(1037).astype(dtype)
        y1, y2 = y0.copy(), y0.copy()
        _fresh(_axpy)(dtype(0.37), x, y1)
        njit(_axpy)(dtype(0.37), x, y2)
        np.testing.assert_array_equal(y1, y2)
        # a reduction keeps its order: no reassociation comes with the width
        assert _fresh(_dot)(x, y1) == njit(_dot)(x, y1)


def test_native_vector_bits_follows_the_features_numba_compiles_for(monkeypatch):
    from numba.core import config

    from nexec.kernels import vector_width

    flat = llvm.get_host_cpu_features().flatten()
    want = 512 if "+avx512f" in flat else 256 if "+avx" in flat.split(",") else 128
    assert vector_width.native_vector_bits() == want
    for features, bits in (("+avx,+avx2,+fma,-avx512f", 256), ("+avx2,+avx512f", 512),
                           ("+sse4.2,-avx", 128)):
        monkeypatch.setattr(config, "CPU_FEATURES", features)
        vector_width.native_vector_bits.cache_clear()
        assert vector_width.native_vector_bits() == bits
    monkeypatch.undo()
    vector_width.native_vector_bits.cache_clear()
    assert vector_width.native_vector_bits() == want
