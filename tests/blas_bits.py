"""Whether this machine's BLAS gives the same bits however a product is split.

Some of nexec's equalities rest on the BLAS: a GEMM split into column blocks on multiples of
16 (filter shards), or run at one thread instead of two (fewer threads under load), gives
each element the same bits. OpenBLAS's AVX-512 kernels (SkylakeX) do; its AVX2 kernels
(Haswell, as chosen on an AMD Zen 3) do not: elements differ in their last bits
(docs/performance.md, "A CPU without AVX-512"). The tests of those equalities ask
:func:`blas_splits_keep_bits` and check the bits where the BLAS keeps them, else closeness.
"""
from __future__ import annotations

import functools

import numpy as np
from numba import njit
from threadpoolctl import threadpool_limits

from nexec.kernels.cpu.blas import gemm


@njit(cache=False)
def _product(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    gemm(1.0, a, b, 0.0, c)


@functools.cache
def blas_splits_keep_bits() -> bool:
    """True when float32 GEMMs of the shapes nexec splits give the same bits at one and at
    two BLAS threads, and whole or in column blocks on multiples of 16."""
    rng = np.random.default_rng(0)
    for m, k, n in ((96, 288, 48), (64, 32, 256), (32, 256, 64)):
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        runs = []
        for threads in (1, 2):
            with threadpool_limits(threads):
                c = np.empty((m, n), np.float32)
                _product(a, b, c)
                runs.append(c)
        block = np.empty((m, 16), np.float32)
        _product(a, np.ascontiguousarray(b[:, :16]), block)
        if not (np.array_equal(runs[0], runs[1]) and np.array_equal(block, runs[0][:, :16])):
            return False
    return True


def assert_same_bits_where_blas_keeps_them(actual: np.ndarray, desired: np.ndarray,
                                           rtol: float = 1e-5, atol: float = 1e-6,
                                           err_msg: str = "") -> None:
    """The same bits if :func:`blas_splits_keep_bits`, else equal to rounding."""
    if blas_splits_keep_bits():
        np.testing.assert_array_equal(actual, desired, err_msg=err_msg)
    else:
        np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol, err_msg=err_msg)
