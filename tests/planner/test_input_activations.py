"""GELU and SiLU (derivative needs the input) are split off fusing ops, never folded, and
train correctly through the executor."""
from __future__ import annotations

import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers
from nexec.testing import check_gradients, model_gradients, weights_by_name


@pytest.fixture(autouse=True)
def fresh_session():
    nexec.clear_session()
    yield
    nexec.clear_session()


def steps(plan):
    return [(op.layer.name, op.kind, op.activation, list(op.fused)) for op in plan.ops]


def test_dense_gelu_becomes_dense_then_its_own_activation():
    x = Input(shape=(4,), name="x")
    y = layers.Dense(3, activation="gelu", name="d")(x)
    z = layers.Activation("swish", name="s")(layers.Dense(2, name="e")(y))
    plan = Model(x, z).plan()
    assert steps(plan) == [("d", "Dense", "linear", []), ("d/gelu", "Activation", "gelu", []),
                           ("e", "Dense", "linear", []), ("s", "Activation", "swish", [])]
    assert plan.graph.outputs == [plan.ops[-1].output]
    d, a = plan.ops[:2]
    assert a.inputs == [d.output] and plan.graph.tensors[d.output].consumers == [1]


def test_other_new_activations_still_fold():
    x = Input(shape=(4,), name="x")
    z = layers.Activation("elu", name="a")(layers.Dense(2, name="e")(x))
    assert steps(Model(x, z).plan()) == [("e", "Dense", "elu", ["a"])]


@pytest.mark.parametrize("act", ["gelu", "silu"])
def test_gradients_through_split_and_standalone(act):
    rng = np.random.default_rng(0)
    x_in = Input(shape=(4,), dtype="float64")
    h = layers.Dense(5, activation=act)(x_in)
    h = layers.Activation(act)(layers.Dense(5)(h))
    model = Model(x_in, layers.Dense(2)(h))
    loss_fn, grads = model_gradients(model, rng.normal(size=(6, 4)), rng.normal(size=(6, 2)),
                                     "mse")
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def test_gelu_model_fits_and_predicts():
    rng = np.random.default_rng(1)
    x_in = Input(shape=(3,))
    model = Model(x_in, layers.Dense(1)(layers.Dense(8, activation="gelu")(x_in)))
    model.compile(optimizer=nexec.optimizers.Adam(0.05), loss="mse")
    x = rng.normal(size=(64, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    hist = model.fit(x, y, epochs=30, batch_size=16, verbose=0)
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]
    assert model.predict(x, verbose=0).shape == (64, 1)
