"""Copies of one workload planned apart, their ``predict`` timed alternately in one process.

The harness of ``small_map_winograd.py`` and ``prepared_weights.py``: each copy is built and
compiled while its side's cost model is in force (``choices[side]``, a replacement for
:func:`nexec.planner.algorithms.modelled_choice`, or ``None`` for the model as it is), all
get the first copy's weights, each predicts twice to bind and warm, and then the sides
predict the same rows in an order that rotates every round, so that a noisy neighbour
hurts them alike.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["copies", "alternate"]


def copies(name: str, choices: dict[str, Callable[..., str] | None]) -> tuple[dict, Any, int]:
    """``(models by side, the rows each predicts, batch size)``: four batches of ``name``."""
    from benchmarks import models
    from nexec.planner import algorithms

    s = models.spec(name)
    x, _ = models.data(name)
    batch = s["batch"]
    rows = x[:batch * 4]
    model_choice = algorithms.modelled_choice
    built = {}
    for side, choice in choices.items():
        algorithms.modelled_choice = choice or model_choice
        try:
            built[side] = models.build(name)
            models.compile_model(built[side], name)
        finally:
            algorithms.modelled_choice = model_choice
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
