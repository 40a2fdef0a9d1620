"""The pooling layers in models: Keras arguments and shapes, PyTorch float64 (forward and
gradients), finite differences through whole models, training, JSON, memory plans, no
allocation per step, and the CUDA device (simulator)."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nexec
from nexec import Input, Model, Sequential, ShapeError, layers, optimizers
from nexec.kernels.cuda import backend
from nexec.models import model_from_json
from nexec.testing import (array_arguments, assert_close, check_gradients, count_allocations,
                           model_gradients, weights_by_name)
from tests.layers.torch_harness import compare, nchw, tf_same_pads


def np_pool(x, size, kind):
    """Non-overlapping 'valid' 2-D pooling in NumPy."""
    n, h, w, c = x.shape
    ho, wo = h // size, w // size
    blocks = x[:, :ho * size, :wo * size].reshape(n, ho, size, wo, size, c)
    return blocks.max(axis=(2, 4)) if kind == "max" else blocks.mean(axis=(2, 4))


# ----- arguments and shapes ----------------------------------------------------------------
def test_keras_defaults_and_config_round_trip():
    p = layers.MaxPooling2D()
    assert p.pool_size == (2, 2) and p.strides == (2, 2) and p.padding == "valid"
    q = layers.AveragePooling2D(3, strides=1, padding="SAME", name="avg")
    cfg = q.get_config()
    assert cfg == {"name": "avg", "trainable": True, "pool_size": [3, 3], "strides": [1, 1],
                   "padding": "same", "data_format": "channels_last"}
    assert layers.AveragePooling2D.from_config(json.loads(json.dumps(cfg))).get_config() == cfg
    assert layers.MaxPooling2D(pool_size=(3, 2)).strides == (3, 2)
    one = layers.MaxPooling1D()
    assert one.pool_size == (2,) and one.strides == (2,)
    assert layers.AveragePooling1D(4, 2).get_config()["strides"] == [2]
    g = layers.GlobalMaxPooling1D(keepdims=True)
    assert g.get_config()["keepdims"] is True and g.get_config()["data_format"] == \
        "channels_last"


@pytest.mark.parametrize("make,shape,out", [
    (lambda: layers.MaxPooling2D(), (8, 8, 3), (None, 4, 4, 3)),
    (lambda: layers.MaxPooling2D(), (7, 5, 3), (None, 3, 2, 3)),
    (lambda: layers.MaxPooling2D(2, padding="same"), (7, 5, 3), (None, 4, 3, 3)),
    (lambda: layers.AveragePooling2D(3, 2), (9, 9, 1), (None, 4, 4, 1)),
    (lambda: layers.AveragePooling2D((1, 3), (2, 1), "same"), (5, 4, 2), (None, 3, 4, 2)),
    (lambda: layers.MaxPooling1D(), (9, 4), (None, 4, 4)),
    (lambda: layers.AveragePooling1D(3, 2, "same"), (9, 4), (None, 5, 4)),
    (lambda: layers.GlobalAveragePooling2D(), (5, 6, 4), (None, 4)),
    (lambda: layers.GlobalMaxPooling2D(keepdims=True), (5, 6, 4), (None, 1, 1, 4)),
    (lambda: layers.GlobalMaxPooling1D(), (7, 3), (None, 3)),
    (lambda: layers.GlobalAveragePooling1D(keepdims=True), (7, 3), (None, 1, 3)),
])
def test_output_shapes(make, shape, out):
    assert make()(Input(shape=shape)).shape == out


def test_bad_arguments_and_inputs_name_the_layer():
    with pytest.raises(ValueError, match="padding"):
        layers.MaxPooling2D(padding="full")
    with pytest.raises(ValueError, match="pool_size"):
        layers.MaxPooling2D(pool_size=0)
    with pytest.raises(ValueError, match="pool_size"):
        layers.MaxPooling1D(pool_size=(2, 2))
    with pytest.raises(ValueError, match="strides"):
        layers.AveragePooling1D(strides=-1)
    with pytest.raises(ValueError, match="channels_last"):
        layers.AveragePooling2D(data_format="channels_first")
    with pytest.raises(ValueError, match="keepdims"):
        layers.GlobalAveragePooling1D(keepdims="yes")
    with pytest.raises(ShapeError, match=r"'pool' \(MaxPooling2D\).*rank-4"):
        layers.MaxPooling2D(name="pool")(Input(shape=(8,)))
    with pytest.raises(ShapeError, match="rank-3"):
        layers.MaxPooling1D()(Input(shape=(8, 8, 2)))
    with pytest.raises(ShapeError, match="does not fit"):
        layers.MaxPooling2D(5)(Input(shape=(4, 4, 1)))
    with pytest.raises(ShapeError, match="GlobalAveragePooling2D"):
        layers.GlobalAveragePooling2D()(Input(shape=(4, 4)))


# ----- against PyTorch float64 -------------------------------------------------------------
def _torch_pool2d(kind, pool, strides, padding, shape):
    (t, b), (l, r) = ((tf_same_pads(shape[0], pool[0], strides[0]),
                       tf_same_pads(shape[1], pool[1], strides[1]))
                      if padding == "same" else ((0, 0), (0, 0)))

    def fn(x):
        if kind == "max":
            return F.max_pool2d(F.pad(x, (l, r, t, b), value=-float("inf")), pool, strides)
        ones = torch.ones_like(x)
        return (F.avg_pool2d(F.pad(x, (l, r, t, b)), pool, strides)
                / F.avg_pool2d(F.pad(ones, (l, r, t, b)), pool, strides))
    return nchw(fn)


def _torch_pool1d(kind, pool, stride, padding, steps):
    a, b = tf_same_pads(steps, pool, stride) if padding == "same" else (0, 0)

    def fn(x):
        if kind == "max":
            return F.max_pool1d(F.pad(x, (a, b), value=-float("inf")), pool, stride)
        return (F.avg_pool1d(F.pad(x, (a, b)), pool, stride)
                / F.avg_pool1d(F.pad(torch.ones_like(x), (a, b)), pool, stride))
    return nchw(fn)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("pool,strides,padding,shape", [
    ((2, 2), (2, 2), "valid", (4, 5, 2)),
    ((3, 3), (2, 2), "same", (5, 6, 2)),
    ((3, 2), (1, 1), "same", (4, 3, 2)),
])
def test_pooling2d_matches_pytorch(kind, pool, strides, padding, shape):
    make = layers.MaxPooling2D if kind == "max" else layers.AveragePooling2D
    compare(make(pool, strides, padding), shape,
            _torch_pool2d(kind, pool, strides, padding, shape))


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("pool,stride,padding,shape", [
    (2, 2, "valid", (7, 3)),
    (3, 2, "same", (8, 2)),
    (3, 1, "same", (5, 2)),
])
def test_pooling1d_matches_pytorch(kind, pool, stride, padding, shape):
    make = layers.MaxPooling1D if kind == "max" else layers.AveragePooling1D
    compare(make(pool, stride, padding), shape,
            _torch_pool1d(kind, pool, stride, padding, shape[0]))


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("shape", [(6, 3), (3, 4, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_matches_pytorch(kind, shape, keepdims):
    rank = len(shape) - 1
    name = f"Global{'Max' if kind == 'max' else 'Average'}Pooling{rank}D"
    dims = tuple(range(1, rank + 1))

    def fn(x):
        return x.amax(dim=dims, keepdim=keepdims) if kind == "max" else \
            x.mean(dim=dims, keepdim=keepdims)
    compare(getattr(layers, name)(keepdims=keepdims), shape, fn)


# ----- in models ---------------------------------------------------------------------------
def _pool_model(dtype="float32"):
    x = Input(shape=(6, 6, 3), dtype=dtype, name="x")
    a = layers.MaxPooling2D(name="max")(x)
    b = layers.AveragePooling2D(name="avg")(x)
    g = layers.GlobalAveragePooling2D(name="gap")(x)
    m = layers.GlobalMaxPooling2D(name="gmp")(x)
    return Model(x, [a, b, g, m], name="pools")


def test_predict_matches_numpy():
    model = _pool_model()
    x = np.random.default_rng(0).normal(size=(5, 6, 6, 3)).astype("float32")
    a, b, g, m = model.predict(x, batch_size=2)  # 2, 2, 1: a smaller last batch too
    assert_close(a, np_pool(x, 2, "max"))
    assert_close(b, np_pool(x, 2, "avg"))
    assert_close(g, x.mean(axis=(1, 2)))
    assert_close(m, x.max(axis=(1, 2)))


def test_summary_json_round_trip_and_memory_plan():
    model = _pool_model()
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "max (MaxPooling2D)" in text and "(None, 3, 3, 3)" in text
    copy = model_from_json(model.to_json())
    assert copy.get_config() == model.get_config()
    assert type(copy.get_layer("avg")) is layers.AveragePooling2D
    x = np.random.default_rng(1).normal(size=(3, 6, 6, 3)).astype("float32")
    for p, q in zip(model.predict(x), copy.predict(x)):
        np.testing.assert_array_equal(p, q)
    for training in (False, True):
        model.memory_plan(batch_size=4, training=training).verify()


@pytest.mark.parametrize("kind", ["max", "avg", "gap", "gmp1"])
def test_pooling_outputs_concatenate_in_place(kind):
    """Pooling kernels may write straight into their slice of a concatenated buffer."""
    one_d = kind == "gmp1"
    x = Input(shape=(4, 2) if one_d else (4, 4, 2), dtype="float64")
    make = {"max": layers.MaxPooling2D, "avg": layers.AveragePooling2D,
            "gap": layers.GlobalAveragePooling2D, "gmp1": layers.GlobalMaxPooling1D}[kind]
    cat = layers.Concatenate(name="cat")([make()(x), make()(x)])
    out = layers.Dense(3, name="head")(layers.Flatten()(cat))
    model = Model(x, out)
    assert "cat" in model.memory_plan(batch_size=2).concat_in_place
    data = np.random.default_rng(2).normal(size=(3, 4, 2) if one_d else (3, 4, 4, 2))
    pooled = {"gap": lambda: data.mean(axis=(1, 2)), "gmp1": lambda: data.max(axis=1),
              "max": lambda: np_pool(data, 2, "max"),
              "avg": lambda: np_pool(data, 2, "avg")}[kind]()
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
    b = layers.GlobalMaxPooling2D()(h)
    s = layers.Reshape((16, 4))(h)
    c = layers.Flatten()(layers.MaxPooling1D(3, 2, "same")(s))
    d = layers.GlobalAveragePooling1D()(layers.AveragePooling1D(2)(s))
    e = layers.GlobalMaxPooling1D()(s)
    out = layers.Dense(3, activation="softmax")(layers.Concatenate()([a, b, c, d, e]))
    model = Model(x, out)
    data = rng.normal(size=(4, 7, 7, 2))
    y = rng.random((4, 3))
    loss_fn, grads = model_gradients(model, data, y, "categorical_crossentropy")
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def test_conv1d_style_text_model_trains():
    """Steps -> pooling 1-D -> global max -> head, as the book's three-output model."""
    nexec.set_random_seed(0)
    rng = np.random.default_rng(0)
    data = rng.normal(size=(64, 12, 3)).astype("float32")
    labels = (data[:, :, 0].max(axis=1) > data[:, :, 1].max(axis=1)).astype(int)
    model = Sequential([Input(shape=(12, 3)), layers.MaxPooling1D(2),
                        layers.GlobalMaxPooling1D(), layers.Dense(8, activation="relu"),
                        layers.Dense(2, activation="softmax")])
    model.compile(optimizer=optimizers.Adam(0.02), loss="sparse_categorical_crossentropy")
    losses = model.fit(data, labels, epochs=10, batch_size=16, verbose=0).history["loss"]
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


def test_training_steps_allocate_nothing():
    x_in = Input(shape=(6, 6, 2))
    h = layers.Conv2D(3, 3, padding="same", activation="relu")(x_in)
    h = layers.MaxPooling2D(padding="same")(h)
    a = layers.GlobalAveragePooling2D()(layers.AveragePooling2D(3, 1, "same")(h))
    s = layers.Reshape((9, 3))(h)
    b = layers.GlobalMaxPooling1D()(layers.AveragePooling1D()(layers.MaxPooling1D(3, 1)(s)))
    model = Model(x_in, layers.Dense(2, activation="softmax")(layers.Concatenate()([a, b])))
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((32, 6, 6, 2)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 32)]
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    ex = model._trainer.train_executor
    prog = ex.program(8)
    losses, counts = [0.0], [0] * len(prog.metrics)

    def steps(k):
        for i in range(k):
            for dst, src in zip(prog.inputs + prog.targets, [x, y]):
                dst[...] = src[i * 8:(i + 1) * 8]
            ex.train_step(prog, losses, counts)

    steps(2)
    nrt, numpy_blocks = count_allocations(lambda: steps(3))
    assert nrt == 3 * array_arguments(prog), nrt
    assert numpy_blocks == []


@pytest.mark.cudasim
@pytest.mark.skipif(not backend.is_available(), reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1")
def test_fit_on_cuda_matches_the_cpu():
    def fit(device):
        nexec.clear_session()
        nexec.set_random_seed(3)
        x = Input(shape=(4, 4, 2), dtype="float64")
        h = layers.MaxPooling2D(3, 1, "same")(x)
        a = layers.GlobalAveragePooling2D()(layers.AveragePooling2D(padding="same")(h))
        s = layers.Reshape((8, 4))(h)
        b = layers.GlobalMaxPooling1D()(layers.AveragePooling1D(3, 2, "same")(
            layers.MaxPooling1D()(s)))
        model = Model(x, layers.Dense(2)(layers.Concatenate()([a, b])))
        model.compile(optimizer=optimizers.SGD(0.1), loss="mse", device=device)
        rng = np.random.default_rng(0)
        data, y = rng.normal(size=(6, 4, 4, 2)), rng.normal(size=(6, 2))
        history = model.fit(data, y, epochs=2, batch_size=3, verbose=0, shuffle=False)
        return model, history.history["loss"], model.predict(data)

    cpu, l_cpu, p_cpu = fit("cpu")
    gpu, l_gpu, p_gpu = fit("cuda")
    np.testing.assert_allclose(l_gpu, l_cpu, rtol=1e-10)
    np.testing.assert_allclose(p_gpu, p_cpu, rtol=1e-10, atol=1e-12)
    for a, b in zip(cpu.get_weights(), gpu.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
