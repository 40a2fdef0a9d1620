"""ResNet-18's predict with BatchNormalization folded into the convolutions (round 17)
against the plan before, in one process, alternating.

    python benchmarks/folded_batchnorm.py [--threads 2] [--rounds 15] [--control] [--json F]

Two copies of the workload with the same weights, each ``predict``-ing the same rows:
- ``folded``: the planner as it is: in inference every BatchNormalization is folded into the
  convolution before it (prepared weights), and the ReLU after it fuses into the same
  convolution;
- ``unfolded``: BatchNormalization and the ReLU after it as passes of their own (round 16).
The order rotates every round, so a noisy neighbour hurts both alike; the result is each
side's median and the per-round ratios. ``--control`` plans both as ``folded`` (the noise
floor of the ratio).
"""
from __future__ import annotations

import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def measure(rounds: int, control: bool) -> dict:
    from benchmarks.predict_ab import alternate, copies

    name = "resnet18"
    built, xs, batch = copies(name, {"folded": None, "unfolded": None},
                              unfolded=() if control else ("unfolded",))
    steps = {side: len(m._trainer.predictor.executor.plan.ops) for side, m in built.items()}
    times = alternate(built, xs, batch, rounds)
    medians = {side: statistics.median(t) * 1e3 for side, t in times.items()}
    return {"workload": name, "rows": len(xs), "batch": batch, "rounds": rounds,
            "control": control, "inference_steps": steps, "median_ms": medians,
            "ratio": medians["folded"] / medians["unfolded"],
            "round_ratios": sorted(a / b for a, b in zip(times["folded"],
                                                         times["unfolded"]))}


def describe(result: dict, threads: int, rounds: int) -> str:
    m = result["median_ms"]
    return (f"ResNet-18 predict of {result['rows']} rows, {threads} threads, medians of "
            f"{rounds}: folded {m['folded']:.1f} ms, unfolded {m['unfolded']:.1f} ms; "
            f"folded/unfolded {result['ratio']:.3f}; inference steps "
            f"{result['inference_steps']}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(HERE))
    from benchmarks.predict_ab import main

    raise SystemExit(main(None, __doc__, measure, describe))
