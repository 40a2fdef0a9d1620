"""The step profiler: every call of a step timed, attributed to the layer, loss or optimizer
that made it, and run exactly as the executor runs it."""
import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers, optimizers
from nexec.checks import ArgumentError
from nexec.runtime.profiling import OTHER, profile_program


def _branched():
    """Two Dense read the same tensor: its gradient is a sum the executor adds (a call with
    no origin), and a residual Add."""
    x_in = Input(shape=(6,))
    a = layers.Dense(5, activation="relu", name="a")(x_in)
    b = layers.Dense(5, activation="tanh", name="b")(a)
    c = layers.Dense(5, name="c")(a)
    s = layers.Add(name="add")([b, c])
    return Model(x_in, layers.Dense(3, activation="softmax", name="out")(s))


def _data(n=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    return x, np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]


def _model():
    nexec.clear_session()
    nexec.set_random_seed(3)
    model = _branched()
    model.compile(optimizer=optimizers.Adam(1e-2), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _bound(model, x, y, training):
    t = model._trainer
    ex = t.train_executor if training else t.predictor.executor
    prog = ex.program(len(x))
    ex.load(prog, [x, y] if training else [x], 0, len(x))
    return ex, prog


def test_forward_profile_names_each_layer_in_run_order():
    model = _model()
    x, y = _data()
    ex, prog = _bound(model, x, y, training=False)
    prof = profile_program(ex, prog, "forward", steps=3)
    expected = [f"layer '{op.layer.name}' ({type(op.layer).__name__})"
                for op in model.plan().graph.ops]
    assert [p.part for p in prof.parts] == expected
    assert {p.phase for p in prof.parts} == {"forward"}
    assert sum(p.calls for p in prof.parts) == len(prog.calls["forward"])
    assert all(p.seconds > 0 for p in prof.parts)
    assert prof.step_seconds >= max(p.seconds for p in prof.parts)
    text = str(prof)
    assert "forward step, batch 8, median of 3 steps" in text
    assert "layer 'add' (Add)" in text


def test_training_profile_runs_the_steps_the_executor_runs():
    """steps + 1 profiled training steps leave the weights bit for bit where steps + 1
    executor steps do; every call is counted once, none is left unattributed."""
    x, y = _data()
    model = _model()
    ex, prog = _bound(model, x, y, training=True)
    prof = profile_program(ex, prog, "train", steps=2)
    profiled = [w.copy() for w in model.get_weights()]

    model = _model()
    ex, prog = _bound(model, x, y, training=True)
    for _ in range(3):
        ex.train_step(prog, [0.0], [0] * len(prog.metric_slots))
    for u, v in zip(profiled, model.get_weights()):
        assert u.tobytes() == v.tobytes()

    phases = ("forward", "loss", "metric", "backward", "update")
    assert sum(p.calls for p in prof.parts) == sum(len(prog.calls.get(ph, [])) for ph in phases)
    parts = {(p.part, p.phase) for p in prof.parts}
    assert ("optimizer", "update") in parts
    assert ("loss 'categorical_crossentropy' of output 0", "loss") in parts
    assert ("layer 'a' (Dense)", "backward") in parts
    assert not any(p.part == OTHER for p in prof.parts)
    assert set(prof.by_part()) == {p.part for p in prof.parts}


def test_bad_arguments_are_refused_before_any_step():
    model = _model()
    x, y = _data()
    ex, prog = _bound(model, x, y, training=False)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ArgumentError, match="mode must be one of"):
        profile_program(ex, prog, "fly")
    with pytest.raises(ArgumentError, match="steps must be an integer >= 1; got 0"):
        profile_program(ex, prog, "forward", steps=0)
    with pytest.raises(ArgumentError, match="needs a training program"):
        profile_program(ex, prog, "train")
    for u, v in zip(before, model.get_weights()):
        assert u.tobytes() == v.tobytes()
