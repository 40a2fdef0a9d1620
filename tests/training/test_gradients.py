"""Whole-model gradients from the executor against central finite differences (float64)."""
import numpy as np
import pytest

from nexec import Input, Model, layers
from nexec.testing import check_gradients, model_gradients, weights_by_name


def _check(model, x, y, loss, loss_weights=None):
    loss_fn, grads = model_gradients(model, x, y, loss, loss_weights)
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def test_two_input_two_output_model_with_shared_layer_and_fan_out():
    rng = np.random.default_rng(0)
    a = Input(shape=(5,), dtype="float64", name="a")
    b = Input(shape=(4,), dtype="float64", name="b")
    shared = layers.Dense(6, activation="tanh", name="shared")
    ha = shared(layers.Dense(5, name="proj_a")(a))
    hb = shared(layers.Dense(5, activation="sigmoid", name="proj_b")(b))
    merged = layers.Concatenate(name="cat")([ha, hb])          # 12 features
    pre = layers.Dense(6, name="pre")(merged)                   # read by two layers: not fused
    act = layers.Activation("relu", name="act")(pre)
    res = layers.Add(name="res")([act, pre, ha])                # three inputs, fan-out of ha
    out1 = layers.Dense(3, activation="softmax", name="out1")(res)
    out2 = layers.Dense(2, name="out2")(layers.Concatenate(name="cat2")([res, merged]))
    model = Model([a, b], [out1, out2])
    n = 7
    x = [rng.normal(size=(n, 5)), rng.normal(size=(n, 4))]
    y1 = rng.random((n, 3))                                     # rows need not sum to 1
    y2 = rng.normal(size=(n, 2))
    _check(model, x, [y1, y2], ["categorical_crossentropy", "mse"], [1.0, 0.5])


@pytest.mark.parametrize("loss,act", [("binary_crossentropy", "sigmoid"),
                                      ("sparse_categorical_crossentropy", "softmax"),
                                      ("categorical_crossentropy", "tanh")])
def test_each_loss_through_a_small_model(loss, act):
    rng = np.random.default_rng(1)
    x_in = Input(shape=(4,), dtype="float64")
    h = layers.Dense(5, activation="relu")(x_in)
    out = layers.Dense(3, activation=act)(h)
    model = Model(x_in, out)
    x = rng.normal(size=(6, 4))
    if loss == "sparse_categorical_crossentropy":
        y = rng.integers(0, 3, 6)
    elif loss == "binary_crossentropy":
        y = rng.integers(0, 2, (6, 3)).astype(float)
    else:
        y = rng.random((6, 3))
        # tanh outputs can be negative; crossentropy clips them, so keep them positive.
        model.get_layer(model.layers[-1].name).set_weights(
            [np.abs(model.layers[-1].get_weights()[0]) * 0.1, np.full(3, 0.5)])
    _check(model, x, y, loss)


def test_inception_residual_cnn():
    rng = np.random.default_rng(2)

    def conv(f, k, s=1, act="relu"):
        return layers.Conv2D(f, k, strides=s, padding="same", activation=act)

    i = Input(shape=(6, 6, 2), dtype="float64")
    s = conv(4, 3)(i)
    m = layers.Concatenate()([conv(3, 1)(s), conv(2, 3)(conv(2, 1)(s)),
                              conv(2, 5, act="tanh")(conv(1, 1)(s))])   # in place, 7 channels
    d = conv(4, 3, 2)(m)                                                  # 3x3 output
    r = layers.Conv2D(4, 2, padding="same")(conv(4, 3)(d))                # even kernel
    d = layers.Activation("relu")(layers.Add()([d, r]))
    d = layers.Conv2D(3, 2, strides=1, padding="valid", activation="sigmoid")(d)  # 2x2
    out = layers.Dense(3, activation="softmax")(layers.Flatten()(d))
    model = Model(i, out)
    assert model.memory_plan(5, True).concat_in_place  # the branches write into their slices
    # Zero biases put ReLU pre-activations exactly on the kink wherever every input channel is
    # zero (after another ReLU): finite differences would straddle it. Move them off it.
    for layer in model.layers:
        if getattr(layer, "use_bias", False):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0.0, 0.1, bias.shape)])
    x = rng.normal(size=(5, 6, 6, 2))
    y = np.eye(3)[rng.integers(0, 3, 5)]
    _check(model, x, y, "categorical_crossentropy")
