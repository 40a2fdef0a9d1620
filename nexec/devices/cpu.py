"""The CPU: NumPy arrays, Numba-compiled kernels, BLAS, and intra-op shards."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np

from nexec.devices.base import ALIGNMENT, Device
from nexec.devices.threads import (
    adapt_blas_to_load,
    fork_safe_step,
    get_num_threads,
    interrupts_held,
    run_shards,
    single_threaded_blas,
)

__all__ = ["CpuDevice"]


@contextlib.contextmanager
def _sharded_step() -> Iterator[None]:
    with interrupts_held(), fork_safe_step(), single_threaded_blas():
        yield


def _plain_step() -> Any:
    adapt_blas_to_load()
    return fork_safe_step()


class CpuDevice(Device):
    """Arrays in the process's memory; every transfer is a NumPy copy."""

    name = "cpu"
    strided_output = True
    host_memory = True
    column_blocks = True

    def _modules(self) -> tuple[Any, ...]:
        from nexec.kernels.cpu import (
            activation,
            conv,
            conv_direct,
            conv_more,
            conv_toeplitz,
            dense,
            embedding,
            loss,
            masking,
            merge,
            metric,
            normalization,
            optimizer,
            pooling,
            recurrent,
            regularization,
            reshaping,
            winograd,
        )

        return (activation, conv, conv_toeplitz, conv_direct, conv_more, dense, embedding, loss,
                merge, metric, normalization, optimizer, pooling, recurrent, regularization,
                reshaping, winograd, masking)

    def _elementwise(self) -> Any:
        from nexec.kernels.cpu import elementwise

        return elementwise

    def specialise(self, fn: Any, args: tuple) -> tuple[Any, tuple]:
        from nexec.kernels.jit import specialised

        if fn is run_shards:  # each shard's kernel
            return fn, (tuple((specialised(f, a), a) for f, a in args[0]),)
        return specialised(fn, args), args

    def threads(self) -> int:
        return get_num_threads()

    def parallel(self, shards: list[tuple]) -> list[tuple]:
        return shards if len(shards) == 1 else [(run_shards, (tuple(shards),))]

    def threaded(self, calls: list[tuple]) -> bool:
        return any(fn is run_shards for fn, _ in calls)

    def step_guard(self, threaded: bool) -> Any:
        # A fork waits for the step; one BLAS thread while shards run: see devices/threads.py
        # for why a whole step; under load, fewer BLAS threads (devices/load.py).
        return _sharded_step() if threaded else _plain_step()

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

    def owns(self, a: Any) -> bool:
        return isinstance(a, np.ndarray)

    def view_2d(self, a: Any, n_rows: int, n_cols: int) -> Any:
        return self.reshape(a, (n_rows, n_cols))

    def zeros(self, shape: tuple, dtype: Any) -> np.ndarray:
        return np.zeros(shape, dtype)

    def to_device(self, host: np.ndarray) -> np.ndarray:
        return host

    def copy_to_device(self, dst: Any, host: np.ndarray) -> None:
        if dst is not host:
            np.copyto(dst, host)

    def load(self, dst: Any, src: np.ndarray, lo: int, hi: int, order: Any,
             staging: dict) -> None:
        if order is None:
            np.copyto(dst, src[lo:hi])
        else:
            np.take(src, order[lo:hi], axis=0, out=dst, mode="clip")

    def read(self, dst: np.ndarray, src: Any) -> None:
        np.copyto(dst, src)

    def scalar(self, slot: Any) -> Any:
        return slot[0]
