"""The one place that decides how CPU kernels are compiled.

``cache=True`` keeps compiled machine code on disk, so a fresh process pays only for
loading it; ``nogil`` lets kernels overlap with Python work of another thread;
``no_cfunc_wrapper``: no kernel is ever called through a C function pointer (a first-class
function), so the wrapper Numba would otherwise compile for every kernel and helper is
skipped (~5% of a cold first fit).

Use ``parallel_kernel`` sparingly: with Numba's default OpenMP layer, workers keep spinning
after a ``prange`` region on the cores OpenBLAS needs for the next GEMM, which made a
wide-MLP training step ~2.5x slower (docs/performance.md). No built-in kernel uses it.

Numba's cache checks only each kernel's own source file: after editing a helper that other
kernel modules inline, clear ``__pycache__/*.nbi``/``*.nbc`` (or set ``NUMBA_CACHE_DIR``).
"""
from __future__ import annotations

from typing import Any

from numba import njit

__all__ = ["kernel", "parallel_kernel"]

# Numba's own annotations of ``njit`` omit ``no_cfunc_wrapper`` (a documented option).
_KERNEL_OPTIONS: dict[str, Any] = {"cache": True, "nogil": True, "no_cfunc_wrapper": True}
kernel = njit(**_KERNEL_OPTIONS)
parallel_kernel = njit(cache=True, nogil=True, parallel=True)
