"""Where a device's arrays live and how data crosses to it: one class per device.

The executor is written once against this interface: it allocates one arena, takes typed
views of it, finds kernel functions by family, and moves batches in and results out. On the
CPU every transfer is a NumPy copy; on CUDA batches go through page-locked (pinned) staging
buffers on one stream, and only the batch goes in and the losses and outputs come back.
"""
from __future__ import annotations

import importlib
from functools import partial
from typing import Any, Callable

import numpy as np

__all__ = ["HostMemory", "CudaMemory", "memory_for", "kernel_fn"]

ALIGNMENT = 64


class HostMemory:
    """NumPy arrays in the process's memory."""

    device = "cpu"
    stream = None

    def arena(self, nbytes: int) -> np.ndarray:
        raw = np.empty(nbytes + ALIGNMENT, np.uint8)
        start = (-raw.ctypes.data) % ALIGNMENT
        return raw[start:start + nbytes]

    def view(self, arena: Any, offset: int, nbytes: int, dtype: str, shape: tuple) -> Any:
        return arena[offset:offset + nbytes].view(dtype).reshape(shape)

    def reshape(self, a: Any, shape: tuple) -> Any:
        v = a.view()
        v.shape = shape  # raises instead of silently copying
        return v

    def zeros(self, shape: tuple, dtype: Any) -> Any:
        return np.zeros(shape, dtype)

    def to_device(self, host: np.ndarray) -> Any:
        return host

    def load(self, dst: Any, src: np.ndarray, lo: int, hi: int, order: Any,
             staging: dict) -> None:
        """Rows ``lo:hi`` of ``src`` (through ``order`` when shuffled) into ``dst``."""
        if order is None:
            np.copyto(dst, src[lo:hi])
        else:
            np.take(src, order[lo:hi], axis=0, out=dst, mode="clip")

    def read(self, dst: np.ndarray, src: Any) -> None:
        np.copyto(dst, src)

    def to_host(self, src: Any, dst: np.ndarray) -> None:
        np.copyto(dst, src)

    def synchronize(self) -> None:
        pass


class CudaMemory(HostMemory):
    """Numba device arrays; transfers through pinned buffers on one stream."""

    device = "cuda"

    def __init__(self) -> None:
        from nexec.kernels.cuda import backend

        self.backend = backend
        self.stream = backend.stream()

    def arena(self, nbytes: int) -> Any:
        return self.backend.device_array(max(nbytes, ALIGNMENT), np.uint8)

    def view(self, arena: Any, offset: int, nbytes: int, dtype: str, shape: tuple) -> Any:
        return self.backend.typed_view(arena, offset, nbytes, dtype, shape)

    def reshape(self, a: Any, shape: tuple) -> Any:
        return a.reshape(shape)

    def zeros(self, shape: tuple, dtype: Any) -> Any:
        return self.backend.to_device(np.zeros(shape, dtype))

    def to_device(self, host: np.ndarray) -> Any:
        return self.backend.to_device(host)

    def load(self, dst: Any, src: np.ndarray, lo: int, hi: int, order: Any,
             staging: dict) -> None:
        key = (id(dst), src.dtype.str)
        pinned = staging.get(key)
        if pinned is None:
            pinned = staging[key] = self.backend.pinned_array(dst.shape, src.dtype)
        super().load(pinned, src, lo, hi, order, staging)
        dst.copy_to_device(pinned, stream=self.stream)

    def read(self, dst: np.ndarray, src: Any) -> None:
        src.copy_to_host(dst, stream=self.stream)
        self.stream.synchronize()

    def to_host(self, src: Any, dst: np.ndarray) -> None:
        self.read(dst, src)

    def synchronize(self) -> None:
        self.stream.synchronize()


_memories: dict[str, HostMemory] = {}


def memory_for(device: str) -> HostMemory:
    """The (process-wide) memory of ``"cpu"`` or ``"cuda"``."""
    if device not in _memories:
        _memories[device] = HostMemory() if device == "cpu" else CudaMemory()
    return _memories[device]


def kernel_fn(device: str, family: str, name: str) -> Callable[..., Any]:
    """Kernel function ``name`` of ``nexec.kernels.<device>.<family>``; on CUDA bound to the
    device's stream. Both packages have the same file and function names."""
    f = getattr(importlib.import_module(f"nexec.kernels.{device}.{family}"), name)
    if device != "cpu":
        return partial(f, stream=memory_for(device).stream)
    return f
