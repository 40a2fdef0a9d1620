"""The one place that decides how CPU kernels are compiled.

``cache=True`` keeps compiled machine code on disk, so a fresh process pays only for
loading it; ``nogil`` lets kernels overlap with Python work of another thread.
"""
from __future__ import annotations

from numba import njit

__all__ = ["kernel", "parallel_kernel"]

kernel = njit(cache=True, nogil=True)
parallel_kernel = njit(cache=True, nogil=True, parallel=True)
