"""LSTM sequence classification: nexec against PyTorch and Keras, side by side.

    python benchmarks/bench_lstm.py [--repeats 3] [--threads 2] [--keras-python PATH]
    python benchmarks/bench_lstm.py --only nexec       # the nexec side alone, one JSON line

The workload (``LSTM_TEXT`` in ``benchmarks/peers_lstm.py``): (batch, 50, 32) float32
sequences -> LSTM(64) -> Dense(2, softmax), Adam(1e-3), batch 64, 2,048 samples. Every
(repeat, framework) run is a fresh subprocess, and runs alternate nexec, pytorch, keras, so
load that drifts hits every framework alike; the table gives medians and nexec/peer ratios.
Keras runs under ``--keras-python`` (default: this interpreter) with ``KERAS_BACKEND=jax``
unless the environment sets another backend. A peer that fails to run is reported, never
faked. Before measuring, nexec runs the model once on tiny sizes so Numba's on-disk cache is
filled (what a user sees on every run but the very first).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS")


def _model(spec: dict):  # noqa: ANN202
    from nexec import Input, Model, layers

    inp = Input(shape=(spec["steps"], spec["features"]))
    out = layers.Dense(spec["classes"], activation="softmax")(layers.LSTM(spec["units"])(inp))
    return Model(inp, out)


def run_nexec(threads: int) -> dict:
    """Trains and times the workload in nexec; the peers' JSON record."""
    import nexec
    from benchmarks.peers_lstm import LSTM_TEXT, make_data, record
    from nexec.callbacks import Callback

    nexec.set_num_threads(threads)
    spec = LSTM_TEXT
    warm = dict(spec, n=8, batch=4)  # fills Numba's cache; untimed
    m = _model(warm)
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    xw, yw = make_data(warm)
    m.fit(xw, yw, epochs=1, batch_size=4, verbose=0)
    m.predict(xw, verbose=0)

    class Timer(Callback):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):  # noqa: ANN001, ANN202
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):  # noqa: ANN001, ANN202
            self.times.append(time.perf_counter() - self.t)

    nexec.clear_session()
    nexec.set_random_seed(0)
    model = _model(spec)
    t = time.perf_counter()
    model.compile(optimizer=nexec.optimizers.Adam(spec["lr"]), loss="categorical_crossentropy")
    compile_s = time.perf_counter() - t
    x, y = make_data(spec)
    timer = Timer()
    h = model.fit(x, y, epochs=spec["epochs"], batch_size=spec["batch"], verbose=0,
                  callbacks=[timer])
    preds = []
    for _ in range(5):
        t = time.perf_counter()
        model.predict(x, batch_size=spec["batch"], verbose=0)
        preds.append(time.perf_counter() - t)
    return record("nexec", nexec.__version__, threads, model.count_params(), timer.times,
                  preds, float(h.history["loss"][-1]), compile_s=compile_s)


def _child(framework: str, threads: int, keras_python: str) -> dict | str:
    env = dict(os.environ)
    env.update({v: str(threads) for v in THREAD_VARS})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if framework == "nexec":
        cmd = [sys.executable, str(HERE / "bench_lstm.py"), "--only", "nexec"]
    else:
        cmd = [keras_python if framework == "keras" else sys.executable,
               str(HERE / "peers_lstm.py"), framework]
        env.setdefault("KERAS_BACKEND", "jax")
    cmd += ["--threads", str(threads)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        return f"{framework} failed (exit {p.returncode}): {p.stderr.strip()[-300:]}"
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["nexec"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keras-python", default=sys.executable)
    ap.add_argument("--json", help="write every run's record here")
    a = ap.parse_args()
    if a.only:
        print(json.dumps(run_nexec(a.threads)), flush=True)
        return
    runs: dict[str, list[dict]] = {"nexec": [], "pytorch": [], "keras": []}
    for _ in range(a.repeats):
        for fw in runs:
            r = _child(fw, a.threads, a.keras_python)
            if isinstance(r, str):
                print(r, file=sys.stderr)
            else:
                runs[fw].append(r)
    if a.json:
        Path(a.json).write_text(json.dumps(runs, indent=1) + "\n")
    print(f"lstm_text, {a.threads} threads, medians of {a.repeats} alternating runs")
    print(f"{'':24}" + "".join(f"{fw:>12}" for fw in runs) + "  nexec/pytorch  nexec/keras")
    for key, label in (("train_samples_per_s", "train samples/s"),
                       ("predict_samples_per_s", "predict samples/s"),
                       ("first_epoch_s", "first epoch s"), ("final_loss", "final loss")):
        med = {fw: statistics.median(r[key] for r in rs) if rs else float("nan")
               for fw, rs in runs.items()}
        ratios = "".join(f"{med['nexec'] / med[p]:>14.2f}" if med[p] == med[p] else
                         f"{'-':>14}" for p in ("pytorch", "keras"))
        print(f"{label:24}" + "".join(f"{med[fw]:>12.4g}" for fw in runs) + ratios)


if __name__ == "__main__":
    main()
