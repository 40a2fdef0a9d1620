"""Per-layer time and effective rate of a workload's training and inference steps.

    python benchmarks/layer_profile.py cnn [--threads 2] [--steps 10] [--conv-algorithm auto]
                                           [--json F]

Binds the workload's training and inference programs at its batch size and times every call
of their steps (``nexec.runtime.profiling.profile_program``; the parts add up to the step).
For each Conv2D and Dense the table gives the algorithm the plan chose (for training, and
for inference where that differs), the direct flops
(2 per multiply-add of the direct convolution or the matrix product; backward twice forward,
or once for a layer on a model input, which needs no input gradient), the forward and
backward milliseconds (medians over the steps) and the effective rate (direct flops /
time) as GFLOP/s and as a share of the BLAS peak: the best 1024x1024 sgemm through Numba's
``np.dot`` (``benchmarks/blas_peak.py``), measured in the same process at the same thread
count after the steps, so the share is of this machine's ceiling and not of the one in
``benchmarks/results/blas_peak.json``. Everything else (pooling, Add, BatchNormalization,
the loss, the optimizer) is summed in two lines.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def layer_flops(op: object, graph: object, batch: int) -> int:
    """Direct flops of one forward pass of a Conv2D or Dense op (0 for other ops)."""
    from nexec.ops.geometry import conv2d_geometry

    layer = op.layer
    kind = type(layer).__name__
    if kind == "Conv2D":
        h, w, cin = graph.tensors[op.inputs[0]].shape
        kh, kw = layer.kernel_size
        sh, sw = layer.strides
        ho, wo, _, _ = conv2d_geometry(h, w, kh, kw, sh, sw, layer.padding)
        return 2 * batch * ho * wo * kh * kw * cin * layer.filters
    if kind == "Dense":
        shape = graph.tensors[op.inputs[0]].shape
        rows = batch
        for d in shape[:-1]:
            rows *= d
        return 2 * rows * shape[-1] * layer.units
    return 0


def blas_peak() -> float:
    """Best 1024x1024x1024 sgemm GFLOP/s of this process's BLAS, called as the kernels call it."""
    from benchmarks.blas_peak import measure

    return max(r["numba_best_gflops"] for r in measure([1024], repeats=5, min_time=0.1))


def profile(name: str, steps: int) -> dict:
    """The workload's per-layer rows for its training and inference steps."""
    import numpy as np

    from benchmarks import models
    from nexec.runtime.profiling import profile_program

    s = models.spec(name)
    x, y = models.data(name)
    batch = s["batch"]
    model = models.build(name)
    models.compile_model(model, name)
    trainer = model._trainer
    graph = trainer.plan.graph
    train_ex, infer_ex = trainer.train_executor, trainer.predictor.executor
    prog = train_ex.program(batch)
    train_ex.load(prog, [x, y], 0, batch)
    train = profile_program(train_ex, prog, "train", steps)
    prog = infer_ex.program(batch)
    infer_ex.load(prog, [x], 0, batch)
    infer = profile_program(infer_ex, prog, "forward", steps)
    times: dict[tuple[str, str, str], float] = {}
    for mode, prof in (("train", train), ("infer", infer)):
        for p in prof.parts:
            key = (mode, p.part, p.phase)
            times[key] = times.get(key, 0.0) + p.seconds
    rows = []
    for op in graph.ops:
        part = f"layer '{op.layer.name}' ({type(op.layer).__name__})"
        flops = layer_flops(op, graph, batch)
        row = {"layer": op.layer.name, "type": type(op.layer).__name__,
               "algorithm": trainer.plan.algorithms(True)[op.layer.name]
               if row_is_conv(op) else "",
               "infer_algorithm": trainer.plan.algorithms(False)[op.layer.name]
               if row_is_conv(op) else "",
               "shape": f"{graph.tensors[op.inputs[0]].shape}->{graph.tensors[op.output].shape}",
               "gflop_forward": flops / 1e9,
               # backward: weight and input gradient, or only the weight gradient
               "gflop_backward": flops / 1e9 * (1 if op.inputs[0] in graph.inputs else 2),
               "infer_ms": times.get(("infer", part, "forward"), 0.0) * 1e3,
               "train_forward_ms": times.get(("train", part, "forward"), 0.0) * 1e3,
               "train_backward_ms": times.get(("train", part, "backward"), 0.0) * 1e3}
        rows.append(row)
    others = {f"{p.part} ({p.phase})": p.seconds * 1e3 for p in train.parts
              if not p.part.startswith("layer ")}
    return {"workload": name, "batch": batch, "steps": steps,
            "train_step_ms": train.step_seconds * 1e3, "infer_step_ms": infer.step_seconds * 1e3,
            "rows": rows, "train_other_ms": others, "x_dtype": str(np.asarray(x).dtype)}


def row_is_conv(op: object) -> bool:
    return type(op.layer).__name__ == "Conv2D"


def table(result: dict, peak: float) -> str:
    """The rows as a Markdown table (layers with flops; the rest summed in one line)."""
    head = ("| layer | shape | algorithm | GFLOP fwd | infer ms | GFLOP/s | train fwd+bwd ms "
            "| GFLOP/s | % of peak |")
    lines = [f"{result['workload']}, batch {result['batch']}: train step "
             f"{result['train_step_ms']:.1f} ms, inference step {result['infer_step_ms']:.1f} ms"
             f" (medians of {result['steps']}); BLAS peak {peak:.0f} GFLOP/s", "",
             head, "|" + "---|" * 9]
    rest_infer = rest_train = 0.0
    for r in result["rows"]:
        train_ms = r["train_forward_ms"] + r["train_backward_ms"]
        if not r["gflop_forward"]:
            rest_infer += r["infer_ms"]
            rest_train += train_ms
            continue
        g = r["gflop_forward"]
        gi = g / (r["infer_ms"] / 1e3) if r["infer_ms"] else 0.0
        gt = (g + r["gflop_backward"]) / (train_ms / 1e3) if train_ms else 0.0
        share = f"{gt / peak:.0%}" if peak else "-"
        algo = r["algorithm"] or "-"
        if r.get("infer_algorithm", r["algorithm"]) != r["algorithm"]:  # older files: none
            algo += f" (inference: {r['infer_algorithm']})"
        lines.append(f"| {r['layer']} | {r['shape']} | {algo} | {g:.3f} | "
                     f"{r['infer_ms']:.2f} | {gi:.0f} | {train_ms:.2f} | {gt:.0f} | {share} |")
    others = sum(result["train_other_ms"].values())
    lines.append(f"| other layers | | | | {rest_infer:.2f} | | {rest_train:.2f} | | |")
    lines.append(f"| loss, metrics, optimizer | | | | | | {others:.2f} | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workload", help="a name from benchmarks/models.py, e.g. cnn, resnet18")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--conv-algorithm", default=None,
                   help="plan under nexec.planner.algorithms.use_conv_algorithm(...)")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args(argv)
    sys.path.insert(0, os.path.dirname(HERE))
    from benchmarks import pin_threads

    pin_threads(args.threads)  # before NumPy and Numba load
    import contextlib

    from nexec.planner.algorithms import use_conv_algorithm

    ctx = use_conv_algorithm(args.conv_algorithm) if args.conv_algorithm \
        else contextlib.nullcontext()
    with ctx:
        result = profile(args.workload, args.steps)
    result["threads"] = args.threads
    result["conv_algorithm"] = args.conv_algorithm or "default"
    peak = result["blas_peak_gflops"] = blas_peak()
    print(table(result, peak))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
