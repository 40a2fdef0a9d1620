"""Test-session settings that must precede the first ``import numba``.

The CUDA kernels are tested in Numba's CUDA simulator (``tests/kernels/cuda``, marker
``cudasim``), so the plain test command covers them on machines without a GPU. On a GPU
machine run ``NUMBA_ENABLE_CUDASIM=0 python -m pytest tests/kernels/cuda`` (or
``benchmarks/gpu_check.py``) to exercise the real device.
"""
import os

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
