"""The one module that imports ``numba.cuda``; every CUDA kernel module imports from here.

Numba's built-in CUDA target is deprecated in favour of NVIDIA's ``numba-cuda`` package,
which keeps the ``numba.cuda`` namespace (it installs a redirector, so ``from numba import
cuda`` picks it up when installed). A successor may be imported differently; only this
file then changes.

What the kernel modules use from here:

* ``cuda``: the module itself, for the intrinsics inside kernel bodies (``cuda.threadIdx``,
  ``cuda.shared.array``, ``cuda.local.array``, ``cuda.syncthreads``, ``cuda.atomic.add``).
  Kernel modules must bind it as a module global named ``cuda`` (``from ...backend import
  cuda``): the simulator swaps every global that *is* the ``numba.cuda`` module for its
  fake one while a kernel runs.
* ``jit``: ``cuda.jit`` (``@jit`` for kernels, ``@jit(device=True)`` for device functions).
* device-array helpers: :func:`to_device`, :func:`device_array`, :func:`synchronize`,
  :func:`stream`, :func:`pinned_array`, :func:`is_device_array`.
* launch-configuration helpers (pure Python): :func:`cdiv`, :func:`pow2_at_least`,
  :func:`config_1d`, :func:`max_threads`, :func:`max_blocks` (smaller under the simulator,
  see ``_SIM_LIMITS``), :func:`numba_dtype`.

When ``numba.cuda`` cannot be imported at all, the module still imports: ``cuda`` is
``None``, :func:`is_available` is False, ``jit``-decorated functions raise
:class:`CudaUnavailableError` when launched, and the helpers raise it too.

The simulator (``NUMBA_ENABLE_CUDASIM=1``) is chosen when Numba is first imported; setting
the variable later in the same process has no effect.
"""
from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import numpy as np

# numba.cuda, or None when it cannot be imported.
_cuda: ModuleType | None
try:  # the only import of numba.cuda in nexec
    from numba import cuda as _cuda
    _IMPORT_ERROR: BaseException | None = None
except Exception as exc:  # noqa: BLE001  # pragma: no cover - any import failure
    _cuda = None
    _IMPORT_ERROR = exc

cuda = _cuda

__all__ = [
    "view_2d",
    "typed_view",
    "MAX_THREADS",
    "CudaUnavailableError",
    "cdiv",
    "config_1d",
    "cuda",
    "device_array",
    "device_array_like",
    "is_available",
    "is_device_array",
    "is_simulator",
    "jit",
    "max_blocks",
    "max_threads",
    "numba_dtype",
    "pinned_array",
    "pow2_at_least",
    "stream",
    "synchronize",
    "to_device",
    "unavailable_reason",
]

MAX_THREADS = 256
"""Threads per block of the 1-D (elementwise and per-row) kernels on a GPU; also the size
of the shared-memory reduction buffers, so no block may be larger."""

_GPU_LIMITS = (MAX_THREADS, 4096, 65535)
# The simulator runs every CUDA thread as a Python thread, and starting one costs about a
# millisecond, far more than the work of a tiny test. Under the simulator, launches are
# therefore capped at 32 threads per 1-D block and 2 blocks per grid dimension. Every
# kernel is a grid-stride loop (or loops over tiles), so results do not depend on the
# launch shape, and the caps make the tests run those loops for several iterations.
_SIM_LIMITS = (32, 2, 2)


class CudaUnavailableError(RuntimeError):
    """numba.cuda cannot be imported, or no GPU (and no simulator) is there."""


def _simulator_enabled() -> bool:
    # numba.cuda picks the simulator or the driver when it is first imported (just above),
    # from numba.core.config; read the flag once, as that choice cannot change afterwards.
    if _cuda is None:
        return False
    try:
        from numba.core import config
        return bool(getattr(config, "ENABLE_CUDASIM", 0))
    except Exception:  # noqa: BLE001  # pragma: no cover
        return False


_SIMULATOR = _simulator_enabled()


def is_simulator() -> bool:
    """True when Numba runs CUDA kernels in its Python simulator (``NUMBA_ENABLE_CUDASIM``)."""
    return cuda is not None and _SIMULATOR


def is_available() -> bool:
    """True when CUDA kernels can run here: a usable GPU, or the simulator. Never raises."""
    if cuda is None:
        return False
    try:
        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken driver must read as "not available"
        return False


def unavailable_reason() -> str:
    """Why :func:`is_available` is False (an empty string when it is True)."""
    if cuda is None:
        return f"numba.cuda cannot be imported: {_IMPORT_ERROR!r}"
    if is_available():
        return ""
    return ("no CUDA GPU is usable here; run the CUDA kernels in Numba's simulator by "
            "setting NUMBA_ENABLE_CUDASIM=1 in the environment before Python starts")


def _require() -> Any:
    if cuda is None:
        raise CudaUnavailableError(unavailable_reason())
    return cuda


def _unavailable_jit(*args: Any, **kwargs: Any) -> Any:
    """Stands in for ``cuda.jit`` when numba.cuda is missing: decorates, never launches."""

    def wrap(fn: Any) -> Any:
        @functools.wraps(fn)
        def stub(*a: Any, **k: Any) -> Any:
            raise CudaUnavailableError(unavailable_reason())

        class _Launch:
            def __getitem__(self, config: Any) -> Any:
                return stub

            def __call__(self, *a: Any, **k: Any) -> Any:
                return stub(*a, **k)

        return _Launch()

    if len(args) == 1 and callable(args[0]) and not kwargs:
        return wrap(args[0])
    return wrap


jit = cuda.jit if cuda is not None else _unavailable_jit


# --------------------------------------------------------------------------- device arrays


def to_device(array: np.ndarray, stream: Any = 0) -> Any:
    """Copies a host array to a new device array (asynchronous on a non-default stream)."""
    return _require().to_device(array, stream=stream)


def device_array(shape: Any, dtype: Any = np.float64, stream: Any = 0) -> Any:
    """An uninitialised C-contiguous device array."""
    return _require().device_array(shape, dtype=dtype, stream=stream)


def device_array_like(array: Any, stream: Any = 0) -> Any:
    """An uninitialised device array with the shape and dtype of ``array``."""
    return _require().device_array_like(array, stream=stream)


def pinned_array(shape: Any, dtype: Any = np.float64) -> np.ndarray:
    """A page-locked host array (fast, asynchronous host<->device copies)."""
    return _require().pinned_array(shape, dtype=dtype)


def stream() -> Any:
    """A new CUDA stream."""
    return _require().stream()


def synchronize() -> None:
    """Waits until every kernel and copy issued on the device has finished."""
    _require().synchronize()


def is_device_array(obj: Any) -> bool:
    """True for a Numba device array (or the simulator's stand-in for one)."""
    if cuda is None:
        return False
    check = getattr(cuda, "is_cuda_array", None)
    if check is not None:
        return bool(check(obj))
    return hasattr(obj, "copy_to_host")  # the simulator has no is_cuda_array


def view_2d(a: Any, rows: int, cols: int) -> Any:
    """A 2-D ``(rows, cols)`` view of a device array whose leading axes collapse.

    The trailing axes whose sizes multiply to ``cols`` make the columns; the row stride is
    that of the innermost remaining axis longer than 1 (an axis of length 1 never steps), so
    a slice on one axis of a C-contiguous array (a concatenated buffer's channel slice, even
    one channel wide) works too. Device arrays have no settable ``shape``, so the view is
    built from the same memory.
    """
    itemsize = np.dtype(a.dtype).itemsize
    row_stride = cols * itemsize
    shape, all_strides = tuple(a.shape), tuple(a.strides)
    size, k = 1, len(shape)
    while k > 0 and size < cols:  # shape[k:] are the column axes
        k -= 1
        size *= shape[k]
    stepping = [j for j in range(k) if shape[j] > 1]
    if stepping:
        row_stride = all_strides[stepping[-1]]
    strides = (row_stride, itemsize)
    if is_simulator():
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        host = np.lib.stride_tricks.as_strided(a._ary, (rows, cols), strides)
        return FakeCUDAArray(host)
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    return DeviceNDArray((rows, cols), strides, a.dtype, gpu_data=a.gpu_data)


def typed_view(arena: Any, offset: int, nbytes: int, dtype: Any, shape: tuple) -> Any:
    """``arena[offset:offset+nbytes]`` (a uint8 device array) as ``dtype`` of ``shape``."""
    part = arena[offset:offset + nbytes]
    return part.view(np.dtype(dtype)).reshape(shape) if nbytes else \
        device_array(shape, dtype)


# --------------------------------------------------------------------------- launch configs


def cdiv(a: int, b: int) -> int:
    """Ceiling of ``a / b`` for non-negative ``a`` and positive ``b``."""
    return -(-a // b)


def pow2_at_least(n: int, cap: int) -> int:
    """Smallest power of two ``>= n`` (at least 1), capped at ``cap`` (a power of two).

    Blocks are sized to the problem so a tiny launch does not start hundreds of idle
    threads (which also keeps the simulator fast); reductions need power-of-two blocks.
    """
    p = 1
    while p < n and p < cap:
        p *= 2
    return p


def _limits() -> tuple[int, int, int]:
    return _SIM_LIMITS if is_simulator() else _GPU_LIMITS


def max_threads() -> int:
    """Most threads per block of a 1-D launch (256 on a GPU, 32 in the simulator)."""
    return _limits()[0]


def max_blocks(two_d: bool = False) -> int:
    """Most blocks along one grid dimension: 4096 for 1-D grid-stride launches and 65535
    per dimension of 2-D ones on a GPU; 2 in the simulator."""
    return _limits()[2 if two_d else 1]


def config_1d(n: int) -> tuple[int, int]:
    """``(blocks, threads)`` for a grid-stride loop over ``n >= 1`` items; threads are a
    power of two (reductions rely on it) no larger than needed."""
    t = pow2_at_least(n, max_threads())
    return min(cdiv(n, t), max_blocks()), t


@functools.cache
def numba_dtype(dtype: Any) -> Any:
    """The Numba scalar type of a NumPy dtype (for ``cuda.shared.array``/``local.array``)."""
    from numba import from_dtype
    return from_dtype(np.dtype(dtype))
