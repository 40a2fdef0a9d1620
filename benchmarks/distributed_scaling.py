"""Inputs of the data-parallel scaling model in docs/distributed.md, measured here.

    python benchmarks/distributed_scaling.py [--workers 1 2 4 8 16] [--repeats 7] [--plot PNG]

Two things are measured, each as the median of ``--repeats`` samples (the machine is shared:
medians, not minima or means):

* **compute** (one kernel thread, as a worker with one Ray CPU): per benchmark workload
  (``benchmarks/models.py``), the time of one worker's share of a step,
  ``Executor.gradients`` on ``ceil(batch / W)`` rows, for each worker count ``W``,
  and the driver's ``apply_update`` (the optimizer over all parameters);
* **communication**, on a local Ray with one worker actor, for float32 arrays of 4 KiB to
  32 MiB: ``put`` (the driver puts the weights into the object store), ``step`` (the whole
  round trip of ``RayDataParallel``: the actor reads the weights, copies them into its
  parameters and returns a gradient of the same size, which the driver receives) and
  ``reduce`` (the driver adds one gradient into its float64 sum). Each is fitted as
  ``seconds = latency + bytes * per_byte`` (:func:`_fit`).

The model, per step with ``W`` workers on parameter bytes ``P``:
``T(W) = compute(W) + update + latency + P * (put + W * (step + reduce))`` (the driver
receives and adds the ``W`` gradients one after the other), against ``T(1)`` of one process
(``compute(1) + update``); see docs/distributed.md for the ring all-reduce and overlap
variants. Results go to ``benchmarks/results/distributed_scaling.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmarks import models  # noqa: E402

SIZES = [4 << 10, 64 << 10, 1 << 20, 4 << 20, 16 << 20, 32 << 20]


def _median_time(fn: Callable[[], Any], repeats: int, inner: int = 1) -> float:
    fn()  # untimed: compile, bind, fault pages in
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return statistics.median(samples)


def measure_compute(name: str, workers: list[int], repeats: int) -> dict:
    """Seconds of one worker's gradient step for each W, and of the driver's update."""
    s = models.spec(name)
    x, y = models.data(name)
    model = models.compile_model(models.build(name), name)
    tr = model._trainer
    ex = tr.train_executor
    out = {"batch": s["batch"], "parameters": int(tr.store.trainable_size),
           "parameter_bytes": int(tr.store.trainable_size * tr.store.values.itemsize),
           "gradients_s": {}}
    for w in workers:
        rows = -(-s["batch"] // w)
        prog = ex.program(rows)
        ex.load(prog, [x, y], 0, rows)
        counts = [0 if sl.shape[0] == 1 else np.zeros(sl.shape[0], sl.dtype)
                  for _, _, sl, _ in prog.metric_slots]
        out["gradients_s"][str(w)] = _median_time(
            lambda: ex.gradients(prog, [0.0] * len(prog.loss_slots), counts), repeats)
    prog = ex.program(1)
    out["update_s"] = _median_time(lambda: ex.apply_update(prog), repeats, inner=5)
    return out


class _Echo:
    """The worker side of one step, without the model: weights in, a gradient out."""

    def __init__(self) -> None:
        self.values = None

    def step(self, values: np.ndarray) -> np.ndarray:
        if self.values is None or self.values.shape != values.shape:
            self.values = np.empty_like(values)
        self.values[:] = values
        return self.values.copy()


def _fit(sizes: list[int], seconds: list[float]) -> dict:
    """``seconds = latency + bytes * per_byte``: the latency is the smallest size's time, the
    per-byte cost the least-squares slope of the rest through it (a free intercept would be
    pulled about by noise on the largest sizes)."""
    x = np.asarray(sizes, float)
    t = np.asarray(seconds, float)
    latency = float(t[0])
    slope = float(np.sum((t - latency) * x) / np.sum(x * x))
    return {"latency_s": latency, "per_byte_s": max(slope, 0.0),
            "samples_s": dict(zip(map(str, sizes), seconds))}


def measure_communication(repeats: int) -> dict:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        actor = ray.remote(_Echo).options(num_cpus=1).remote()
        put, step, reduce = [], [], []
        for size in SIZES:
            a = np.random.default_rng(0).random(size // 4, dtype=np.float32)
            acc = np.zeros(a.size, np.float64)
            ray.get(actor.step.remote(ray.put(a)))
            put.append(_median_time(lambda: ray.put(a), repeats))

            def round_trip() -> None:
                ray.get(actor.step.remote(ray.put(a)))
            step.append(_median_time(round_trip, repeats) - put[-1])
            reduce.append(_median_time(lambda: np.add(acc, a, out=acc), repeats))
        return {"put": _fit(SIZES, put), "step": _fit(SIZES, step),
                "reduce": _fit(SIZES, reduce)}
    finally:
        ray.shutdown()


def model_step(compute: dict, comm: dict, w: int) -> dict:
    """The modelled step time with ``w`` workers (this machine's transfer costs)."""
    p = compute["parameter_bytes"]
    work = compute["gradients_s"][str(w)] + compute["update_s"]
    if w == 1:
        return {"step_s": work, "communication_s": 0.0}
    c = comm["step"]["latency_s"] + comm["put"]["latency_s"] + p * (
        comm["put"]["per_byte_s"] + w * (comm["step"]["per_byte_s"] + comm["reduce"]["per_byte_s"]))
    return {"step_s": work + c, "communication_s": c}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--workloads", nargs="+", default=list(models.WORKLOADS))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                  "distributed_scaling.json"))
    ap.add_argument("--plot", default=None, help="also draw the model into this PNG")
    args = ap.parse_args(argv)
    from nexec.devices.threads import set_num_threads

    set_num_threads(1)  # a worker has one Ray CPU (cpus_per_worker=1): time it that way
    comm = measure_communication(args.repeats)
    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "note": "shared 2-core machine; medians of noisy samples"},
              "repeats": args.repeats, "communication": comm, "workloads": {}}
    for name in args.workloads:
        compute = measure_compute(name, args.workers, args.repeats)
        compute["model"] = {str(w): model_step(compute, comm, w) for w in args.workers}
        t1 = compute["model"]["1"]["step_s"]
        for w, m in compute["model"].items():
            m["speedup"] = t1 / m["step_s"]
        result["workloads"][name] = compute
        print(name, json.dumps({w: round(m["speedup"], 2) for w, m in compute["model"].items()}),
              flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(comm, indent=1))
    if args.plot:
        plot(result, args.plot)
    return 0


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in result["workloads"].items():
        ws = sorted(map(int, r["model"]))
        ax.plot(ws, [r["model"][str(w)]["speedup"] for w in ws], "o-", label=name)
    ws = sorted(map(int, next(iter(result["workloads"].values()))["model"]))
    ax.plot(ws, ws, "k:", label="ideal")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("workers")
    ax.set_ylabel("modelled speedup per step")
    ax.set_title("RayDataParallel, driver reduce (measured inputs)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
