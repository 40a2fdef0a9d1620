"""Shared helpers of the CUDA kernel tests: device copies, sentinels, tolerances, marks."""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels.cuda import backend
from nexec.testing import assert_close

# Every test module: ``pytestmark = CUDA_MARKS``.
CUDA_MARKS = [
    pytest.mark.cudasim,
    pytest.mark.skipif(not backend.is_available(),
                       reason="CUDA kernels not runnable: " + backend.unavailable_reason()),
]

DTYPES = [np.float32, np.float64]


def rtol(dtype) -> float:
    """1e-5 relative for float32 (the brief's bound); float64 is held to 1e-10."""
    return 1e-5 if np.dtype(dtype) == np.float32 else 1e-10


def dev(a: np.ndarray):
    """A device copy of a host array."""
    return backend.to_device(np.ascontiguousarray(a))


def sentinel(shape, dtype):
    """A device array pre-filled with NaN (float) or -7 (int), so unwritten entries show."""
    dtype = np.dtype(dtype)
    fill = np.nan if dtype.kind == "f" else -7
    return backend.to_device(np.full(shape, fill, dtype=dtype))


def host(d) -> np.ndarray:
    """The device array's contents on the host (waits for pending launches)."""
    return d.copy_to_host()


def check(actual_dev, expected: np.ndarray, dtype, what: str) -> None:
    """CUDA result (device array or host array) against the CPU result, norm-wise."""
    actual = actual_dev if isinstance(actual_dev, np.ndarray) else host(actual_dev)
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert_close(actual, expected, rtol=rtol(dtype), atol=1e-30, what=what)
