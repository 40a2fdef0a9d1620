"""Whole steps with convolution blocks split between shards (nexec's rule) against a whole
block per shard, in one process, alternating.

    python benchmarks/conv_blocks.py [--workloads cnn,resnet18] [--threads 2] [--rounds 14]
                                     [--whole-first] [--control] [--json F]

Each workload is built and bound twice (same weights, same batch): once as nexec plans it
(``nexec.ops.geometry.block_elements``: the shards that run at once share one column-matrix
block's worth of elements) and once with ``block_elements`` patched to give every shard a
whole block (nexec before round 12). Then ``train_on_batch`` and ``predict`` of one batch
alternate between the two models, the order flipped every round, so a noisy neighbour hurts
both alike; the table gives medians in ms and the split/whole ratio. ``--whole-first``
builds the whole-block model first (the order models are built in can matter: memory
placement); ``--control`` plans both models alike (an A/A run: the noise floor of the ratio).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = ("split", "whole")


@contextlib.contextmanager
def _whole_blocks() -> Iterator[None]:
    """Plans made inside give each shard a whole block, whatever the shard count."""
    from nexec.ops import geometry, winograd

    split = geometry.block_elements
    whole = lambda shards=1: split(1)  # noqa: E731 - the same signature
    geometry.block_elements = winograd.block_elements = whole
    try:
        yield
    finally:
        geometry.block_elements = winograd.block_elements = split


def measure(workload: str, rounds: int, whole_first: bool = False, control: bool = False
            ) -> dict[str, dict[str, float]]:
    """Median ms of a training step and of an inference step, per variant."""
    from benchmarks import models

    s = models.spec(workload)
    x, y = models.data(workload)
    b = s["batch"]
    xb, yb = x[:b], y[:b]
    built = {}
    for variant in VARIANTS[::-1] if whole_first else VARIANTS:
        whole = variant == "whole" and not control
        with _whole_blocks() if whole else contextlib.nullcontext():
            model = models.build(workload)
            models.compile_model(model, workload)
            for _ in range(2):  # binds both programs (inside the patch) and loads the kernels
                model.train_on_batch(xb, yb)
                model.predict(xb, batch_size=b, verbose=0)
        built[variant] = model
    times: dict[str, dict[str, list[float]]] = {v: {"train": [], "infer": []} for v in VARIANTS}
    for r in range(rounds):
        for variant in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
            model = built[variant]
            t = time.perf_counter()
            model.train_on_batch(xb, yb)
            times[variant]["train"].append(time.perf_counter() - t)
            t = time.perf_counter()
            model.predict(xb, batch_size=b, verbose=0)
            times[variant]["infer"].append(time.perf_counter() - t)
    return {v: {k: statistics.median(t) * 1e3 for k, t in steps.items()}
            for v, steps in times.items()}


def format_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown rows: workload, step, ms split, ms whole, split/whole."""
    lines = ["| workload | step | blocks split (ms) | whole blocks (ms) | split / whole |",
             "|---|---|---|---|---|"]
    for workload, r in results.items():
        for step in ("train", "infer"):
            a, b = r["split"][step], r["whole"][step]
            lines.append(f"| {workload} | {step} | {a:.1f} | {b:.1f} | {a / b:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default="cnn,resnet18")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=14)
    p.add_argument("--whole-first", action="store_true", help="build that model first")
    p.add_argument("--control", action="store_true", help="plan both models alike (A/A)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    for var in ("NEXEC_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    os.environ["NEXEC_ADAPT_THREADS"] = "0"  # shards must not follow the machine's load
    sys.path.insert(0, os.path.dirname(HERE))
    results = {w: measure(w, args.rounds, args.whole_first, args.control)
               for w in args.workloads.split(",")}
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"threads": args.threads, "rounds": args.rounds,
                       "whole_first": args.whole_first, "control": args.control,
                       "results": results}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
