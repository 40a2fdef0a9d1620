"""``sample_weight=`` and ``class_weight=`` against Keras 3 numbers recorded from the same
initial weights and data (``tests/keras_reference/record_sample_weights.py``; float64,
SGD, no shuffling), and the executor's weighted programs.

The Keras comparisons hold to 1e-6 relative (the issue asks 1e-5): Keras 3 on JAX computes
these float64 models ~1e-9 away from NumPy float64, which nexec matches to the last bits."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nexec import Input, Model, layers, losses
from nexec.optimizers import SGD
from nexec.testing import assert_close

RECORDED = json.loads((Path(__file__).parents[1] / "keras_reference" / "sample_weights.json")
                      .read_text())
N = 16


def data(kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 4))
    w1 = rng.normal(scale=0.5, size=(4, 5))
    labels = rng.integers(0, 3, N)
    y = {"reg": rng.uniform(0.1, 2.0, (N, 3)), "onehot": np.eye(3)[labels],
         "sparse": labels, "binary": (rng.random((N, 1)) > 0.5) * 1.0}[kind]
    sw = np.random.default_rng(5).uniform(0.0, 2.0, N)
    return x, y, w1, sw


def build(units: int, activation: str, w1: np.ndarray) -> Model:
    inp = Input((4,), dtype="float64")
    h = layers.Dense(5, activation="tanh")(inp)
    model = Model(inp, layers.Dense(units, activation=activation)(h))
    w2 = np.random.default_rng(1).normal(scale=0.5, size=(5, units))
    model.set_weights([w1, np.zeros(5), w2, np.zeros(units)])
    return model


def weight_kwargs(weights: str, sw: np.ndarray) -> dict:
    if weights == "sw":
        return {"sample_weight": sw}
    if weights == "sw2d":
        return {"sample_weight": sw[:, None]}
    return {"class_weight": eval(weights)}


def two_outputs(w1: np.ndarray) -> Model:
    inp = Input((4,), dtype="float64")
    h = layers.Dense(5, activation="tanh")(inp)
    model = Model(inp, [layers.Dense(3, activation="softmax", name="cls")(h),
                        layers.Dense(2, name="reg")(h)])
    rng = np.random.default_rng(1)
    model.set_weights([w1, np.zeros(5), rng.normal(scale=0.5, size=(5, 3)), np.zeros(3),
                       rng.normal(scale=0.5, size=(5, 2)), np.zeros(2)])
    model.compile(optimizer=SGD(0.05), loss=["categorical_crossentropy", "mse"],
                  loss_weights=[1.0, 0.5])
    return model


@pytest.mark.parametrize("case", sorted(RECORDED["single"]))
def test_single_output_matches_keras(case):
    rec = RECORDED["single"][case]
    x, y, w1, sw = data(rec["targets"])
    model = build(rec["units"], rec["activation"], w1)
    model.compile(optimizer=SGD(0.05), loss=eval(rec["loss"].replace("keras.losses", "losses"),
                                                 {"losses": losses}), metrics=["accuracy"])
    kw = weight_kwargs(rec["weights"], sw)
    assert_close(np.array(model.evaluate(x, y, batch_size=5, verbose=0, sample_weight=sw)),
                 np.array(rec["before"]["evaluate"]), rtol=1e-6)
    assert_close(np.array(model.test_on_batch(x[:7], y[:7], sample_weight=sw[:7])),
                 np.array(rec["before"]["test_on_batch"]), rtol=1e-6)
    hist = model.fit(x, y, epochs=4, batch_size=8, shuffle=False, verbose=0, **kw)
    assert_close(np.array(hist.history["loss"]), np.array(rec["curve"]), rtol=1e-6)
    # Metrics are not weighted (Keras 3 weighs only ``weighted_metrics``).
    assert_close(np.array(hist.history["accuracy"]), np.array(rec["accuracy"]), rtol=1e-12)
    for expected in rec["train_on_batch"]:
        got = model.train_on_batch(x[:6], y[:6], **{k: (v[:6] if k == "sample_weight" else v)
                                                    for k, v in kw.items()})
        assert_close(np.array(got), np.array(expected), rtol=1e-6)


@pytest.mark.parametrize("case", sorted(RECORDED["validation"]))
def test_validation_weights_match_keras(case):
    rec = RECORDED["validation"][case]
    x, y, w1, sw = data("onehot")
    kw = {"validation_data_3_tuple": {"validation_data": (x[:6], y[:6], sw[:6])},
          "validation_split_sw": {"validation_split": 0.25, "sample_weight": sw},
          "validation_split_cw": {"validation_split": 0.25,
                                  "class_weight": {0: 0.5, 1: 2.0, 2: 1.5}}}[case]
    model = build(3, "softmax", w1)
    model.compile(optimizer=SGD(0.05), loss="categorical_crossentropy")
    hist = model.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0, **kw)
    assert_close(np.array(hist.history["loss"]), np.array(rec["curve"]), rtol=1e-6)
    assert_close(np.array(hist.history["val_loss"]), np.array(rec["val_curve"]), rtol=1e-6)


def _multi_kwargs(case: str) -> dict:
    _, _, _, sw = data("onehot")
    sw_b = np.random.default_rng(6).uniform(0.0, 3.0, N)
    return {"per_output_list": {"sample_weight": [sw, sw_b]},
            "per_output_dict": {"sample_weight": {"reg": sw_b, "cls": sw}},
            "one_array_for_all": {"sample_weight": sw}}[case]


@pytest.mark.parametrize("case", sorted(RECORDED["multi"]) + ["per_output_dict"])
def test_multi_output_weights_match_keras(case):
    # Keras matches a dict of weights only to a model with dict outputs; nexec takes a dict
    # by output name for any model, with the numbers of the per-output list.
    rec = RECORDED["multi"]["per_output_list" if case == "per_output_dict" else case]
    x, y, w1, _ = data("onehot")
    reg = np.random.default_rng(3).uniform(0.1, 2.0, (N, 2))
    model = two_outputs(w1)
    kw = _multi_kwargs(case)
    hist = model.fit(x, [y, reg], epochs=3, batch_size=8, shuffle=False, verbose=0, **kw)
    for key in ("loss", "cls_loss", "reg_loss"):
        assert_close(np.array(hist.history[key]), np.array(rec["history"][key]), rtol=1e-6,
                     what=key)
    ev = model.evaluate(x, [y, reg], batch_size=5, verbose=0, return_dict=True, **kw)
    for key in ("loss", "cls_loss", "reg_loss"):
        assert_close(ev[key], rec["evaluate"][key], rtol=1e-6, what=key)


def _temporal() -> tuple[Model, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(N, 3, 4))
    y = rng.normal(size=(N, 3, 2))
    sw_t = rng.uniform(0.0, 2.0, (N, 3))
    w = rng.normal(scale=0.5, size=(4, 2))
    inp = Input((3, 4), dtype="float64")
    model = Model(inp, layers.Dense(2)(inp))
    model.set_weights([w, np.zeros(2)])
    model.compile(optimizer=SGD(0.1), loss="mse")
    return model, x, y, sw_t


def test_weights_per_time_step_match_keras():
    rec = RECORDED["temporal"]["per_step"]
    model, x, y, sw_t = _temporal()
    hist = model.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0, sample_weight=sw_t)
    assert_close(np.array(hist.history["loss"]), np.array(rec["curve"]), rtol=1e-6)
    assert_close(model.evaluate(x, y, verbose=0, sample_weight=sw_t), rec["evaluate"],
                 rtol=1e-6)


def test_per_sample_weights_on_a_time_axis_weigh_every_step():
    """Keras 3 fails to broadcast ``(n,)`` weights against ``(n, steps)`` losses; nexec
    gives each sample's weight to all its steps."""
    model, x, y, sw_t = _temporal()
    sw = sw_t[:, 0]
    assert_close(model.evaluate(x, y, verbose=0, sample_weight=sw),
                 model.evaluate(x, y, verbose=0, sample_weight=np.repeat(sw[:, None], 3, 1)),
                 rtol=1e-14)


def test_unit_weights_train_exactly_as_no_weights():
    x, y, w1, _ = data("onehot")
    a, b = build(3, "softmax", w1), build(3, "softmax", w1)
    for m in (a, b):
        m.compile(optimizer=SGD(0.05), loss="categorical_crossentropy", metrics=["accuracy"])
    ha = a.fit(x, y, epochs=2, batch_size=5, shuffle=False, verbose=0)
    hb = b.fit(x, y, epochs=2, batch_size=5, shuffle=False, verbose=0, sample_weight=np.ones(N))
    assert ha.history == hb.history
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_unweighted_programs_have_no_weights_and_weighted_ones_are_separate():
    x, y, w1, sw = data("onehot")
    model = build(3, "softmax", w1)
    model.compile(optimizer=SGD(0.05), loss="categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    ex = model._trainer.train_executor
    plain = ex.program(8)
    assert plain.weights == [] and not ex._weights
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, sample_weight=sw)
    weighted = ex.program(8, True)
    assert weighted is not plain and ex.program(8) is plain
    assert [tuple(w.shape) for w in weighted.weights] == [(8,)]
    assert len(weighted.backward) == len(plain.backward) + 1  # scale_rows


def test_zero_weights_leave_the_model_unchanged():
    x, y, w1, _ = data("onehot")
    model = build(3, "softmax", w1)
    model.compile(optimizer=SGD(0.5), loss="categorical_crossentropy")
    before = model.get_weights()
    assert model.train_on_batch(x, y, sample_weight=np.zeros(N)) == 0.0
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_weighted_steps_compile_as_one_call():
    """``jit_step=True``: the weights are one more memory of the compiled step."""
    x, y, w1, sw = data("sparse")
    ref, jit = build(3, "softmax", w1), build(3, "softmax", w1)
    ref.compile(optimizer=SGD(0.05), loss="sparse_categorical_crossentropy")
    jit.compile(optimizer=SGD(0.05), loss="sparse_categorical_crossentropy", jit_step=True)
    kw = {"epochs": 2, "batch_size": 8, "shuffle": False, "verbose": 0, "sample_weight": sw}
    assert_close(np.array(jit.fit(x, y, **kw).history["loss"]),
                 np.array(ref.fit(x, y, **kw).history["loss"]), rtol=1e-12)


def test_elementwise_custom_loss_trains_with_weights():
    """A plugin-style per-element loss gets a generated weighted value kernel."""
    x, y, w1, sw = data("reg")
    custom = losses.Loss("my_se", elementwise=(lambda p, t: (p - t) * (p - t),
                                               lambda p, t: 2.0 * (p - t)))
    a, b = build(3, "linear", w1), build(3, "linear", w1)
    a.compile(optimizer=SGD(0.05), loss=custom)
    b.compile(optimizer=SGD(0.05), loss="mse")
    kw = {"epochs": 2, "batch_size": 8, "shuffle": False, "verbose": 0, "sample_weight": sw}
    assert_close(np.array(a.fit(x, y, **kw).history["loss"]),
                 np.array(b.fit(x, y, **kw).history["loss"]), rtol=1e-12)


def test_cuda_weighted_training_matches_the_cpu():
    pytest.importorskip("numba.cuda")
    from nexec.kernels.cuda import backend

    if not backend.is_available():
        pytest.skip("CUDA not runnable: " + backend.unavailable_reason())
    x, y, w1, sw = data("onehot")
    curves = []
    for device in ("cpu", "cuda"):
        model = build(3, "softmax", w1)
        model.compile(optimizer=SGD(0.05), loss="categorical_crossentropy", device=device)
        curves.append(model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0,
                                sample_weight=sw).history["loss"])
    assert_close(np.array(curves[1]), np.array(curves[0]), rtol=1e-6)


def test_weighted_steps_allocate_nothing_after_warm_up():
    from nexec.testing import array_arguments, count_allocations

    rng = np.random.default_rng(0)
    x = rng.random((64, 4))
    y = np.eye(3)[rng.integers(0, 3, 64)]
    w = rng.uniform(0.0, 2.0, 64)
    model = build(3, "softmax", data("onehot")[2])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, sample_weight=w)
    ex = model._trainer.train_executor
    prog = ex.program(16, True)
    losses_, counts = [0.0], [0] * len(prog.metrics)

    def steps(k):
        for i in range(k):
            ex.load(prog, [x, y, w], i * 16, (i + 1) * 16)
            ex.train_step(prog, losses_, counts)

    steps(2)
    nrt, numpy_blocks = count_allocations(lambda: steps(3))
    assert nrt == 3 * array_arguments(prog), (nrt, array_arguments(prog))
    assert numpy_blocks == []
    assert np.isfinite(losses_[0])


def test_steps_per_epoch_slices_the_weights_with_the_data():
    x, y, w1, sw = data("onehot")
    a, b = build(3, "softmax", w1), build(3, "softmax", w1)
    for m in (a, b):
        m.compile(optimizer=SGD(0.05), loss="categorical_crossentropy")
    ha = a.fit(x, y, epochs=4, batch_size=4, shuffle=False, verbose=0, sample_weight=sw)
    hb = b.fit(x, y, epochs=8, batch_size=4, shuffle=False, verbose=0, sample_weight=sw,
               steps_per_epoch=2)  # two epochs per pass over the data
    assert len(hb.history["loss"]) == 8
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    halves = np.array(hb.history["loss"]).reshape(4, 2).mean(axis=1)
    assert_close(halves, np.array(ha.history["loss"]), rtol=1e-12)
