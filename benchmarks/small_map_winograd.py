"""ResNet-18's predict with Winograd on its 4x4 maps (the cost model since round 15) against
im2col there (the model before), in one process, alternating.

    python benchmarks/small_map_winograd.py [--threads 2] [--rounds 15] [--control] [--json F]

Two copies of the workload, the same weights: one planned by the cost model as it is
(``"inference"`` choices: Winograd on every wide 3x3 layer of 16 pixels or more), one with
inference planned as training is (Winograd from 64 pixels: im2col on the 4x4 maps).
``predict`` of four batches alternates between them, the order flipped every round, so a
noisy neighbour hurts both alike; the result is each side's median and the per-round
ratios. ``--control`` plans both copies alike (an A/A run: the noise floor of the ratio).
"""
from __future__ import annotations

import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def measure(rounds: int, control: bool) -> dict:
    from benchmarks.predict_ab import alternate, copies

    name = "resnet18"  # "old": inference planned as training is (Winograd from 64 pixels)
    built, xs, batch = copies(name, {"new": None,
                                     "old": None if control else {"training": True}})
    choices = {side: {k: v for k, v in m._trainer.plan.algorithms(False).items()
                      if v == "winograd"} for side, m in built.items()}
    times = alternate(built, xs, batch, rounds)
    ratios = sorted(n / o for n, o in zip(times["new"], times["old"]))
    return {"workload": name, "rows": len(xs), "batch": batch, "rounds": rounds,
            "control": control, "winograd_layers": {k: len(v) for k, v in choices.items()},
            "new_ms": statistics.median(times["new"]) * 1e3,
            "old_ms": statistics.median(times["old"]) * 1e3,
            "ratio_of_medians": statistics.median(times["new"]) / statistics.median(times["old"]),
            "round_ratios": ratios}


def describe(result: dict, threads: int, rounds: int) -> str:
    return (f"ResNet-18 predict of {result['rows']} rows, {threads} threads, medians of "
            f"{rounds}: new {result['new_ms']:.1f} ms, old {result['old_ms']:.1f} ms, new/old "
            f"{result['ratio_of_medians']:.3f} (rounds {result['round_ratios'][0]:.3f}-"
            f"{result['round_ratios'][-1]:.3f}); Winograd layers {result['winograd_layers']}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(HERE))
    from benchmarks.predict_ab import main

    raise SystemExit(main(None, __doc__, measure, describe))
