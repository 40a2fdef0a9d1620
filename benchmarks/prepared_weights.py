"""ResNet-18's predict with prepared weights (round 16) against the plan before, in one
process, alternating.

    python benchmarks/prepared_weights.py [--threads 2] [--rounds 15] [--control] [--json F]

Three copies of the workload with the same weights, each ``predict``-ing the same rows:
- ``new``: round 16's cost model: the 2x2 maps' 3x3 layers run as their Toeplitz matrix,
  and the Toeplitz matrices and Winograd's filter transforms are made once per ``predict``
  call, kept for all its batches;
- ``kept``: the same, but the 2x2 maps stay im2col (what keeping Winograd's transforms
  alone gives);
- ``old``: im2col on the 2x2 maps and the transforms made again every batch (round 15).
The order of the three rotates every round, so a noisy neighbour hurts them alike; the
result is each side's median and the per-round ratios to ``old``. ``--control`` plans and
runs all three as ``new`` (the noise floor of the ratios).
"""
from __future__ import annotations

import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SIDES = ("new", "kept", "old")


def measure(rounds: int, control: bool) -> dict:
    from benchmarks.predict_ab import alternate, copies

    name = "resnet18"
    # "new" plans as round 16's cost model did (Toeplitz where it applies; since round 17 the
    # model leaves that to "auto"'s measurement); the others keep im2col on the 2x2 maps
    new_plan = {"auto": True}
    old_plan = new_plan if control else {"toeplitz": False}
    built, xs, batch = copies(name, {"new": new_plan, "kept": old_plan, "old": old_plan})
    if not control:  # "old" remakes its prepared weights before every batch, as before
        executor = built["old"]._trainer.predictor.executor
        prepare = executor.prepare

        def every_batch(prog):  # noqa: ANN001, ANN202
            prog.prepared = -1
            prepare(prog)

        executor.prepare = every_batch
    choices = {side: list(m._trainer.plan.algorithms(False).values())
               for side, m in built.items()}
    times = alternate(built, xs, batch, rounds)
    medians = {side: statistics.median(t) * 1e3 for side, t in times.items()}
    return {"workload": name, "rows": len(xs), "batch": batch, "rounds": rounds,
            "control": control,
            "toeplitz_layers": {k: v.count("toeplitz") for k, v in choices.items()},
            "median_ms": medians,
            "ratio_to_old": {side: medians[side] / medians["old"] for side in SIDES[:2]},
            "round_ratios_to_old": {side: sorted(a / b for a, b in
                                                 zip(times[side], times["old"]))
                                    for side in SIDES[:2]}}


def describe(result: dict, threads: int, rounds: int) -> str:
    m, r = result["median_ms"], result["ratio_to_old"]
    return (f"ResNet-18 predict of {result['rows']} rows, {threads} threads, medians of "
            f"{rounds}: new {m['new']:.1f} ms, kept {m['kept']:.1f} ms, old {m['old']:.1f} "
            f"ms; new/old {r['new']:.3f}, kept/old {r['kept']:.3f}; Toeplitz layers "
            f"{result['toeplitz_layers']}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(HERE))
    from benchmarks.predict_ab import main

    raise SystemExit(main(None, __doc__, measure, describe))
