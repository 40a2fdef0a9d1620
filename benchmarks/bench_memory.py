"""What the memory planner promises, per workload, batch 128, training and inference.

``arena_bytes``: the one arena the executor allocates for intermediates (parameters and
optimizer state are not in it). ``lower_bound_bytes``: the most bytes live at one step of
the same schedule; the arena can not be smaller. ``naive_bytes``: one buffer per tensor, no
reuse: what the arena saves. These are deterministic: a change is a planner change.

Run as a script, it writes the figures the docs quote (``benchmarks/results/memory-plan.json``,
at a fixed thread count: the convolution workspaces are per shard) and redraws the picture of
the CNN's plan, and the README's of ``nexec demo``'s CNN; ``tests/test_memory_numbers.py``
fails when the planner no longer gives them::

    python -m benchmarks.bench_memory [--json F] [--picture docs/memory_cnn.png]
                                      [--demo-picture docs/demo_cnn_memory.svg]
"""
from __future__ import annotations

import argparse
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from benchmarks import models

BATCH = 128
#: The thread count the recorded figures are planned for (the two cores of the docs' machines).
THREADS = 2
#: The batch size of the picture in docs/performance.md.
PICTURE_BATCH = 64
#: The batch size ``nexec demo`` trains its CNN at, and draws its plan for (the README's picture).
DEMO_BATCH = 32
RESULTS = Path(__file__).resolve().parent / "results" / "memory-plan.json"


class TrackMemoryPlan:
    params = [list(models.WORKLOADS), ["training", "inference"]]
    param_names = ["workload", "mode"]
    unit = "bytes"

    def setup(self, workload, mode):
        model = models.build(workload)
        self.plan = model.memory_plan(batch_size=models.kernel_batch(BATCH),
                                      training=mode == "training")

    def track_arena_bytes(self, workload, mode):
        return self.plan.arena_bytes

    def track_lower_bound_bytes(self, workload, mode):
        return self.plan.lower_bound_bytes

    def track_naive_bytes(self, workload, mode):
        return self.plan.naive_bytes


def figures(threads: int = THREADS) -> dict:
    """Arena, lower bound and naive bytes per workload and mode at ``BATCH`` (and of the two
    pictures' training plans), planned for ``threads`` intra-op shards."""
    return _figures(threads)[0]


def _figures(threads: int) -> tuple[dict, Any, Any]:
    """:func:`figures` and the two pictures' plans (to draw them without planning again)."""
    from nexec.demo import digits_cnn

    def sizes(plan: Any) -> dict:
        return {key: getattr(plan, key)
                for key in ("arena_bytes", "lower_bound_bytes", "naive_bytes")}

    with _planned_for(threads):
        # first: in a fresh process its layers get the names nexec demo's have
        demo = digits_cnn().memory_plan(DEMO_BATCH, True)
        rows: dict = {}
        for workload in models.WORKLOADS:
            model = models.build(workload)
            rows[workload] = {mode: sizes(model.memory_plan(
                batch_size=models.kernel_batch(BATCH), training=mode == "training"))
                for mode in ("training", "inference")}
        picture = models.build("cnn").memory_plan(PICTURE_BATCH, True)
    return ({"threads": threads, "batch": BATCH, "rows": rows,
             "picture": {"workload": "cnn", "batch": PICTURE_BATCH, "mode": "training",
                         **sizes(picture)},
             "demo_picture": {"model": "nexec.demo.digits_cnn", "batch": DEMO_BATCH,
                              "mode": "training", **sizes(demo)}}, picture, demo)


@contextmanager
def _planned_for(threads: int) -> Iterator[None]:
    """Plans made inside size their per-shard workspaces for ``threads`` shards."""
    from nexec.devices import threads as nexec_threads

    before = nexec_threads.get_num_threads()
    nexec_threads.set_num_threads(threads)
    try:
        yield
    finally:
        nexec_threads.set_num_threads(before)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=RESULTS, help="where the figures go")
    parser.add_argument("--picture", type=Path, default=None,
                        help="also draw the CNN's training plan at batch 64 (.png or .svg)")
    parser.add_argument("--demo-picture", type=Path, default=None,
                        help="also draw nexec demo's CNN's training plan at batch 32")
    args = parser.parse_args(argv)
    data, picture, demo = _figures(THREADS)
    args.json.write_text(json.dumps(data, indent=1) + "\n")
    drawn = [str(args.json)]
    for plan, path in ((picture, args.picture), (demo, args.demo_picture)):
        if path is not None:
            plan.plot(str(path))
            drawn.append(str(path))
    print("wrote " + ", ".join(drawn))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
