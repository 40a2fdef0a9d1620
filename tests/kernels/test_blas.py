"""BLAS GEMM into views (nexec.kernels.cpu.blas.gemm) against NumPy, in and across processes."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from nexec.kernels.cpu.blas import gemm

DTYPES = [np.float32, np.float64]
ROOT = Path(__file__).resolve().parents[2]


def _tol(dtype: type) -> float:
    return 2e-5 if dtype == np.float32 else 1e-12


def _operand(rng: np.random.Generator, rows: int, cols: int, dtype: type, trans: bool,
             strided: bool) -> np.ndarray:
    """A (rows, cols) view: a column slice of a wider matrix and/or a transposed array."""
    shape = (cols, rows) if trans else (rows, cols)
    wide = rng.standard_normal((shape[0], shape[1] + (3 if strided else 0))).astype(dtype)
    x = wide[:, 1:1 + shape[1]] if strided else wide
    return x.T if trans else x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("beta", [0.0, 1.0, -0.5])
@pytest.mark.parametrize("strided", [False, True])
def test_gemm_matches_numpy(dtype: type, trans_a: bool, trans_b: bool, beta: float,
                            strided: bool) -> None:
    rng = np.random.default_rng(7)
    m, k, n = 13, 9, 6
    a = _operand(rng, m, k, dtype, trans_a, strided)
    b = _operand(rng, k, n, dtype, trans_b, strided)
    wide = rng.standard_normal((m, n + 5)).astype(dtype)
    guard = wide.copy()
    c = wide[:, 2:2 + n] if strided else wide[:, :n].copy()
    if beta == 0:
        c[...] = np.nan  # never read when beta is 0
    start = c.astype(np.float64)
    alpha = 1.5
    want = alpha * (a.astype(np.float64) @ b.astype(np.float64))
    if beta != 0:
        want += beta * start
    gemm(alpha, a, b, beta, c)
    np.testing.assert_allclose(c, want, rtol=_tol(dtype), atol=_tol(dtype))
    if strided:  # the columns beside the slice are untouched
        np.testing.assert_array_equal(wide[:, :2], guard[:, :2])
        np.testing.assert_array_equal(wide[:, 2 + n:], guard[:, 2 + n:])


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_accumulates_blocks(dtype: type) -> None:
    """Summing row blocks with beta=1 gives the whole product (the weight-gradient use)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((100, 7)).astype(dtype)
    dz = rng.standard_normal((100, 4)).astype(dtype)
    dw = np.empty((7, 4), dtype)
    for r0 in range(0, 100, 32):
        gemm(1.0, x[r0:r0 + 32].T, dz[r0:r0 + 32], 0.0 if r0 == 0 else 1.0, dw)
    np.testing.assert_allclose(dw, x.astype(np.float64).T @ dz, rtol=_tol(dtype) * 10,
                               atol=_tol(dtype) * 10)


@pytest.mark.parametrize("m,k,n", [(0, 3, 4), (3, 4, 0), (3, 0, 4), (1, 1, 1), (1, 5, 1)])
@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_gemm_edge_shapes(m: int, k: int, n: int, beta: float) -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((m, k))
    b = rng.standard_normal((k, n))
    c = rng.standard_normal((m, n))
    want = 0.5 * (a @ b) + (beta * c if beta else 0)
    gemm(0.5, a, b, beta, c)
    np.testing.assert_allclose(c, want, rtol=1e-12, atol=1e-12)


def test_gemm_single_row_and_column_views() -> None:
    """Length-1 axes with arbitrary strides (row/column picks of wider matrices)."""
    rng = np.random.default_rng(2)
    base = rng.standard_normal((6, 8))
    a = base[2:3, 1:6]          # (1, 5), row stride 8
    b = base[:5, 3:4]           # (5, 1), row stride 8
    c = np.zeros((4, 8))[1:2, 5:6]
    gemm(1.0, a, b, 0.0, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-12)


def test_gemm_rejects_bad_shapes_and_strides() -> None:
    a, b = np.ones((3, 4)), np.ones((4, 5))
    with pytest.raises(ValueError, match="shapes"):
        gemm(1.0, a, np.ones((3, 5)), 0.0, np.empty((3, 5)))
    with pytest.raises(ValueError, match="shapes"):
        gemm(1.0, a, b, 0.0, np.empty((3, 6)))
    with pytest.raises(ValueError, match="stride"):
        gemm(1.0, np.ones((3, 8))[:, ::2], b, 0.0, np.empty((3, 5)))
    with pytest.raises(ValueError, match="stride"):  # c must be row-major
        gemm(1.0, a, b, 0.0, np.empty((5, 3)).T)


def _run(code: str, env: dict) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_cached_kernel_in_fresh_processes(tmp_path: Path) -> None:
    """A cache=True kernel calling gemm, compiled in one process, loaded in another."""
    (tmp_path / "gemm_user.py").write_text(textwrap.dedent("""
        import numpy as np
        from numba import njit
        from nexec.kernels.cpu.blas import gemm

        @njit(cache=True)
        def into_slice(a, b, wide):
            gemm(1.0, a, b, 0.0, wide[:, 1:4])
            gemm(2.0, a, b, 1.0, wide[:, 1:4])
    """))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    code = """
        import numpy as np
        from gemm_user import into_slice
        a = np.arange(10, dtype=np.float32).reshape(5, 2)
        b = np.arange(6, dtype=np.float32).reshape(2, 3)
        wide = np.zeros((5, 6), np.float32)
        into_slice(a, b, wide)
        assert np.array_equal(wide[:, 1:4], 3 * (a @ b)) and not wide[:, [0, 4, 5]].any()
        print(sum(into_slice.stats.cache_hits.values()))
    """
    assert _run(code, env).strip() == "0"
    assert _run(code, env).strip() == "1"  # machine code from the first process, still right


def test_without_jit() -> None:
    """Under NUMBA_DISABLE_JIT the same function runs in Python with NumPy."""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONPATH=str(ROOT))
    code = """
        import numpy as np
        from nexec.kernels.cpu.blas import gemm
        a = np.arange(10.0).reshape(5, 2)
        b = np.arange(6.0).reshape(2, 3)
        wide = np.ones((5, 6))
        gemm(2.0, a, b, 1.0, wide[:, 1:4])
        assert np.array_equal(wide[:, 1:4], 2 * (a @ b) + 1) and (wide[:, [0, 4, 5]] == 1).all()
        try:
            gemm(1.0, a, a, 0.0, wide[:, :2])
        except ValueError:
            print("ok")
    """
    assert _run(code, env).strip() == "ok"


def test_unit_row_and_c_layout_views_write_in_place() -> None:
    """unit_row: a strided matrix's row typed contiguous; as_c_layout: an 'A'-typed
    contiguous matrix typed C. Both are views: writes land in the original, nowhere else."""
    from numba import njit

    from nexec.kernels.cpu.blas import as_c_layout, unit_row

    @njit
    def fill(a: np.ndarray) -> None:
        for i in range(a.shape[0]):
            row = unit_row(a, i)
            for j in range(row.shape[0]):
                row[j] = 10 * i + j

    @njit
    def flat_sum(a: np.ndarray) -> float:
        full = a[:, :a.shape[1]]  # typed 'A' (Numba would not reshape it), contiguous
        return as_c_layout(full).reshape(a.size).sum()

    wide = np.full((4, 9), -1.0)
    fill(wide[:, 2:6])
    assert np.array_equal(wide[:, 2:6], 10 * np.arange(4)[:, None] + np.arange(4))
    assert (wide[:, :2] == -1).all() and (wide[:, 6:] == -1).all()
    a = np.arange(12.0).reshape(3, 4)
    assert flat_sum(a) == a.sum()
