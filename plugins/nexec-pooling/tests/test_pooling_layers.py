"""The pooling layers inside nexec models: discovery, Keras arguments, shapes, predict,
whole-model gradients, training, summary, JSON, memory plans."""
import json

import numpy as np
import pytest

import nexec
from nexec import Input, Model, Sequential, ShapeError, layers, optimizers
from nexec.models import model_from_json
from nexec.testing import assert_close, check_gradients, model_gradients, weights_by_name

import nexec_pooling




def np_pool(x, size, kind):
    """Non-overlapping 'valid' pooling in NumPy (size divides nothing in particular)."""
    n, h, w, c = x.shape
    ho, wo = h // size, w // size
    blocks = x[:, :ho * size, :wo * size].reshape(n, ho, size, wo, size, c)
    return blocks.max(axis=(2, 4)) if kind == "max" else blocks.mean(axis=(2, 4))


# ----- discovery and arguments -----------------------------------------------------------
def test_discovered_through_the_entry_point_with_no_import():
    assert layers.MaxPooling2D is nexec_pooling.MaxPooling2D
    assert layers.AveragePooling2D is nexec_pooling.AveragePooling2D
    assert layers.GlobalAveragePooling2D is nexec_pooling.GlobalAveragePooling2D
    (info,) = [p for p in nexec.plugins_info() if p["name"].startswith("nexec-pooling")]
    assert info["error"] is None and info["version"] == nexec_pooling.__version__
    assert info["provides"] == {
        "layers": ["MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D"],
        "kernels": ["MaxPooling2D/cpu", "AveragePooling2D/cpu", "GlobalAveragePooling2D/cpu"]}


def test_keras_defaults_and_config():
    p = layers.MaxPooling2D()
    assert p.pool_size == (2, 2) and p.strides == (2, 2) and p.padding == "valid"
    q = layers.AveragePooling2D(3, strides=1, padding="SAME", name="avg")
    assert q.pool_size == (3, 3) and q.strides == (1, 1) and q.padding == "same"
    cfg = q.get_config()
    assert cfg == {"name": "avg", "trainable": True, "pool_size": [3, 3], "strides": [1, 1],
                   "padding": "same", "data_format": "channels_last"}
    again = layers.AveragePooling2D.from_config(json.loads(json.dumps(cfg)))
    assert again.get_config() == cfg
    assert layers.MaxPooling2D(pool_size=(3, 2)).strides == (3, 2)  # strides default to pool
    g = layers.GlobalAveragePooling2D(keepdims=True)
    assert g.get_config()["keepdims"] is True


@pytest.mark.parametrize("make,shape,out", [
    (lambda: layers.MaxPooling2D(), (8, 8, 3), (None, 4, 4, 3)),
    (lambda: layers.MaxPooling2D(), (7, 5, 3), (None, 3, 2, 3)),
    (lambda: layers.MaxPooling2D(2, padding="same"), (7, 5, 3), (None, 4, 3, 3)),
    (lambda: layers.AveragePooling2D(3, 2), (9, 9, 1), (None, 4, 4, 1)),
    (lambda: layers.AveragePooling2D((1, 3), (2, 1), "same"), (5, 4, 2), (None, 3, 4, 2)),
    (lambda: layers.GlobalAveragePooling2D(), (5, 6, 4), (None, 4)),
    (lambda: layers.GlobalAveragePooling2D(keepdims=True), (5, 6, 4), (None, 1, 1, 4)),
])
def test_output_shapes(make, shape, out):
    assert make()(Input(shape=shape)).shape == out


def test_bad_arguments_and_inputs_name_the_layer():
    with pytest.raises(ValueError, match="padding"):
        layers.MaxPooling2D(padding="full")
    with pytest.raises(ValueError, match="pool_size"):
        layers.MaxPooling2D(pool_size=0)
    with pytest.raises(ValueError, match="channels_last"):
        layers.AveragePooling2D(data_format="channels_first")
    with pytest.raises(ShapeError, match=r"'pool' \(MaxPooling2D\).*rank-4"):
        layers.MaxPooling2D(name="pool")(Input(shape=(8,)))
    with pytest.raises(ShapeError, match="does not fit"):
        layers.MaxPooling2D(5)(Input(shape=(4, 4, 1)))
    with pytest.raises(ShapeError, match="GlobalAveragePooling2D"):
        layers.GlobalAveragePooling2D()(Input(shape=(4, 4)))


# ----- in models ---------------------------------------------------------------------------
def _pool_model(dtype="float32"):
    x = Input(shape=(6, 6, 3), dtype=dtype, name="x")
    a = layers.MaxPooling2D(name="max")(x)
    b = layers.AveragePooling2D(name="avg")(x)
    g = layers.GlobalAveragePooling2D(name="gap")(x)
    return Model(x, [a, b, g], name="pools")


def test_predict_matches_numpy():
    model = _pool_model()
    x = np.random.default_rng(0).normal(size=(5, 6, 6, 3)).astype("float32")
    a, b, g = model.predict(x, batch_size=2)  # 2, 2, 1: a smaller last batch too
    assert_close(a, np_pool(x, 2, "max"))
    assert_close(b, np_pool(x, 2, "avg"))
    assert_close(g, x.mean(axis=(1, 2)))


def test_summary_json_round_trip_and_memory_plan():
    model = _pool_model()
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "max (MaxPooling2D)" in text and "(None, 3, 3, 3)" in text
    assert "gap (GlobalAveragePooling2D)" in text
    copy = model_from_json(model.to_json())
    assert copy.get_config() == model.get_config()
    assert type(copy.get_layer("avg")) is nexec_pooling.AveragePooling2D
    x = np.random.default_rng(1).normal(size=(3, 6, 6, 3)).astype("float32")
    for p, q in zip(model.predict(x), copy.predict(x)):
        np.testing.assert_array_equal(p, q)
    for training in (False, True):
        model.memory_plan(batch_size=4, training=training).verify()


@pytest.mark.parametrize("kind", ["max", "avg", "gap"])
def test_pooling_outputs_concatenate_in_place(kind):
    """Pooling kernels may write straight into their slice of a concatenated buffer."""
    x = Input(shape=(4, 4, 2), dtype="float64")
    make = {"max": lambda: layers.MaxPooling2D(), "avg": lambda: layers.AveragePooling2D(),
            "gap": lambda: layers.GlobalAveragePooling2D()}[kind]
    cat = layers.Concatenate(name="cat")([make()(x), make()(x)])
    out = layers.Dense(3, name="head")(layers.Flatten()(cat))
    model = Model(x, out)
    assert "cat" in model.memory_plan(batch_size=2).concat_in_place
    data = np.random.default_rng(2).normal(size=(3, 4, 4, 2))
    pooled = data.mean(axis=(1, 2)) if kind == "gap" else np_pool(data, 2, kind)
    both = np.concatenate([pooled, pooled], axis=-1).reshape(3, -1)
    kernel, bias = model.get_layer("head").get_weights()
    assert_close(model.predict(data), both @ kernel + bias)


def test_whole_model_gradients_through_every_pooling():
    rng = np.random.default_rng(3)
    x = Input(shape=(7, 7, 2), dtype="float64")
    h = layers.Conv2D(3, 3, padding="same", activation="tanh")(x)
    h = layers.MaxPooling2D(3, strides=2, padding="same")(h)          # 4x4, overlapping
    h = layers.Conv2D(4, 2, padding="same", activation="sigmoid")(h)
    h = layers.AveragePooling2D(3, strides=1, padding="same")(h)      # 4x4, border averages
    a = layers.GlobalAveragePooling2D()(h)
    b = layers.Flatten()(layers.MaxPooling2D()(h))
    out = layers.Dense(3, activation="softmax")(layers.Concatenate()([a, b]))
    model = Model(x, out)
    data = rng.normal(size=(4, 7, 7, 2))
    y = rng.random((4, 3))
    loss_fn, grads = model_gradients(model, data, y, "categorical_crossentropy")
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def test_conv_pool_dense_trains():
    nexec.set_random_seed(0)
    rng = np.random.default_rng(0)
    data = rng.normal(size=(64, 8, 8, 1)).astype("float32")
    labels = (data[:, :4].mean(axis=(1, 2, 3)) > data[:, 4:].mean(axis=(1, 2, 3))).astype(int)
    model = Sequential([Input(shape=(8, 8, 1)),
                        layers.Conv2D(4, 3, padding="same", activation="relu"),
                        layers.MaxPooling2D(),
                        layers.AveragePooling2D(),
                        layers.Flatten(),
                        layers.Dense(2, activation="softmax")])
    model.compile(optimizer=optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    history = model.fit(data, labels, epochs=8, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses


def test_max_pooling_keeps_argmax_not_its_input():
    """In training, max pooling saves int32 positions; its input can be freed after it."""
    x = Input(shape=(4, 4, 2), name="x")
    h = layers.Dense(2, name="mix")(layers.Flatten()(x))  # something trainable downstream
    pooled = layers.MaxPooling2D(name="pool")(x)
    model = Model(x, layers.Concatenate()([layers.Flatten()(pooled), h]))
    plan = model.memory_plan(batch_size=2, training=True)
    plan.verify()
    saved = [b for b in plan.buffers if b.name.endswith(".argmax")]
    assert len(saved) == 1 and saved[0].role == "saved"
    assert saved[0].nbytes == 2 * 2 * 2 * 2 * 4  # (batch, 2, 2, 2) int32
    inference = model.memory_plan(batch_size=2, training=False)
    assert not [b for b in inference.buffers if "argmax" in b.name]
