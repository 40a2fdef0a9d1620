"""Fingerprints of ``build_schedule`` for a fixed set of models, and the script that saves them.

``schedule_fingerprints.json`` was written by the planner *before* ``build_schedule`` was split
into stages (``python -m tests.planner.schedule_fingerprints`` from the repository root writes
it again). It keeps a SHA-256 of each fingerprint, not the fingerprint, to stay small;
``--full PATH`` writes the whole fingerprints, to diff two commits when the test fails.
``test_schedule_stages.py`` recomputes every fingerprint with the current planner and compares:
any change of a buffer's name, role, shape, dtype, lifetime, view or offset, of the schedule's
tables or of the memory plan's figures fails the test.

The random-DAG recipes were drawn once (derandomized Hypothesis) and are stored in the JSON,
so the test rebuilds exactly the same models.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import nexec  # noqa: E402
from nexec import Input, Model, layers  # noqa: E402
from nexec.planner.algorithms import use_conv_algorithm  # noqa: E402
from nexec.planner.schedule import build_schedule  # noqa: E402
from nexec.devices.threads import get_num_threads, set_num_threads  # noqa: E402
from tests.planner.conftest import (  # noqa: E402
    build_model,
    conv_inception,
    dense_inception,
    inception_cnn,
    mlp,
    residual_stack,
)

FIXTURE = Path(__file__).with_name("schedule_fingerprints.json")
RECIPES = 8  # random DAG models


def _mixed() -> Model:
    """Built-in and plugin layers: saved workspaces (pool argmax, dropout mask), BN stats."""
    x = Input(shape=(8, 8, 1), name="image")
    h = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    h = layers.MaxPooling2D(name="pool")(h)
    h = layers.BatchNormalization(name="bn")(h)
    h = layers.Flatten(name="flat")(h)
    h = layers.Dropout(0.25, seed=3, name="drop")(h)
    return Model(x, layers.Dense(2, activation="softmax", name="head")(h), name="mixed")


def _twice() -> Model:
    """One tensor read twice by one Add (x + x) and by a Concatenate of existing tensors."""
    x = Input(shape=(5,), name="x")
    h = layers.Dense(4, name="h")(x)
    a = layers.Add(name="twice")([h, h])
    c = layers.Concatenate(name="cat")([a, h])
    r = layers.Activation("relu", name="r")(c)
    return Model(x, [layers.Dense(3, activation="softmax", name="out")(r), a])


MODELS: dict[str, Callable[[], Model]] = {
    "mlp": lambda: mlp(8, [16, 12], 4),
    "inception_cnn": lambda: inception_cnn(image=(12, 12, 3), classes=5),
    "residual_stack": lambda: residual_stack(2, width=24, classes=4),
    "dense_inception": lambda: dense_inception(),
    "dense_inception_also_read": lambda: dense_inception(also_read=True),
    "dense_inception_as_output": lambda: dense_inception(as_output=True),
    "conv_inception": lambda: conv_inception(),
    "conv_inception_also_read": lambda: conv_inception(also_read=True, as_output=True),
    "mixed_plugins": _mixed,
    "twice": _twice,
}

CPU_ONLY = {"mixed_plugins"}  # the plugins have CPU kernels only

#: (batch, training, naive, fuse_loss, threads, device) of every case of every model.
SETTINGS = [
    (16, True, False, False, 1, "cpu"),
    (64, True, False, True, 4, "cpu"),
    (16, True, True, False, 1, "cpu"),
    (7, False, False, False, 1, "cpu"),
    (16, False, True, False, 1, "cpu"),
    (16, True, False, True, 1, "cuda"),
]


def fingerprint(model: Model, batch: int, training: bool, naive: bool, fuse_loss: bool,
                threads: int, device: str) -> dict[str, Any]:
    """Everything ``build_schedule`` decides for one model and setting, as JSON values.

    Convolutions plan as im2col, the default when the fingerprints were recorded."""
    before = get_num_threads()
    set_num_threads(threads)
    try:
        with use_conv_algorithm("im2col"):
            plan = model.plan(device)
        s = build_schedule(plan, batch, training,
                           fuse_loss=(lambda out: True) if fuse_loss else None, naive=naive)
    finally:
        set_num_threads(before)
    m = s.memory
    return {
        "buffers": [[b.name, b.role, list(b.shape), b.dtype, b.first, b.last, b.view_of,
                     list(b.view), b.offset] for b in s.buffers.values()],
        "value": sorted([tid, name] for tid, name in s.value.items()),
        "grad": sorted([tid, name] for tid, name in s.grad.items()),
        "workspaces": sorted([op, phase, sorted(t.items())]
                             for (op, phase), t in s.workspaces.items()),
        "contributions": sorted([op, j, name] for (op, j), name in s.contributions.items()),
        "concat_in_place": list(s.concat_in_place),
        "in_place": list(s.in_place),
        "fused_loss": sorted([tid, fused] for tid, fused in s.fused_loss.items()),
        "memory": [m.arena_bytes, m.lower_bound_bytes, m.naive_bytes, m.steps, m.alignment,
                   list(m.concat_in_place), list(m.in_place)],
        # the arena rows repeat ``buffers`` (checked here); the others are parameters
        "records": [[r.name, r.role, list(r.shape), r.nbytes, r.offset, r.first_step,
                     r.last_step, r.view_of] for r in m.buffers if r.name not in s.buffers],
        "arena_records": [[r.name, r.nbytes, r.offset, r.first_step, r.last_step, r.view_of]
                          for r in m.buffers if r.name in s.buffers]
        == [[b.name, b.nbytes, b.offset, b.first, b.last, b.view_of]
            for b in s.buffers.values()],
    }


def _as_json(value: Any) -> Any:
    """Tuples become lists, as a JSON round trip makes them."""
    return json.loads(json.dumps(value))


def recipe_model(recipe: Any) -> Model:
    """The random-DAG model of a stored recipe (lists from JSON back to tuples)."""
    def tup(v: Any) -> Any:
        return tuple(tup(x) for x in v) if isinstance(v, list) else v

    return build_model(tup(recipe))


def cases(recipes: list[Any]) -> list[tuple[str, Callable[[], Model], tuple]]:
    """(case name, model factory, setting) of every fingerprint."""
    out = []
    factories = dict(MODELS)
    for k, recipe in enumerate(recipes):
        factories[f"dag{k}"] = (lambda r=recipe: recipe_model(r))
    for name, make in factories.items():
        for setting in SETTINGS:
            if setting[-1] == "cuda" and name in CPU_ONLY:
                continue
            out.append((f"{name} {setting}", make, setting))
    return out


def compute(recipes: list[Any]) -> dict[str, Any]:
    """Every case's fingerprint (a fresh session and seed before each model is built)."""
    result = {}
    for name, make, setting in cases(recipes):
        nexec.clear_session()
        nexec.set_random_seed(7)
        result[name] = _as_json(fingerprint(make(), *setting))
    return result


def draw_recipes(count: int) -> list[Any]:
    """``count`` random-DAG recipes, the same on every run (derandomized Hypothesis)."""
    from hypothesis import HealthCheck, given, settings

    from tests.planner.conftest import dag_recipes

    found: list[Any] = []

    @settings(derandomize=True, database=None, max_examples=count, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(dag_recipes(max_ops=7))
    def collect(recipe: Any) -> None:
        if len(found) < count and recipe not in found:
            found.append(recipe)

    collect()
    return _as_json(found)


def digest(fp: dict[str, Any]) -> dict[str, Any]:
    """What the fixture keeps of a fingerprint: its SHA-256 and a few figures to read."""
    text = json.dumps(fp, sort_keys=True, separators=(",", ":"))
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "buffers": len(fp["buffers"]),
            "arena_lower_naive": fp["memory"][:3]}


def _one_entry_a_line(data: dict[str, Any]) -> str:
    """JSON with one recipe or fingerprint a line (readable diffs, small file)."""
    def dump(v: Any) -> str:
        return json.dumps(v, separators=(",", ":"))

    recipes = ",\n".join(f"  {dump(r)}" for r in data["recipes"])
    fps = ",\n".join(f"  {dump(k)}: {dump(v)}" for k, v in data["fingerprints"].items())
    return f'{{"recipes": [\n{recipes}\n],\n"fingerprints": {{\n{fps}\n}}}}\n'


def main(argv: list[str]) -> None:
    """Writes the fixture; ``--full PATH`` writes the whole fingerprints there instead (to diff
    the planner at two commits when the test fails)."""
    if argv[:1] == ["--full"]:
        recipes = json.loads(FIXTURE.read_text())["recipes"]
        Path(argv[1]).write_text(json.dumps(compute(recipes), indent=1, sort_keys=True) + "\n")
        return
    recipes = draw_recipes(RECIPES)
    data = {"recipes": recipes,
            "fingerprints": {k: digest(v) for k, v in compute(recipes).items()}}
    FIXTURE.write_text(_one_entry_a_line(data))
    print(f"wrote {len(data['fingerprints'])} fingerprints to {FIXTURE.name}")


if __name__ == "__main__":
    main(sys.argv[1:])
