"""A model mixing built-in and plugin layers (Conv2D + MaxPooling2D (plugin) +
BatchNormalization + Dropout + Dense): it trains, predicts, saves, round-trips and plans memory like any other."""
import numpy as np
import pytest

import nexec
from nexec import Input, Model, Sequential, layers, optimizers
from nexec.models import model_from_json
from nexec.testing import check_gradients, weights_by_name

from tests.plugins.helpers import training_mode_gradients



def _mixed(dtype="float32", seed=3):
    x = Input(shape=(8, 8, 1), dtype=dtype, name="image")
    h = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    h = layers.MaxPooling2D(name="pool")(h)
    h = layers.BatchNormalization(name="bn")(h)
    h = layers.Flatten(name="flat")(h)
    h = layers.Dropout(0.25, seed=seed, name="drop")(h)
    return Model(x, layers.Dense(2, activation="softmax", name="head")(h), name="mixed")


def _data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8, 8, 1)).astype("float32")
    labels = (x[:, :4].mean(axis=(1, 2, 3)) > x[:, 4:].mean(axis=(1, 2, 3))).astype(int)
    return x, labels


def test_discovered_without_importing_the_plugins():
    import subprocess
    import sys

    code = ("import sys; import nexec; before = 'nexec_pooling' in sys.modules; "
            "from nexec import layers; "
            "print(layers.MaxPooling3D.__module__, layers.Dropout.__module__, before)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.split() == ["nexec_pooling.layers", "nexec.layers.regularization",
                                   "False"], done.stderr


def test_trains_and_the_loss_falls():
    nexec.set_random_seed(0)
    model = _mixed()
    x, labels = _data()
    model.compile(optimizer=optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, labels, epochs=8, batch_size=16, verbose=0, validation_split=0.25)
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses
    assert "val_loss" in history.history
    bn = model.get_layer("bn")
    assert not np.array_equal(bn.moving_mean, np.zeros(4))  # fit updated the moving stats
    p1, p2 = model.predict(x[:5]), model.predict(x[:5])
    np.testing.assert_array_equal(p1, p2)  # no dropout at inference
    np.testing.assert_allclose(p1.sum(axis=1), 1.0, rtol=1e-5)


def test_summary_json_weights_and_memory_plan(tmp_path):
    model = _mixed()
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    for row in ("pool (MaxPooling2D)", "bn (BatchNormalization)", "drop (Dropout)"):
        assert row in text
    assert "Non-trainable params: 8" in text
    copy = model_from_json(model.to_json())
    assert copy.get_config() == model.get_config()
    copy.set_weights(model.get_weights())
    x, _ = _data(6)
    np.testing.assert_array_equal(copy.predict(x), model.predict(x))
    path = str(tmp_path / "mixed.weights.npz")
    model.save_weights(path)
    other = _mixed()
    other.load_weights(path)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))
    for training in (True, False):
        plan = model.memory_plan(batch_size=16, training=training)
        plan.verify()
    roles = {b.name.rsplit(".", 1)[-1]: b.role for b in plan.buffers}
    assert "argmax" not in roles and "mask" not in roles  # inference keeps nothing for backward
    trained = model.memory_plan(batch_size=16, training=True)
    saved = sorted(b.name.rsplit(".", 1)[-1] for b in trained.buffers if b.role == "saved"
                   and "." in b.name)
    assert {"argmax", "stats", "mask"} <= set(saved)


def test_training_mode_gradients_of_the_whole_model():
    """Finite differences through the training forward (batch statistics, a fixed mask)."""
    nexec.set_random_seed(5)
    model = _mixed("float64", seed=11)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 8, 8, 1))
    y = rng.random((4, 2))
    drop = model.get_layer("drop")
    loss_fn, grads = training_mode_gradients(model, x, y, "categorical_crossentropy",
                                             before_forward=lambda: drop.reset_seed(11))
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def test_sequential_with_plugin_layers():
    model = Sequential([Input(shape=(6, 6, 2)), layers.AveragePooling2D(),
                        layers.BatchNormalization(), layers.GlobalAveragePooling2D(),
                        layers.Dropout(0.5), layers.Dense(3)])
    assert model.predict(np.zeros((2, 6, 6, 2), "float32")).shape == (2, 3)
    copy = model_from_json(model.to_json())
    assert [type(l).__name__ for l in copy.layers] == [type(l).__name__ for l in model.layers]


@pytest.mark.parametrize("layer", ["MaxPooling3D", "GaussianDropout", "AlphaDropout"])
def test_plugin_layer_types_are_listed_by_the_registry(layer):
    (owner,) = [p["name"] for p in nexec.plugins_info()
                if layer in p["provides"].get("layers", [])]
    assert owner.startswith(("nexec-pooling", "nexec-regularization"))


def test_dropout_written_over_a_pooled_input_in_training():
    """MaxPooling2D keeps nothing for backward, so in training the Dropout after it may
    write over its input; gradients stay right."""
    x = Input(shape=(4, 4, 2), dtype="float64")
    h = layers.Conv2D(2, 3, padding="same", activation="tanh")(x)
    drop = layers.Dropout(0.5, seed=4, name="drop")
    h = drop(layers.MaxPooling2D()(h))
    model = Model(x, layers.Dense(2)(layers.GlobalAveragePooling2D()(h)))
    plan = model.memory_plan(batch_size=3, training=True)
    plan.verify()
    assert "drop" in plan.in_place  # Dropout at inference writes over its input
    rng = np.random.default_rng(2)
    loss_fn, grads = training_mode_gradients(model, rng.normal(size=(3, 4, 4, 2)),
                                             rng.normal(size=(3, 2)), "mse",
                                             before_forward=lambda: drop.reset_seed(4))
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)
