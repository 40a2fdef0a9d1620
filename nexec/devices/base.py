"""The device seam: what the executor needs from a place where kernels run.

A :class:`Device` owns three things, so that nothing outside ``nexec/devices`` and
``nexec/kernels`` says "cuda":

* **memory**: the arena, typed views of it, transfers of batches in and results out;
* **a kernel namespace** (:attr:`Device.kernels`), every kernel function of its package by
  name, resolved once (on CUDA already bound to the device's stream);
* **capabilities** the planner and op kernels read: whether kernels can write row-strided
  outputs (Concatenate in place), how many intra-op threads an op may use, whether the
  device's arrays are the host's own (no parameter mirror).

It also compiles what plugins give as scalar math (activations, losses, metrics) into its
own elementwise kernels. Devices are contributed through the ``nexec_devices`` hook, nexec's
own CPU and CUDA devices too.
"""
from __future__ import annotations

import contextlib
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

__all__ = ["Device", "KernelNamespace", "ALIGNMENT"]

#: Byte alignment of the arena and of every offset in it.
ALIGNMENT = 64


class KernelNamespace(SimpleNamespace):
    """Kernel functions by name; a missing one is an error naming the device."""

    def __getattr__(self, name: str) -> Any:  # only called when the attribute is missing
        if name.startswith("__"):
            raise AttributeError(name)
        device = self.__dict__.get("_device", "?")
        raise AttributeError(f"device '{device}' has no kernel function {name!r}")


class Device:
    """Base class of devices; subclasses fill in memory and kernels.

    Attributes:
        name: What users pass as ``device=`` (``"cpu"``, ``"cuda"``).
        aliases: Other names accepted for it (``"gpu"``, ``"cuda:0"``).
        strided_output: Kernels can write a row-strided slice of a wider buffer, so
            branches of a Concatenate write straight into it.
        host_memory: Arrays are ordinary host NumPy arrays: parameters need no mirror.
        column_blocks: Convolutions work on cache-sized blocks of the column matrix, one
            per intra-op shard (CPU); otherwise one whole column matrix.
    """

    name = ""
    aliases: tuple[str, ...] = ()
    strided_output = False
    host_memory = False
    column_blocks = False
    #: Modules whose ``__all__`` make up :attr:`kernels` (set by subclasses).
    kernel_modules: tuple[Any, ...] = ()

    def __init__(self) -> None:
        self._kernels: KernelNamespace | None = None
        self._generated: dict[tuple, Any] = {}

    # ----- availability -------------------------------------------------------------------
    def available(self) -> bool:
        return True

    def unavailable_reason(self) -> str:
        """Why the device cannot run here and what to do, as one or two sentences."""
        return "it is not usable here."

    # ----- kernels ------------------------------------------------------------------------
    @property
    def kernels(self) -> KernelNamespace:
        """Every kernel function of this device by name (resolved on first use)."""
        if self._kernels is None:
            table: dict[str, Any] = {"_device": self.name}
            for module in self._modules():
                for fname in module.__all__:
                    fn = getattr(module, fname)
                    if callable(fn):
                        assert fname not in table, f"two kernel functions named {fname!r}"
                        table[fname] = self.bind(fn)
            self._kernels = KernelNamespace(**table)
        return self._kernels

    def _modules(self) -> tuple[Any, ...]:
        return self.kernel_modules

    def bind(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """A kernel function as the executor calls it (CUDA binds its stream)."""
        return fn

    def specialise(self, fn: Callable[..., Any], args: tuple) -> tuple[Callable[..., Any], tuple]:
        """The call a program makes for ``fn(*args)``: the same, or on the CPU a kernel
        compiled for the constants among ``args`` (``nexec.kernels.jit.specialised``)."""
        return fn, args

    def threads(self) -> int:
        """How many shards one op may split its batch into."""
        return 1

    def parallel(self, shards: list[tuple]) -> list[tuple]:
        """Bound calls that run ``shards`` at once (or the one shard itself)."""
        if len(shards) != 1:
            raise ValueError(f"device '{self.name}' runs no intra-op shards")
        return shards

    def threaded(self, calls: list[tuple]) -> bool:
        """Whether bound ``calls`` run intra-op shards (see :meth:`step_guard`)."""
        return False

    def step_guard(self, threaded: bool) -> Any:
        """A context manager around one step of a program (CPU: BLAS held at one thread
        while shards run)."""
        return contextlib.nullcontext()

    def generated(self, kind: str, *functions: Callable[..., Any]) -> Any:
        """Kernels compiled from scalar functions, once per process and functions."""
        key = (kind, *functions)
        if key not in self._generated:
            make = getattr(self._elementwise(), {"activation": "activation_kernels",
                                                 "loss": "loss_kernels",
                                                 "weighted loss": "weighted_loss_kernel",
                                                 "metric": "metric_kernel"}[kind])
            made = make(*functions)
            self._generated[key] = tuple(map(self.bind, made)) if isinstance(made, tuple) \
                else self.bind(made)
        return self._generated[key]

    def _elementwise(self) -> Any:
        raise NotImplementedError

    # ----- memory -------------------------------------------------------------------------
    def arena(self, nbytes: int) -> Any:
        raise NotImplementedError

    def view(self, arena: Any, offset: int, nbytes: int, dtype: str, shape: tuple) -> Any:
        raise NotImplementedError

    def reshape(self, a: Any, shape: tuple) -> Any:
        return a.reshape(shape)

    def owns(self, a: Any) -> bool:
        """Whether ``a`` is an array of this device."""
        return False

    def view_2d(self, a: Any, n_rows: int, n_cols: int) -> Any:
        """``a`` as ``(n_rows, n_cols)``, leading axes collapsed, row stride kept."""
        raise NotImplementedError

    def zeros(self, shape: tuple, dtype: Any) -> Any:
        raise NotImplementedError

    def to_device(self, host: np.ndarray) -> Any:
        raise NotImplementedError

    def copy_to_device(self, dst: Any, host: np.ndarray) -> None:
        """Overwrites device array ``dst`` with ``host`` (same shape)."""
        raise NotImplementedError

    def load(self, dst: Any, src: np.ndarray, lo: int, hi: int, order: Any,
             staging: dict) -> None:
        """Rows ``lo:hi`` of ``src`` (through ``order`` when shuffled) into ``dst``."""
        raise NotImplementedError

    def read(self, dst: np.ndarray, src: Any) -> None:
        """Copies device array ``src`` into host array ``dst`` and waits for it."""
        raise NotImplementedError

    def scalar(self, slot: Any) -> Any:
        """Element 0 of a one-element result slot, as a host scalar."""
        raise NotImplementedError

    def synchronize(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<Device {self.name}>"
