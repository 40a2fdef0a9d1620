"""Every optimizer, clipping mode, weight decay and schedule against loss curves and final
weights recorded from Keras 3 (JAX backend) on the same tiny model, data and initial
weights (``tests/keras_reference/record_optimizers.py`` wrote the fixture)."""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from nexec import Input, Model, layers, optimizers
from nexec.optimizers import schedules

FIXTURE = pathlib.Path(__file__).parents[1] / "keras_reference" / "optimizers.json"
RECORDED = json.loads(FIXTURE.read_text())


def data():
    """As the recording script's ``data()`` (same generator, same order of draws)."""
    rng = np.random.default_rng(15)
    x = rng.standard_normal((24, 3)).astype(np.float32)
    y = rng.standard_normal((24, 2)).astype(np.float32)
    weights = [rng.standard_normal((3, 4)).astype(np.float32) * 0.7,
               rng.standard_normal(4).astype(np.float32) * 0.1,
               rng.standard_normal((4, 2)).astype(np.float32) * 0.7,
               rng.standard_normal(2).astype(np.float32) * 0.1]
    return x, y, weights


CASES = {
    "adamw": ("AdamW", {"learning_rate": 0.01}),
    "adamw_wd": ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.3}),
    "nadam": ("Nadam", {"learning_rate": 0.01}),
    "adamax": ("Adamax", {"learning_rate": 0.02}),
    "adagrad": ("Adagrad", {"learning_rate": 0.1}),
    "adadelta": ("Adadelta", {"learning_rate": 1.0}),
    "adadelta_default": ("Adadelta", {}),
    "lion": ("Lion", {"learning_rate": 0.003}),
    "adam_clipnorm": ("Adam", {"learning_rate": 0.01, "clipnorm": 0.1}),
    "sgd_clipnorm": ("SGD", {"learning_rate": 0.1, "clipnorm": 0.2}),
    "sgd_global_clipnorm": ("SGD", {"learning_rate": 0.1, "global_clipnorm": 0.3}),
    "sgd_clipvalue": ("SGD", {"learning_rate": 0.1, "clipvalue": 0.05}),
    "sgd_weight_decay": ("SGD", {"learning_rate": 0.1, "momentum": 0.5, "weight_decay": 0.2}),
    "rmsprop_weight_decay_clipnorm": ("RMSprop", {"learning_rate": 0.01, "weight_decay": 0.1,
                                                  "clipnorm": 0.5}),
    "nadam_global_clipnorm": ("Nadam", {"learning_rate": 0.01, "global_clipnorm": 0.2}),
    "sgd_exponential": ("SGD", {"learning_rate": schedules.ExponentialDecay(0.2, 3, 0.5)}),
    "sgd_exponential_staircase": ("SGD", {"learning_rate": schedules.ExponentialDecay(
        0.2, 3, 0.5, staircase=True)}),
    "sgd_piecewise": ("SGD", {"learning_rate": schedules.PiecewiseConstantDecay(
        [2, 5], [0.2, 0.05, 0.01])}),
    "adam_cosine_warmup": ("Adam", {"learning_rate": schedules.CosineDecay(
        0.0, 8, alpha=0.1, warmup_target=0.05, warmup_steps=3)}),
    "sgd_cosine": ("SGD", {"learning_rate": schedules.CosineDecay(0.2, 6)}),
    "sgd_inverse_time": ("SGD", {"learning_rate": schedules.InverseTimeDecay(0.2, 2, 0.7)}),
    "adamw_polynomial": ("AdamW", {"learning_rate": schedules.PolynomialDecay(
        0.02, 7, power=2.0, cycle=True)}),
}


def model(weights):
    x_in = Input(shape=(3,))
    out = layers.Dense(2)(layers.Dense(4, activation="tanh")(x_in))
    m = Model(x_in, out)
    m.set_weights(weights)
    return m


def test_every_recorded_case_is_tested():
    assert set(CASES) == set(RECORDED["cases"])


@pytest.mark.parametrize("case", sorted(CASES))
def test_loss_curve_and_weights_match_keras(case):
    cls, config = CASES[case]
    x, y, weights = data()
    m = model(weights)
    m.compile(optimizer=getattr(optimizers, cls)(**config), loss="mse")
    hist = m.fit(x, y, batch_size=RECORDED["batch_size"], epochs=RECORDED["epochs"],
                 shuffle=False, verbose=0)
    want = RECORDED["cases"][case]
    np.testing.assert_allclose(hist.history["loss"], want["loss"], rtol=1e-5)
    for got, ref in zip(m.get_weights(), want["weights"]):
        np.testing.assert_allclose(got, np.array(ref, np.float32), rtol=1e-4, atol=1e-6)
    assert m.optimizer.iterations == RECORDED["epochs"] * 3
