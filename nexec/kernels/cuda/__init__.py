"""CUDA kernels: the same modules, launcher names and argument order as ``nexec.kernels.cpu``.

Importing this package imports nothing from Numba's CUDA target; the kernel modules import
``numba.cuda`` only through :mod:`nexec.kernels.cuda.backend` (the one place that knows how
to import it). ``backend.is_available()`` says whether kernels can run (a GPU, or Numba's
simulator enabled with ``NUMBA_ENABLE_CUDASIM=1`` before Python starts).

Differences from the CPU signatures (every module docstring repeats its own):

* arguments are device arrays; launches are asynchronous;
* every launcher takes an optional keyword-only ``stream``;
* loss values write the batch mean into a 1-element float device array ``out`` (last
  positional argument) instead of returning it; accuracy counts and ``check_finite`` write
  into a 1-element integer device array ``out``;
* ``tmp`` of ``dense_forward``/``conv2d_forward`` is unused (the GEMM epilogue writes
  ``out``); pass ``out``;
* labels are not validated on the device (NaN loss / zero gradient rows instead of
  ValueError).
"""
