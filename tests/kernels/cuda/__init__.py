"""Tests of the CUDA kernels against the CPU kernels, run in Numba's CUDA simulator.

Run them with the simulator enabled in the environment *before Python starts* (Numba reads
the variable when it is first imported, so setting it from a conftest is unreliable once
another test module has imported Numba):

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/kernels/cuda -q

Without the simulator and without a GPU every test here is skipped with that hint; on a
machine with a GPU they run on the GPU. All tests are marked ``cudasim``.

The simulator runs kernels as Python and cannot see what only the CUDA compiler rejects;
``test_ptx.py`` therefore compiles every kernel to PTX (float32 and float64) in a
subprocess without the simulator. It needs libNVVM from a CUDA toolkit, not a GPU, and is
skipped where there is none.
"""
