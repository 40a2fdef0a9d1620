"""im2col against Winograd on the benchmark CNN's 3x3 stride-1 Conv2D layers, side by side.

    python benchmarks/winograd_layers.py [--threads 2] [--rounds 7] [--batch 64] [--json F]

Each layer runs alone (``nexec.runtime.autotune.time_conv``: the op kernel's bound calls on
its own arrays, as the executor binds them) at the workload's batch size. Per round every
algorithm runs once, in turn, so a busy neighbour slows them alike; the table gives medians
over rounds, for inference (forward) and training (forward + backward: Winograd computes
the input gradient, the weight gradient stays im2col + GEMM). ``GFLOP/s`` is the effective
rate: direct-convolution flops (2*N*Ho*Wo*9*Cin*F per pass, x3 for training) / time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

ALGOS = ("im2col", "winograd", "winograd4")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--batch", type=int, default=None, help="default: the CNN workload's")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--model-rows", type=int, default=512,
                   help="rows of the whole-CNN fit timed per mode (0: skip it)")
    args = p.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks import pin_threads

    pin_threads(args.threads)  # before NumPy and Numba load
    from benchmarks import models
    from nexec.ops.geometry import conv2d_geometry
    from nexec.ops.winograd import winograd_applies
    from nexec.plugins import registry
    from nexec.runtime.autotune import time_conv

    batch = args.batch or models.spec("cnn")["batch"]
    model = models.build("cnn")
    plan = model.plan()
    device = registry().device("cpu")
    rows = []
    for op in plan.graph.ops:
        if op.kind != "Conv2D" or not winograd_applies(op.layer):
            continue
        h, w, cin = plan.graph.tensors[op.inputs[0]].shape
        f = op.layer.filters
        ho, wo, _, _ = conv2d_geometry(h, w, 3, 3, 1, 1, op.layer.padding)
        flops = 2 * batch * ho * wo * 9 * cin * f
        row = {"layer": op.layer.name, "shape": f"{h}x{w}x{cin}->{f}", "batch": batch}
        for training in (False, True):
            runs: dict[str, list[float]] = {a: [] for a in ALGOS}
            for _ in range(args.rounds):
                for a in ALGOS:
                    runs[a] += time_conv(op.layer, (h, w, cin), batch, plan.graph.dtype, a,
                                         training, device, repeats=1)
            step = "train" if training else "infer"
            for a in ALGOS:
                t = statistics.median(runs[a])
                row[f"{step}_{a}_ms"] = round(t * 1e3, 3)
                row[f"{step}_{a}_gflops"] = round(flops * (3 if training else 1) / t / 1e9, 1)
        rows.append(row)
        _print(row)
    whole = _whole_model(args.model_rows, batch, args.rounds) if args.model_rows else {}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"threads": args.threads, "rounds": args.rounds, "rows": rows,
                       "whole_cnn_fit_s": whole}, fh, indent=1)
    return 0


def _whole_model(n: int, batch: int, rounds: int) -> dict:
    """Seconds of one ``fit`` epoch over ``n`` rows of the CNN per conv-algorithm mode, the
    modes alternating per round (each model compiled and warmed up once, first)."""
    import time

    from benchmarks import models
    from nexec.planner.algorithms import use_conv_algorithm

    x, y = models.data("cnn")
    x, y = x[:n], y[:n]
    fits = {}
    for mode in ("im2col", "winograd", "auto"):
        with use_conv_algorithm(mode):
            model = models.build("cnn")
            models.compile_model(model, "cnn")
        model.fit(x, y, epochs=1, batch_size=batch, verbose=0)  # binds; "auto" measures
        fits[mode] = model
    runs: dict[str, list[float]] = {m: [] for m in fits}
    for _ in range(rounds):
        for mode, model in fits.items():
            t0 = time.perf_counter()
            model.fit(x, y, epochs=1, batch_size=batch, verbose=0)
            runs[mode].append(time.perf_counter() - t0)
    out = {m: round(statistics.median(t), 4) for m, t in runs.items()}
    chosen = fits["auto"]._trainer.plan.conv_algorithms
    print(f"whole CNN, one epoch of {n} rows (median of {rounds}): {out}; auto chose {chosen}",
          flush=True)
    out["auto_choices"] = chosen
    return out


def _print(row: dict) -> None:
    parts = [f"{row['layer']:<12} {row['shape']:<14}"]
    for step in ("infer", "train"):
        base = row[f"{step}_im2col_ms"]
        for a in ALGOS:
            ms = row[f"{step}_{a}_ms"]
            parts.append(f"{step} {a} {ms:8.2f} ms ({base / ms:4.2f}x, "
                         f"{row[f'{step}_{a}_gflops']:5.1f} GF/s)")
    print("\n    ".join(parts), flush=True)


if __name__ == "__main__":
    sys.exit(main())
