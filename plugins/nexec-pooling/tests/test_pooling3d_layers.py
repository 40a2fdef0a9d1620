"""The plugin's 3-D pooling layers inside nexec models: discovery through the entry point,
Keras arguments, shapes, predict, whole-model gradients, training, JSON, memory plans."""
import json

import numpy as np
import pytest

import nexec
import nexec_pooling
from nexec import Input, Model, Sequential, ShapeError, layers, optimizers
from nexec.models import model_from_json
from nexec.testing import assert_close, check_gradients, model_gradients, weights_by_name


def np_pool3d(x, size, kind):
    """Non-overlapping 'valid' 3-D pooling in NumPy."""
    n, d, h, w, c = x.shape
    do, ho, wo = d // size, h // size, w // size
    blocks = x[:, :do * size, :ho * size, :wo * size].reshape(n, do, size, ho, size, wo,
                                                               size, c)
    return blocks.max(axis=(2, 4, 6)) if kind == "max" else blocks.mean(axis=(2, 4, 6))


NAMES = ["MaxPooling3D", "AveragePooling3D", "GlobalMaxPooling3D", "GlobalAveragePooling3D"]


def test_discovered_through_the_entry_point_with_no_import():
    for name in NAMES:
        assert getattr(layers, name) is getattr(nexec_pooling, name)
    (info,) = [p for p in nexec.plugins_info() if p["name"].startswith("nexec-pooling")]
    assert info["error"] is None and info["version"] == nexec_pooling.__version__
    assert info["provides"] == {"layers": NAMES, "kernels": [f"{n}/cpu" for n in NAMES],
                                "onnx_exporters": NAMES}
    # nexec's own 1-D and 2-D poolings are not the plugin's
    assert layers.MaxPooling2D.__module__ == "nexec.layers.pooling"


def test_keras_defaults_and_config():
    p = layers.MaxPooling3D()
    assert p.pool_size == (2, 2, 2) and p.strides == (2, 2, 2) and p.padding == "valid"
    q = layers.AveragePooling3D(3, strides=(1, 2, 1), padding="SAME", name="avg")
    cfg = q.get_config()
    assert cfg == {"name": "avg", "trainable": True, "pool_size": [3, 3, 3],
                   "strides": [1, 2, 1], "padding": "same", "data_format": "channels_last"}
    assert layers.AveragePooling3D.from_config(json.loads(json.dumps(cfg))).get_config() == cfg
    assert layers.GlobalMaxPooling3D(keepdims=True).get_config()["keepdims"] is True


@pytest.mark.parametrize("make,shape,out", [
    (lambda: layers.MaxPooling3D(), (4, 8, 8, 3), (None, 2, 4, 4, 3)),
    (lambda: layers.MaxPooling3D(2, padding="same"), (3, 5, 4, 1), (None, 2, 3, 2, 1)),
    (lambda: layers.AveragePooling3D((1, 3, 3), 2), (3, 7, 7, 2), (None, 2, 3, 3, 2)),
    (lambda: layers.GlobalAveragePooling3D(), (2, 3, 4, 5), (None, 5)),
    (lambda: layers.GlobalMaxPooling3D(keepdims=True), (2, 3, 4, 5), (None, 1, 1, 1, 5)),
])
def test_output_shapes(make, shape, out):
    assert make()(Input(shape=shape)).shape == out


def test_bad_arguments_and_inputs_name_the_layer():
    with pytest.raises(ValueError, match="padding"):
        layers.MaxPooling3D(padding="full")
    with pytest.raises(ValueError, match="pool_size"):
        layers.MaxPooling3D(pool_size=(2, 2))
    with pytest.raises(ValueError, match="channels_last"):
        layers.AveragePooling3D(data_format="channels_first")
    with pytest.raises(ShapeError, match=r"'pool' \(MaxPooling3D\).*rank-5"):
        layers.MaxPooling3D(name="pool")(Input(shape=(8, 8, 2)))
    with pytest.raises(ShapeError, match="does not fit"):
        layers.MaxPooling3D(5)(Input(shape=(4, 4, 4, 1)))


def _pool_model():
    x = Input(shape=(4, 4, 4, 2), name="x")
    return Model(x, [layers.MaxPooling3D(name="max")(x), layers.AveragePooling3D(name="avg")(x),
                     layers.GlobalMaxPooling3D(name="gmp")(x),
                     layers.GlobalAveragePooling3D(name="gap")(x)])


def test_predict_json_and_memory_plan():
    model = _pool_model()
    x = np.random.default_rng(0).normal(size=(5, 4, 4, 4, 2)).astype("float32")
    a, b, m, g = model.predict(x, batch_size=2)
    assert_close(a, np_pool3d(x, 2, "max"))
    assert_close(b, np_pool3d(x, 2, "avg"))
    assert_close(m, x.max(axis=(1, 2, 3)))
    assert_close(g, x.mean(axis=(1, 2, 3)))
    copy = model_from_json(model.to_json())
    assert type(copy.get_layer("avg")) is nexec_pooling.AveragePooling3D
    for p, q in zip(model.predict(x), copy.predict(x)):
        np.testing.assert_array_equal(p, q)
    for training in (False, True):
        model.memory_plan(batch_size=4, training=training).verify()


def test_global_pooling_writes_into_a_concatenation():
    x = Input(shape=(2, 2, 2, 3), dtype="float64")
    cat = layers.Concatenate(name="cat")([layers.GlobalMaxPooling3D()(x),
                                          layers.GlobalAveragePooling3D()(x)])
    model = Model(x, layers.Dense(2, name="head")(cat))
    assert "cat" in model.memory_plan(batch_size=2).concat_in_place
    data = np.random.default_rng(1).normal(size=(3, 2, 2, 2, 3))
    both = np.concatenate([data.max(axis=(1, 2, 3)), data.mean(axis=(1, 2, 3))], axis=-1)
    kernel, bias = model.get_layer("head").get_weights()
    assert_close(model.predict(data), both @ kernel + bias)


def test_whole_model_gradients_through_every_pooling():
    rng = np.random.default_rng(2)
    x = Input(shape=(12,), dtype="float64")
    h = layers.Dense(4 * 5 * 3 * 2, activation="tanh")(x)
    h = layers.Reshape((4, 5, 3, 2))(h)
    a = layers.Flatten()(layers.MaxPooling3D((2, 3, 2), (1, 2, 1), "same")(h))
    b = layers.Flatten()(layers.AveragePooling3D((3, 2, 2), (2, 2, 1), "same")(h))
    c = layers.GlobalMaxPooling3D()(h)
    d = layers.GlobalAveragePooling3D()(h)
    model = Model(x, layers.Dense(3, activation="softmax")(layers.Concatenate()([a, b, c, d])))
    loss_fn, grads = model_gradients(model, rng.normal(size=(3, 12)), rng.random((3, 3)),
                                     "categorical_crossentropy")
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def test_trains():
    nexec.set_random_seed(0)
    rng = np.random.default_rng(0)
    data = rng.normal(size=(64, 4, 4, 4, 1)).astype("float32")
    labels = (data[:, :2].mean(axis=(1, 2, 3, 4)) > data[:, 2:].mean(axis=(1, 2, 3, 4))) \
        .astype(int)
    model = Sequential([Input(shape=(4, 4, 4, 1)), layers.AveragePooling3D(),
                        layers.Flatten(),
                        layers.Dense(2, activation="softmax")])
    model.compile(optimizer=optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    losses = model.fit(data, labels, epochs=8, batch_size=16, verbose=0).history["loss"]
    assert losses[-1] < 0.7 * losses[0], losses
