"""nexec side of the peer comparison: the workloads of ``shared/peers`` in nexec.

    python benchmarks/nexec_peer.py [seed_mlp|wide_mlp|cnn|residual ...] [--threads 2] [--small]

Prints one JSON line per workload with the fields of ``shared/peers/torch_peer.py`` and
``keras_peer.py`` (same model, data, optimizer, batch size, epochs; median steady-state
epoch, first epoch, median of 5 predict passes, peak RSS), plus ``compile_s`` (the time of
``model.compile``, which plans; Keras' ``compile`` is likewise outside its first epoch) and
``thread_env`` (the thread-related environment the run had; variables already set win over
``--threads``). The first epoch is timed the way ``keras_peer.py`` times it, by an epoch
callback: it includes loading (or JIT-compiling, with an empty Numba cache) every kernel and
binding the programs. ``compare.py`` runs this script one workload per process.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS")


def measure(name: str, threads: int) -> dict:
    """Trains and times workload ``name``; returns the peers' JSON record."""
    import numba

    import nexec
    from benchmarks import models
    from benchmarks.workloads import peak_rss_mb
    from nexec.callbacks import Callback

    class Timer(Callback):
        def __init__(self):
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.t)

    s = models.spec(name)
    x, y = models.data(name)
    model = models.build(name)
    t = time.perf_counter()
    models.compile_model(model, name)
    compile_s = time.perf_counter() - t
    timer = Timer()
    h = model.fit(x, y, epochs=s["epochs"], batch_size=s["batch"], verbose=0, callbacks=[timer])
    preds = []
    for _ in range(5):
        t = time.perf_counter()
        model.predict(x, batch_size=s["batch"], verbose=0)  # as the Keras peer: no bar
        preds.append(time.perf_counter() - t)
    steady = statistics.median(timer.times[1:]) if len(timer.times) > 1 else timer.times[0]
    p = statistics.median(preds)
    n = len(x)
    return dict(framework="nexec", version=f"{nexec.__version__}/numba{numba.__version__}",
                workload=name, threads=threads, params=model.count_params(),
                first_epoch_s=timer.times[0], epoch_s=steady, train_samples_per_s=n / steady,
                predict_s=p, predict_samples_per_s=n / p,
                final_loss=float(h.history["loss"][-1]), peak_rss_mb=peak_rss_mb(),
                compile_s=compile_s, jit_step=models.jit_step(),
                thread_env={v: os.environ.get(v) for v in THREAD_VARS + ("GOMP_SPINCOUNT",
                            "OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER") if v in os.environ})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workloads", nargs="*", default=["seed_mlp", "wide_mlp", "cnn"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--small", action="store_true",
                    help="tiny sizes (fills Numba's cache; numbers mean nothing)")
    a = ap.parse_args(argv)
    # Before NumPy/SciPy/Numba load: BLAS and Numba read these once. A variable already set
    # wins (compare.py sets them all to --threads, then applies --nexec-env on top).
    for var in THREAD_VARS:
        os.environ.setdefault(var, str(a.threads))
    if a.small:
        os.environ["NEXEC_BENCH_SMALL"] = "1"
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for w in a.workloads:
        print(json.dumps(measure(w, a.threads)), flush=True)


if __name__ == "__main__":
    main()
