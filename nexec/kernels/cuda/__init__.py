"""CUDA kernels: the same modules, launcher names and argument order as ``nexec.kernels.cpu``.

Importing this package imports nothing from Numba's CUDA target; the kernel modules import
``numba.cuda`` only through :mod:`nexec.kernels.cuda.backend` (the one place that knows how
to import it). ``backend.is_available()`` says whether kernels can run (a GPU, or Numba's
simulator enabled with ``NUMBA_ENABLE_CUDASIM=1`` before Python starts).

The positional signatures are the CPU ones, so one instruction list can run on either
device: reductions (loss values, accuracy counts, ``check_finite``, the generated loss and
metric kernels of ``elementwise``) write into ``out[0]`` of a 1-element float64 / int64
array on both, and the optimizer updates read their hyperparameters (and advance the step
count) in a float64 array ``hyper`` on both. Differences (every module docstring repeats
its own):

* arguments are device arrays; launches are asynchronous;
* every launcher takes an optional keyword-only ``stream``;
* ``tmp`` of ``dense_forward``/``conv2d_forward`` is unused (the GEMM epilogue writes
  ``out``); pass ``out``;
* labels and hyperparameter values are not validated on the device (NaN loss / zero
  gradient rows instead of ValueError);
* ``elementwise``'s factories return Python launchers (the CPU ones return Numba
  dispatchers, callable from other njit code).
"""
