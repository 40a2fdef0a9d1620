"""In-place relu and its gradient store every element (no masked stores, which AMD Zen 3
microcodes), with the bits of the plain formulas; the strided and in-place epilogues and the
in-place gradients that were rewritten with them. See ``nexec/kernels/cpu/opaque.py``."""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels import jit
from nexec.kernels.activations import LINEAR, RELU, SIGMOID, TANH
from nexec.kernels.cpu import activation as A
from nexec.kernels.cpu import dense as D
from nexec.kernels.cpu.opaque import one_like, opaque

DTYPES = [np.float32, np.float64]


def _values(dtype: type, rows: int = 37, cols: int = 13, seed: int = 0) -> np.ndarray:
    """Signed values with the edge cases of relu: NaN, +-0, +-inf."""
    v = (np.random.default_rng(seed).standard_normal((rows, cols))).astype(dtype)
    v[0, :6] = [np.nan, -0.0, 0.0, np.inf, -np.inf, -1e-30]
    return v


def _relu_ref(v: np.ndarray) -> np.ndarray:
    return np.where(v > 0, v, np.zeros_like(v))


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint32 if a.itemsize == 4 else np.uint64)


def test_opaque_returns_its_argument_compiled_and_in_python():
    f = jit.uncached_kernel(lambda x: opaque(x) + 1)
    assert f(41) == 42
    assert opaque(7) == 7


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_like_is_one_in_the_array_dtype_compiled_and_in_python(dtype):
    f = jit.uncached_kernel(lambda a: one_like(a))
    a = np.zeros(3, dtype)
    assert f(a) == 1 and str(f.nopython_signatures[0].return_type) == np.dtype(dtype).name
    assert one_like(a) == 1 and type(one_like(a)) is dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_in_place_keeps_the_bits(dtype):
    v = _values(dtype)
    want = _relu_ref(v)
    a = v.copy()
    A._relu_rows(a, 0, a.shape[0])
    np.testing.assert_array_equal(_bits(a), _bits(want))
    for i in range(v.shape[0]):
        row = v[i].copy()
        A.activate_row_inplace(row, RELU)
        np.testing.assert_array_equal(_bits(row), _bits(want[i]))
    big = np.full((v.shape[0], v.shape[1] + 5), 7, dtype)
    big[:, :v.shape[1]] = v
    D._relu_unit_rows(big[:, :v.shape[1]], 0, v.shape[0])
    np.testing.assert_array_equal(_bits(big[:, :v.shape[1]]), _bits(want))
    assert (big[:, v.shape[1]:] == 7).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_gradient_in_place_equals_the_separate_one(dtype):
    y = _relu_ref(_values(dtype, seed=1))
    y[1, :3] = [np.nan, 0.0, 1.0]
    dy = _values(dtype, seed=2)
    apart = np.full_like(dy, np.nan)
    A._relu_grad_rows(y, dy, apart, 0, y.shape[0])
    np.testing.assert_array_equal(_bits(apart), _bits(np.where(y > 0, dy, 0).astype(dtype)))
    inplace = dy.copy()
    A._relu_grad_rows(y, inplace, inplace, 0, y.shape[0])
    np.testing.assert_array_equal(_bits(inplace), _bits(apart))
    row = dy[3].copy()
    A.activate_row_grad(y[3], dy[3], RELU, row)
    np.testing.assert_array_equal(_bits(row), _bits(apart[3]))
    row = dy[3].copy()
    A.activate_row_grad(y[3], row, RELU, row)
    np.testing.assert_array_equal(_bits(row), _bits(apart[3]))


@pytest.mark.parametrize("act", [RELU, SIGMOID, TANH, LINEAR])
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_gradient_epilogue_in_place_equals_the_separate_one(act, dtype):
    """``dz`` is ``dy`` (the in-place loops) or another array: the same bits, and ``db``."""
    rng = np.random.default_rng(6)
    y = rng.random((300, 19)).astype(dtype)  # an activation's output: in (0, 1)
    y[0, :2] = [0.0, np.nan]
    dy = rng.standard_normal((300, 19)).astype(dtype)
    apart, db_apart = np.full_like(dy, np.nan), np.full(19, np.nan, dtype)
    A.epilogue_grad_rows(y, dy, act, apart, db_apart)
    inplace, db_inplace = dy.copy(), np.full(19, np.nan, dtype)
    A.epilogue_grad_rows(y, inplace, act, inplace, db_inplace)
    np.testing.assert_array_equal(_bits(inplace), _bits(apart))
    np.testing.assert_array_equal(_bits(db_inplace), _bits(db_apart))
    if act == SIGMOID:
        want = dy.astype(np.float64) * (y * (1.0 - y.astype(np.float64)))
        np.testing.assert_allclose(apart[1:], want[1:], rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_bias_relu_epilogue_is_the_two_pass_result(dtype):
    v = _values(dtype, seed=3)
    b = np.random.default_rng(4).standard_normal(v.shape[1]).astype(dtype)
    big = np.full((v.shape[0], v.shape[1] + 4), 5, dtype)
    out = big[:, 2:2 + v.shape[1]]
    out[...] = v
    D.epilogue_in_place(out, b, RELU)
    np.testing.assert_array_equal(_bits(out), _bits(_relu_ref((v + b).astype(dtype))))
    assert (big[:, :2] == 5).all() and (big[:, 2 + v.shape[1]:] == 5).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_in_place_epilogue_without_bias(dtype):
    v = _values(dtype, seed=5)
    no_bias = np.zeros(0, dtype)
    a = v.copy()
    A.epilogue_rows(a, no_bias, LINEAR, a)
    np.testing.assert_array_equal(_bits(a), _bits(v))
    A.epilogue_rows(a, no_bias, RELU, a)
    np.testing.assert_array_equal(_bits(a), _bits(_relu_ref(v)))
    out = np.full_like(v, np.nan)
    A.epilogue_rows(v, no_bias, LINEAR, out)  # not in place: still copied
    np.testing.assert_array_equal(_bits(out), _bits(v))


def _fresh_asm(fn, *args) -> str:
    made = jit.uncached_kernel(fn.py_func)
    made(*args)
    return made.inspect_asm(made.signatures[0])


def test_relu_in_place_compiles_to_ordinary_stores():
    """With AVX (x86) LLVM's masked stores are ``vmaskmov`` (AVX2) or ``{%k}``-masked
    moves (AVX-512); neither may appear. Elsewhere the check holds trivially."""
    a = _values(np.float32)
    y = _relu_ref(_values(np.float32, seed=1))
    for fn, args in ((A._relu_rows, (a, 0, a.shape[0])),
                     (D._relu_unit_rows, (a, 0, a.shape[0])),
                     (A._relu_grad_rows, (y, a, a, 0, a.shape[0]))):
        stores = [line for line in _fresh_asm(fn, *args).splitlines() if _masked_store(line)]
        assert not stores, (fn.py_func.__name__, stores[:3])


def _masked_store(line: str) -> bool:
    """An AT&T-syntax masked move whose destination (the last operand, before an AVX-512
    ``{%kN}`` mask) is memory; masked loads (``vmaskmovps (mem), %mask, %reg``) are cheap
    and allowed."""
    parts = line.split()
    if not parts or "mov" not in parts[0]:
        return False
    masked = "maskmov" in parts[0] or "{%k" in line
    operands = line.split("{%k")[0].rstrip()
    return masked and operands.endswith(")")


def test_the_masked_store_check_recognises_them():
    assert _masked_store("\tvmaskmovps\t%ymm2, %ymm3, -96(%r15,%r12,4)")
    assert _masked_store("\tvmovups\t%zmm1, 64(%rax,%rcx,4) {%k1}")
    assert not _masked_store("\tvmaskmovps\t-96(%rbx,%rdx,4), %ymm3, %ymm7")
    assert not _masked_store("\tvmovups\t(%rax), %zmm1 {%k1} {z}")
    assert not _masked_store("\tvmovups\t%ymm0, (%rax)")
