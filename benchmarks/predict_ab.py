"""Copies of one workload planned apart, their ``predict`` timed alternately in one process.

The harness of ``small_map_winograd.py``, ``prepared_weights.py`` and
``folded_batchnorm.py``: each copy is built and
compiled while its side's cost model is in force (``fixed[side]``: arguments of
:func:`nexec.planner.algorithms.modelled_choice` held at a value, e.g. ``{"training": True}``
to plan inference as training is; ``None`` for the model as it is), all
get the first copy's weights, each predicts twice to bind and warm, and then the sides
predict the same rows in an order that rotates every round, so that a noisy neighbour
hurts them alike.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["copies", "alternate", "main"]


def copies(name: str, fixed: dict[str, dict[str, Any] | None],
           unfolded: tuple[str, ...] = ()) -> tuple[dict, Any, int]:
    """``(models by side, the rows each predicts, batch size)``: four batches of ``name``.

    The sides in ``unfolded`` are planned without folding BatchNormalization into the
    layers before it (as before round 17).
    """
    from benchmarks import models
    from nexec.planner import algorithms
    from nexec.planner import plan as planning

    s = models.spec(name)
    x, _ = models.data(name)
    batch = s["batch"]
    rows = x[:batch * 4]
    model_choice = algorithms.modelled_choice

    def held(values: dict[str, Any]) -> Callable[..., str]:
        def choice(*args: Any, **kwargs: Any) -> str:
            names = inspect.signature(model_choice).bind(*args, **kwargs).arguments
            return model_choice(**{**names, **values})
        return choice

    fold = planning.fold_channel_affines
    built = {}
    for side, values in fixed.items():
        algorithms.modelled_choice = model_choice if values is None else held(values)
        if side in unfolded:
            planning.fold_channel_affines = lambda g, *args: g
        try:
            built[side] = models.build(name)
            models.compile_model(built[side], name)
        finally:
            algorithms.modelled_choice = model_choice
            planning.fold_channel_affines = fold
        built[side].set_weights(next(iter(built.values())).get_weights())
    for m in built.values():  # bind and warm
        for _ in range(2):
            m.predict(rows, batch_size=batch, verbose=0)
    return built, rows, batch


def alternate(built: dict, rows: Any, batch: int, rounds: int) -> dict[str, list[float]]:
    """Seconds of each side's ``predict(rows)`` per round, the order rotating each round."""
    sides = list(built)
    times: dict[str, list[float]] = {side: [] for side in sides}
    for r in range(rounds):
        k = r % len(sides)
        for side in sides[k:] + sides[:k]:
            t0 = time.perf_counter()
            built[side].predict(rows, batch_size=batch, verbose=0)
            times[side].append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None, doc: str, measure: Callable[[int, bool], dict],
         describe: Callable[[dict, int, int], str]) -> int:
    """A script's command line: ``[--threads 2] [--rounds 15] [--control] [--json F]``;
    prints ``describe(result, threads, rounds)`` of ``measure(rounds, control)``."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--control", action="store_true", help="plan every copy alike (A/A)")
    p.add_argument("--json", default=None, help="also write the result here")
    args = p.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks import pin_threads

    pin_threads(args.threads)  # before NumPy and Numba load
    result = measure(args.rounds, args.control)
    result["threads"] = args.threads
    print(f"{'A/A ' if args.control else ''}{describe(result, args.threads, args.rounds)}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0
