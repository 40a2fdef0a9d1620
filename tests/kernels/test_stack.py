"""Stack scratch arrays: the dtype asked for, as many elements, usable as an ordinary array,
and no heap allocation in compiled code."""
import numba
import numpy as np
import pytest

from nexec.kernels.cpu.stack import stack_array
from nexec.testing import count_allocations


@numba.njit
def _prefix_sums(x):
    """Running sums of the first 8 values of ``x`` through a stack array of x's dtype."""
    acc = stack_array(x, 8)
    total = x.dtype.type(0)
    for i in range(8):
        total += x[i]
        acc[i] = total
    out = 0.0
    for i in range(8):
        out += acc[i] * (i + 1)
    return out, acc.size, acc.itemsize


@numba.njit
def _from_scalar(v):
    buf = stack_array(0.0, 4)
    for i in range(4):
        buf[i] = v * i
    return buf.sum(), buf.itemsize


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_stack_array_has_the_dtype_and_size_asked_for(dtype):
    x = np.arange(1, 9, dtype=dtype)
    expected = float(np.sum(np.cumsum(x) * np.arange(1, 9)))
    value, size, itemsize = _prefix_sums(x)
    assert (value, size, itemsize) == (expected, 8, np.dtype(dtype).itemsize)
    assert _prefix_sums.py_func(x)[:2] == (expected, 8)  # the Python fallback agrees
    assert _from_scalar(2.0) == (12.0, 8)
    nrt, blocks = count_allocations(lambda: _prefix_sums(x))
    assert nrt == 1 and not blocks  # the argument's wrapper only: the scratch is on the stack
