"""NVIDIA GPUs through Numba's CUDA target (``pip install 'nexec[cuda]'``).

Every launch goes to one stream; batches go in through page-locked (pinned) staging
buffers on it, and only the batch goes in and the losses and outputs come back. Kernels
write no row-strided outputs, so Concatenate copies here. The CUDA imports themselves live
in ``nexec.kernels.cuda.backend`` only; nothing is imported until the device is used.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

import numpy as np

from nexec.devices.base import ALIGNMENT, Device

__all__ = ["CudaDevice"]


class CudaDevice(Device):
    """Numba device arrays on the current GPU (or the simulator)."""

    name = "cuda"
    aliases = ("cuda:0", "gpu")

    def __init__(self) -> None:
        super().__init__()
        self._stream: Any = None

    @property
    def backend(self) -> Any:
        from nexec.kernels.cuda import backend

        return backend

    @property
    def stream(self) -> Any:
        if self._stream is None:
            self._stream = self.backend.stream()
        return self._stream

    def available(self) -> bool:
        return bool(self.backend.is_available())

    def unavailable_reason(self) -> str:
        return (f"no CUDA GPU is usable here ({self.backend.unavailable_reason()}). nexec "
                "runs on NVIDIA GPUs through Numba: install the driver and `pip install "
                "'nexec[cuda]'`; to try the CUDA path without a GPU, set "
                "NUMBA_ENABLE_CUDASIM=1 before starting Python (slow).")

    def _modules(self) -> tuple[Any, ...]:
        from nexec.kernels.cuda import (
            activation,
            conv,
            dense,
            embedding,
            loss,
            masking,
            merge,
            metric,
            normalization,
            optimizer,
            pooling,
            regularization,
            reshaping,
        )

        return (activation, conv, dense, embedding, loss, merge, metric, normalization, optimizer,
                pooling, regularization, reshaping, masking)

    def _elementwise(self) -> Any:
        from nexec.kernels.cuda import elementwise

        return elementwise

    def bind(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        import inspect

        try:
            takes_stream = "stream" in inspect.signature(fn).parameters
        except (TypeError, ValueError):  # a compiled kernel object: no stream argument
            takes_stream = False
        return partial(fn, stream=self.stream) if takes_stream else fn

    def arena(self, nbytes: int) -> Any:
        return self.backend.device_array(max(nbytes, ALIGNMENT), np.uint8)

    def view(self, arena: Any, offset: int, nbytes: int, dtype: str, shape: tuple) -> Any:
        return self.backend.typed_view(arena, offset, nbytes, dtype, shape)

    def owns(self, a: Any) -> bool:
        return bool(self.backend.is_device_array(a))

    def view_2d(self, a: Any, n_rows: int, n_cols: int) -> Any:
        return self.backend.view_2d(a, n_rows, n_cols)

    def reshape(self, a: Any, shape: tuple) -> Any:
        return a.reshape(shape)

    def zeros(self, shape: tuple, dtype: Any) -> Any:
        return self.backend.to_device(np.zeros(shape, dtype))

    def to_device(self, host: np.ndarray) -> Any:
        return self.backend.to_device(host)

    def copy_to_device(self, dst: Any, host: np.ndarray) -> None:
        dst.copy_to_device(host, stream=self.stream)
        self.stream.synchronize()

    def load(self, dst: Any, src: np.ndarray, lo: int, hi: int, order: Any,
             staging: dict) -> None:
        key = (id(dst), src.dtype.str)
        pinned = staging.get(key)
        if pinned is None:
            pinned = staging[key] = self.backend.pinned_array(dst.shape, src.dtype)
        if order is None:
            np.copyto(pinned, src[lo:hi])
        else:
            np.take(src, order[lo:hi], axis=0, out=pinned, mode="clip")
        dst.copy_to_device(pinned, stream=self.stream)

    def read(self, dst: np.ndarray, src: Any) -> None:
        src.copy_to_host(dst, stream=self.stream)
        self.stream.synchronize()

    def scalar(self, slot: Any) -> Any:
        host = np.empty(1, slot.dtype)
        self.read(host, slot)
        return host[0]

    def synchronize(self) -> None:
        self.stream.synchronize()
