"""ONNX Runtime on nexec's own exported models, beside nexec's predict on the same model.

    python benchmarks/ort_nexec.py [seed_mlp|wide_mlp|cnn|residual ...] [--threads 2] [--small]

``shared/peers/ort_peer.py`` runs ORT on the PyTorch peer's models exported by PyTorch; this
script instead exports the nexec workload models themselves (``model.export(...,
format="onnx")``) and times ORT on exactly the graph and weights nexec runs, with the same
protocol (ORT's full graph optimisation, ``--threads`` intra-op threads, one warm-up pass,
median of 5 passes over the workload's data in its batch size). It prints one JSON line per
workload: the ORT record (``framework="onnxruntime-nexec-export"``) with ``nexec_predict_s``
(median of 5 ``predict`` passes, after one warm-up) and ``max_abs_diff`` between the two
runtimes' outputs. Needs ``onnx`` and ``onnxruntime`` (``pip install 'nexec[test]'``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Callable

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS")


def _median_time(run: Callable[[], object], passes: int = 5) -> float:
    times = []
    for _ in range(passes):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(name: str, threads: int) -> dict:
    """Exports workload ``name``'s nexec model and times ORT and nexec predicting with it."""
    import numpy as np
    import onnxruntime as ort

    from benchmarks import models

    s = models.spec(name)
    x, _ = models.data(name)
    model = models.build(name)
    b = s["batch"]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, f"{name}.onnx")
        t = time.perf_counter()
        model.export(path, format="onnx")
        export_s = time.perf_counter() - t
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feed = sess.get_inputs()[0].name

    def ort_pass() -> np.ndarray:
        return np.concatenate([sess.run(None, {feed: x[i:i + b]})[0]
                               for i in range(0, len(x), b)])

    got = ort_pass()  # warm-up
    want = model.predict(x, batch_size=b)  # warm-up (compiles or loads the kernels)
    ort_s = _median_time(ort_pass)
    nexec_s = _median_time(lambda: model.predict(x, batch_size=b))
    n = len(x)
    return dict(framework="onnxruntime-nexec-export", version=ort.__version__, workload=name,
                threads=threads, n=n, batch=b, export_s=export_s, predict_s=ort_s,
                predict_samples_per_s=n / ort_s, nexec_predict_s=nexec_s,
                nexec_predict_samples_per_s=n / nexec_s,
                max_abs_diff=float(np.max(np.abs(got - want))))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workloads", nargs="*", default=["seed_mlp", "wide_mlp", "cnn"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--small", action="store_true", help="tiny sizes (numbers mean nothing)")
    a = ap.parse_args(argv)
    for var in THREAD_VARS:  # before NumPy/Numba load; a variable already set wins
        os.environ.setdefault(var, str(a.threads))
    if a.small:
        os.environ["NEXEC_BENCH_SMALL"] = "1"
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for w in a.workloads:
        print(json.dumps(measure(w, a.threads)), flush=True)


if __name__ == "__main__":
    main()
