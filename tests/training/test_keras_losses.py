"""Loss curves and "accuracy" against Keras 3 recorded from the same initial weights
(tests/keras_reference/record_losses.py; float64, SGD, no shuffling)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers, losses
from nexec.optimizers import SGD
from nexec.testing import assert_close

RECORDED = json.loads((Path(__file__).parents[1] / "keras_reference" / "losses.json")
                      .read_text())


def data(kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4))
    w1 = rng.normal(scale=0.5, size=(4, 5))
    labels = rng.integers(0, 3, 16)
    y = {"reg": rng.uniform(0.1, 2.0, (16, 3)), "onehot": np.eye(3)[labels],
         "sparse": labels, "binary": (rng.random((16, 1)) > 0.5) * 1.0}[kind]
    return x, y, w1


def build(units: int, activation: str, w1: np.ndarray) -> Model:
    inp = Input((4,), dtype="float64")
    h = layers.Dense(5, activation="tanh")(inp)
    model = Model(inp, layers.Dense(units, activation=activation)(h))
    w2 = np.random.default_rng(1).normal(scale=0.5, size=(5, units))
    model.set_weights([w1, np.zeros(5), w2, np.zeros(units)])
    return model


def keras_loss(expr: str):
    """The recorded Keras expression, with nexec's losses module in place of Keras'."""
    return eval(expr.replace("keras.losses", "losses"), {"losses": losses})


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_loss_curve_matches_keras(case):
    rec = RECORDED[case]
    x, y, w1 = data(rec["targets"])
    model = build(rec["units"], rec["activation"], w1)
    model.compile(optimizer=SGD(0.05), loss=keras_loss(rec["loss"]), metrics=["accuracy"])
    hist = model.fit(x, y, epochs=len(rec["curve"]), batch_size=8, shuffle=False, verbose=0)
    assert_close(np.array(hist.history["loss"]), np.array(rec["curve"]), rtol=1e-5)
    assert_close(np.array(hist.history["accuracy"]), np.array(rec["accuracy"]), rtol=1e-12)


def test_loss_object_round_trips_through_save(tmp_path):
    x, y, w1 = data("onehot")
    model = build(3, "linear", w1)
    loss = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    model.compile(optimizer=SGD(0.05), loss=loss)
    assert loss.get_config() == {"name": "categorical_crossentropy", "from_logits": True,
                                 "label_smoothing": 0.1}
    before = model.evaluate(x, y, verbose=0)
    model.save(tmp_path / "m.nexec")
    loaded = nexec.load_model(tmp_path / "m.nexec")
    assert loaded._trainer.losses[0].config["from_logits"] is True
    assert_close(loaded.evaluate(x, y, verbose=0), before, rtol=1e-12)


def test_a_plain_function_gets_an_error_naming_what_is_accepted():
    model = build(3, "linear", data("reg")[2])

    def my_loss(y_true, y_pred):
        return ((y_true - y_pred) ** 2).mean()

    with pytest.raises(TypeError, match=r"my_loss.*elementwise=\(fn, dfn\).*docs/keras.md"):
        model.compile(optimizer="sgd", loss=my_loss)


def test_an_elementwise_custom_loss_trains_like_the_builtin():
    x, y, w1 = data("reg")
    mae = losses.Loss("my_mae", elementwise=(lambda p, t: abs(p - t),
                                             lambda p, t: 1.0 if p > t else -1.0))
    curves = []
    for loss in (mae, "mae"):
        model = build(3, "linear", w1)
        model.compile(optimizer=SGD(0.05), loss=loss)
        curves.append(model.fit(x, y, epochs=2, batch_size=8, shuffle=False,
                                verbose=0).history["loss"])
    assert_close(np.array(curves[0]), np.array(curves[1]), rtol=1e-12)


def test_objects_called_on_arrays_give_the_batch_mean():
    y = np.array([[0.0, 1.0], [0.0, 0.0]])
    p = np.array([[0.6, 0.4], [0.4, 0.6]])
    assert_close(losses.MeanSquaredError()(y, p), (0.36 + 0.26) / 2, rtol=1e-12)
    assert_close(losses.mean_absolute_error(y, p), np.array([0.6, 0.5]), rtol=1e-12)
    with pytest.raises(TypeError, match="unexpected argument"):
        losses.Huber(delt=2.0)
