"""Measured float32 GEMM (sgemm) rate of this machine's BLAS, the ceiling of nexec's kernels.

    python benchmarks/blas_peak.py [--threads 2] [--sizes 512 1024 1536 2048] [--workload-shapes]

Two BLAS libraries matter and both are measured: NumPy's (``np.dot`` from Python) and the
one Numba's ``np.dot`` calls from inside a jitted kernel (SciPy's OpenBLAS, through
``scipy.linalg.cython_blas``), which is what nexec's dense and conv kernels use.

For each size: one untimed call, then ``--repeats`` timed samples of enough calls to last
about 0.2 s each; GFLOP/s = 2*M*K*N / seconds per call. ``best`` is the peak, ``median`` what
a shared machine gives typically. ``--workload-shapes`` adds the GEMMs the MLP workloads
run at batch 128 (a skinny GEMM is slower than a square one; that is the fair ceiling for
them).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


# (label, M, K, N, transA, transB): out[M,N] = op(A) @ op(B), as nexec's dense kernels call it.
WORKLOAD_SHAPES = [
    ("wide fwd 128x784 @ 784x512", 128, 784, 512, False, False),
    ("wide fwd 128x512 @ 512x512", 128, 512, 512, False, False),
    ("wide dW 784x128 @ 128x512 (x.T @ dz)", 784, 128, 512, True, False),
    ("wide dW 512x128 @ 128x512 (x.T @ dz)", 512, 128, 512, True, False),
    ("wide dX 128x512 @ 512x512 (dz @ w.T)", 128, 512, 512, False, True),
    ("seed fwd 128x64 @ 64x32", 128, 64, 32, False, False),
]


def _numba_dot():
    """``np.dot(a, b, out)`` compiled by Numba: SciPy's BLAS, as in nexec's kernels."""
    import numpy as np
    from numba import njit

    @njit(nogil=True)
    def dot(a, b, out):
        np.dot(a, b, out)

    return dot


def _time(fn, flops: float, repeats: int, min_time: float = 0.2) -> dict:
    fn()
    t = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t, 1e-6)
    number = max(1, int(min_time / one))
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        per_call = (time.perf_counter() - t) / number
        rates.append(flops / per_call / 1e9)
    return {"best_gflops": max(rates), "median_gflops": statistics.median(rates),
            "calls_per_sample": number}


def measure(sizes: list[int], repeats: int = 5, workload_shapes: bool = False,
            min_time: float = 0.2) -> list[dict]:
    """GFLOP/s rows for square sizes (and optionally the workloads' GEMMs)."""
    import numpy as np

    ndot = _numba_dot()
    rng = np.random.default_rng(0)
    shapes = [(f"square {n}", n, n, n, False, False) for n in sizes]
    if workload_shapes:
        shapes += WORKLOAD_SHAPES
    rows = []
    for label, m, k, n, ta, tb in shapes:
        a = rng.random((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.random((n, k) if tb else (k, n), dtype=np.float32)
        a = a.T if ta else a
        b = b.T if tb else b
        out = np.empty((m, n), np.float32)
        flops = 2.0 * m * k * n
        row = {"shape": label, "m": m, "k": k, "n": n}
        for lib, fn in (("numpy", lambda: np.dot(a, b, out=out)),
                        ("numba", lambda: ndot(a, b, out))):
            r = _time(fn, flops, repeats, min_time)
            row[f"{lib}_best_gflops"] = r["best_gflops"]
            row[f"{lib}_median_gflops"] = r["median_gflops"]
        rows.append(row)
    return rows


def blas_info() -> list[dict]:
    """The BLAS libraries loaded in this process (threadpoolctl), if threadpoolctl exists."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("internal_api", "prefix", "version", "num_threads", "architecture")
    # The library's file name only: a full path would record this machine's folders.
    return [{**{k: d.get(k) for k in keys}, "file": os.path.basename(d.get("filepath") or "")}
            for d in threadpool_info()]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 1536, 2048])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workload-shapes", action="store_true")
    ap.add_argument("--json", help="also write the rows here")
    a = ap.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks import pin_threads

    pin_threads(a.threads)  # before NumPy and SciPy load
    import scipy.linalg  # noqa: F401 - load SciPy's BLAS so threadpoolctl lists it

    rows = measure(a.sizes, a.repeats, a.workload_shapes)
    info = blas_info()
    print(f"sgemm, float32, {a.threads} threads, best / median of {a.repeats} samples (GFLOP/s)")
    print(f"{'shape':<40} {'numpy best':>11} {'median':>8} {'numba best':>11} {'median':>8}")
    for r in rows:
        print(f"{r['shape']:<40} {r['numpy_best_gflops']:>11.1f} {r['numpy_median_gflops']:>8.1f} "
              f"{r['numba_best_gflops']:>11.1f} {r['numba_median_gflops']:>8.1f}")
    for d in info:
        print(f"BLAS: {d['internal_api']} {d['version']} ({d['prefix']}), "
              f"{d['num_threads']} threads, kernel {d['architecture']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"threads": a.threads, "rows": rows, "blas": info,
                       "python": sys.version}, f, indent=2)


if __name__ == "__main__":
    main()
