"""The planned executor (reused memory, in-place concat) against the naive one (a buffer per
tensor, copying concat): bitwise identical predictions, losses, gradients and training.

Models are float64 with tiny shapes. The arena is filled with NaN bit patterns before a step,
so a kernel that reads memory nobody wrote in this step shows up as NaN (never equal).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import nexec
from nexec.runtime.executor import Executor
from nexec.training.optimizers import SGD
from nexec.training.trainer import predictor
from tests.planner.conftest import (build_model, conv_inception, dag_recipes, dense_inception)

RANDOM = settings(max_examples=10, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture,
                                         HealthCheck.too_slow])
N = 6


# ----- helpers ----------------------------------------------------------------------------
def poison(ex: Executor) -> None:
    """All-ones bytes: NaN in float32 and float64."""
    arena = getattr(ex, "_arena", None)
    if arena is not None:
        arena[...] = 0xFF


def inputs_for(model, n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, *t.feature_shape)) for t in model.inputs]


def losses_and_targets(model, n, seed=1):
    """A loss per output matching its activation (fused softmax/sigmoid paths included)."""
    rng = np.random.default_rng(seed)
    g = model.plan().graph
    losses, ys = [], []
    for tid, t in zip(g.outputs, model.outputs):
        prod = g.tensors[tid].producer
        act = g.ops[prod].activation if prod is not None else "linear"
        shape = (n, *t.feature_shape)
        if act == "softmax":
            y = rng.random(shape) + 0.1
            losses.append("categorical_crossentropy")
            ys.append(y / y.sum(axis=-1, keepdims=True))
        elif act == "sigmoid":
            losses.append("binary_crossentropy")
            ys.append(rng.random(shape))
        else:
            losses.append("mse")
            ys.append(rng.normal(size=shape))
    return losses, ys


def forward(ex: Executor, xs, n):
    prog = ex.program(n)
    poison(ex)
    for dst, src in zip(prog.inputs, xs):
        np.copyto(dst, src[:n])
    ex.run_forward(prog)
    return [o.copy() for o in prog.outputs]


def train_step(ex: Executor, xs, ys, n):
    """One step on the first ``n`` rows: (total, per-output losses, all parameter gradients)."""
    prog = ex.program(n)
    poison(ex)
    for dst, src in zip(prog.inputs + prog.targets, xs + ys):
        np.copyto(dst, src[:n])
    ex.store.grads[...] = np.nan  # every gradient must be written by this step
    losses = [0.0] * len(ys)
    total = ex.train_step(prog, losses, [0] * len(prog.metrics))
    return total, losses, ex.store.grads.copy()


def naive_twin(ex: Executor) -> Executor:
    return Executor(ex.plan, ex.store, ex.training, ex.objectives, ex.optimizer,
                    naive_memory=True)


def assert_same(a, b, what):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} != {b.shape}"
    if not np.array_equal(a, b):
        diff = np.abs(a - b)
        raise AssertionError(f"{what}: not bitwise equal; max |diff| {np.nanmax(diff):.3g}, "
                             f"{int(np.sum(~(a == b)))} of {a.size} entries differ "
                             f"(NaN in planned: {int(np.isnan(a).sum())}, "
                             f"naive: {int(np.isnan(b).sum())})")


def as_list(x):
    return x if isinstance(x, list) else [x]


def check_planned_equals_naive(model, n=N, small=3):
    """Predictions, then one training step (full and smaller batch), planned vs naive."""
    xs = inputs_for(model, n)
    # ----- inference
    pred = predictor(model)
    planned, naive = pred.executor, naive_twin(pred.executor)
    assert not planned.naive_memory
    want = forward(naive, xs, n)
    got = forward(planned, xs, n)
    for k, (a, b) in enumerate(zip(got, want)):
        assert not np.isnan(b).any(), f"naive output {k} has NaN: it read unwritten memory"
        assert_same(a, b, f"prediction {k}")
    for k, (a, b) in enumerate(zip(as_list(model.predict(xs, batch_size=n, verbose=0)), want)):
        assert_same(a, b, f"model.predict output {k}")
    # ----- training: one step with a zero learning rate (weights unchanged)
    losses, ys = losses_and_targets(model, n)
    model.compile(optimizer=SGD(0.0), loss=losses)
    tr = model._trainer
    planned, naive = tr.train_executor, naive_twin(tr.train_executor)
    ref = train_step(naive, xs, ys, n)
    assert not np.isnan(ref[2]).any(), "naive step left a gradient unwritten"
    for attempt in range(2):  # twice: nothing may depend on what the last step left behind
        got = train_step(planned, xs, ys, n)
        assert_same(got[0], ref[0], f"total loss (run {attempt})")
        assert_same(got[1], ref[1], f"per-output losses (run {attempt})")
        assert_same(got[2], ref[2], f"parameter gradients (run {attempt})")
    # A smaller batch after a larger one: views of the big batch's arena at its offsets.
    ref_small = train_step(naive_twin(planned), xs, ys, small)
    got_small = train_step(planned, xs, ys, small)
    assert_same(got_small[1], ref_small[1], "losses of the smaller batch")
    assert_same(got_small[2], ref_small[2], "gradients of the smaller batch")
    return planned, naive


# ----- random DAGs ------------------------------------------------------------------------
@RANDOM
@given(dag_recipes(max_ops=6))
def test_random_models_planned_and_naive_executors_agree_bitwise(recipe):
    model = build_model(recipe, "float64")
    check_planned_equals_naive(model)


@RANDOM
@given(dag_recipes(max_ops=4, final_concat=True))
def test_random_in_place_concat_agrees_bitwise_with_copying_concat(recipe):
    model = build_model(recipe, "float64")
    planned, naive = check_planned_equals_naive(model)
    assert planned.schedule.concat_in_place and not naive.schedule.concat_in_place


@RANDOM
@given(dag_recipes(max_ops=6))
def test_random_models_last_smaller_batch_predicts_the_same(recipe):
    model = build_model(recipe, "float64")
    xs = inputs_for(model, 10)
    whole = as_list(model.predict(xs, batch_size=10, verbose=0))
    parts = as_list(model.predict(xs, batch_size=4, verbose=0))  # batches of 4, 4, 2
    for k, (a, b) in enumerate(zip(parts, whole)):
        assert_same(a, b, f"output {k}, batch 4 vs batch 10")
    # And in the other order (arena sized for 4 first, then re-planned for 10).
    model2 = build_model(recipe, "float64")
    first = as_list(model2.predict(xs, batch_size=4, verbose=0))
    again = as_list(model2.predict(xs, batch_size=10, verbose=0))
    for k, (a, b, c) in enumerate(zip(first, again, whole)):
        assert_same(a, c, f"output {k}, fresh model, batch 4")
        assert_same(b, c, f"output {k}, batch 10 after batch 4")


# ----- concat in place ----------------------------------------------------------------------
INCEPTIONS = [pytest.param(dense_inception, id="dense"),
              pytest.param(conv_inception, id="conv")]


@pytest.mark.parametrize("make", INCEPTIONS)
def test_concat_in_place_matches_copying_concat(make):
    model = make("float64")
    planned, naive = check_planned_equals_naive(model, n=5, small=2)
    assert planned.schedule.concat_in_place == ["cat"]
    assert naive.schedule.concat_in_place == []


def _fit_weights(make, naive: bool, x, y):
    nexec.set_random_seed(11)  # same initial weights for both runs
    model = make("float64")
    model.compile(optimizer=SGD(0.05, momentum=0.9), loss="categorical_crossentropy")
    tr = model._trainer
    if naive:
        tr.train_executor = naive_twin(tr.train_executor)
        tr.eval_executor = naive_twin(tr.eval_executor)
    hist = model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0,
                     validation_data=(x[:3], y[:3]))
    return model.get_weights(), hist.history, tr.train_executor


@pytest.mark.parametrize("make", INCEPTIONS)
def test_fit_with_concat_in_place_matches_naive_fit(make):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10, *make("float64").inputs[0].feature_shape))  # 4 + 4 + 2 rows
    y = np.eye(3)[rng.integers(0, 3, 10)]
    w_planned, h_planned, ex = _fit_weights(make, False, x, y)
    assert ex.schedule.concat_in_place == ["cat"]
    w_naive, h_naive, ex = _fit_weights(make, True, x, y)
    assert ex.schedule.concat_in_place == []
    assert h_planned == h_naive
    for k, (a, b) in enumerate(zip(w_planned, w_naive)):
        assert_same(a, b, f"weight {k} after 3 epochs")


def test_model_input_that_is_also_an_output_trains():
    i = nexec.Input(shape=(3,), dtype="float64")
    model = nexec.Model(i, [i, nexec.layers.Dense(2)(i)])
    x = np.random.default_rng(0).normal(size=(5, 3))
    assert_same(model.predict(x, verbose=0)[0], x, "identity output")
    model.compile(optimizer=SGD(0.0), loss=["mse", "mse"])
    model.train_on_batch(x, [x, np.zeros((5, 2))])
