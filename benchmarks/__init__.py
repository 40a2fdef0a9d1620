"""nexec's performance suite (airspeed velocity) and the peer comparison.

Thread counts are part of what is measured, so the suite pins them before NumPy, SciPy's
OpenBLAS (the BLAS Numba's ``np.dot`` calls) or Numba are loaded: ``NEXEC_BENCH_THREADS``
(default 2, at most the CPU count) becomes the default of ``OPENBLAS_NUM_THREADS``,
``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``NUMBA_NUM_THREADS``. A variable already set
wins; a library already imported before this package keeps whatever it started with.

Modules whose names start with ``bench_`` hold the asv benchmarks; ``models`` builds the
workloads; ``compare``, ``nexec_peer`` and ``blas_peak`` are scripts (asv imports them while
discovering benchmarks, so they do nothing at import time).
"""
import os as _os

#: The variables that set the thread counts of OpenBLAS, OpenMP, MKL and Numba.
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")

_cpus = len(_os.sched_getaffinity(0)) if hasattr(_os, "sched_getaffinity") else _os.cpu_count()
_threads = str(max(1, min(int(_os.environ.get("NEXEC_BENCH_THREADS", "2")), _cpus or 1)))
for _var in THREAD_VARS:
    _os.environ.setdefault(_var, _threads)


def pin_threads(n: int) -> None:
    """Sets every library's thread count to ``n`` (a script's ``--threads``); only libraries
    not yet loaded heed it, so scripts call it before importing NumPy."""
    for var in THREAD_VARS:
        _os.environ[var] = str(n)
