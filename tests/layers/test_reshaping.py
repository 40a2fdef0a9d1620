"""The shape layers in models: Keras arguments and shapes, PyTorch float64 (forward and
gradients), finite differences, JSON, views that cost nothing, no allocation per step, and
the CUDA device (simulator)."""
import json

import numpy as np
import pytest
import torch.nn.functional as F

import nexec
from nexec import Input, Model, ShapeError, layers, optimizers
from nexec.kernels.cuda import backend
from nexec.models import model_from_json
from nexec.testing import (array_arguments, assert_close, check_gradients, count_allocations,
                           model_gradients, weights_by_name)
from tests.layers.torch_harness import compare, nchw


# ----- arguments and shapes ----------------------------------------------------------------
@pytest.mark.parametrize("make,shape,out", [
    (lambda: layers.Reshape((3, 4)), (12,), (None, 3, 4)),
    (lambda: layers.Reshape((-1, 2)), (3, 4), (None, 6, 2)),
    (lambda: layers.Reshape((-1,)), (2, 3, 4), (None, 24)),
    (lambda: layers.Permute((2, 1)), (10, 64), (None, 64, 10)),
    (lambda: layers.Permute((3, 1, 2)), (2, 3, 4), (None, 4, 2, 3)),
    (lambda: layers.RepeatVector(3), (5,), (None, 3, 5)),
    (lambda: layers.UpSampling2D(), (2, 3, 4), (None, 4, 6, 4)),
    (lambda: layers.UpSampling2D((1, 3)), (2, 3, 4), (None, 2, 9, 4)),
    (lambda: layers.ZeroPadding1D(), (5, 2), (None, 7, 2)),
    (lambda: layers.ZeroPadding1D((0, 3)), (5, 2), (None, 8, 2)),
    (lambda: layers.ZeroPadding2D(), (4, 4, 1), (None, 6, 6, 1)),
    (lambda: layers.ZeroPadding2D((1, 2)), (4, 4, 1), (None, 6, 8, 1)),
    (lambda: layers.ZeroPadding2D(((0, 1), (2, 3))), (4, 4, 1), (None, 5, 9, 1)),
    (lambda: layers.Cropping2D(), (4, 4, 1), (None, 4, 4, 1)),
    (lambda: layers.Cropping2D(1), (4, 5, 1), (None, 2, 3, 1)),
    (lambda: layers.Cropping2D(((0, 1), (2, 0))), (4, 5, 1), (None, 3, 3, 1)),
    (lambda: layers.Flatten(), (2, 3, 4, 5), (None, 120)),
    (lambda: layers.Flatten(), (7,), (None, 7)),
])
def test_output_shapes(make, shape, out):
    assert make()(Input(shape=shape)).shape == out


def test_keras_defaults_and_configs_round_trip():
    cases = [layers.Reshape((2, -1)), layers.Permute((2, 1)), layers.RepeatVector(4),
             layers.UpSampling2D(3), layers.ZeroPadding1D(2), layers.ZeroPadding2D((1, 2)),
             layers.Cropping2D(((1, 0), (0, 2))), layers.Flatten()]
    for layer in cases:
        cfg = layer.get_config()
        again = type(layer).from_config(json.loads(json.dumps(cfg)))
        assert again.get_config() == cfg
    assert layers.UpSampling2D().get_config()["size"] == [2, 2]
    assert layers.UpSampling2D().interpolation == "nearest"
    assert layers.ZeroPadding2D().padding == ((1, 1), (1, 1))
    assert layers.ZeroPadding2D((1, 2)).padding == ((1, 1), (2, 2))
    assert layers.ZeroPadding1D().padding == (1, 1)
    assert layers.Cropping2D().cropping == ((0, 0), (0, 0))
    assert layers.Cropping2D(2).cropping == ((2, 2), (2, 2))


def test_bad_arguments_and_inputs_are_named():
    with pytest.raises(ValueError, match="target_shape"):
        layers.Reshape((-1, -1))
    with pytest.raises(ValueError, match="target_shape"):
        layers.Reshape((0, 3))
    with pytest.raises(ShapeError, match="cannot reshape"):
        layers.Reshape((5,))(Input(shape=(2, 3)))
    with pytest.raises(ShapeError, match="not a multiple"):
        layers.Reshape((-1, 4))(Input(shape=(2, 3)))
    with pytest.raises(ValueError, match="dims"):
        layers.Permute((0, 1))
    with pytest.raises(ValueError, match="dims"):
        layers.Permute((1, 3))
    with pytest.raises(ValueError, match="at most 4"):
        layers.Permute((1, 2, 3, 4, 5))
    with pytest.raises(ShapeError, match="rank-3"):
        layers.Permute((2, 1))(Input(shape=(2, 3, 4)))
    with pytest.raises(ValueError, match="n"):
        layers.RepeatVector(0)
    with pytest.raises(ShapeError, match="rank-2"):
        layers.RepeatVector(2)(Input(shape=(2, 3)))
    with pytest.raises(ValueError, match="interpolation"):
        layers.UpSampling2D(interpolation="bilinear")
    with pytest.raises(ValueError, match="size"):
        layers.UpSampling2D(size=(0, 2))
    with pytest.raises(ValueError, match="padding"):
        layers.ZeroPadding2D(((1, 2, 3), (1, 1)))
    with pytest.raises(ValueError, match="padding"):
        layers.ZeroPadding1D(-1)
    with pytest.raises(ValueError, match="cropping"):
        layers.Cropping2D(-1)
    with pytest.raises(ShapeError, match="leaves nothing"):
        layers.Cropping2D(2)(Input(shape=(4, 4, 1)))
    with pytest.raises(ValueError, match="channels_last"):
        layers.ZeroPadding2D(data_format="channels_first")
    with pytest.raises(ValueError, match="channels_last"):
        layers.Flatten(data_format="channels_first")


# ----- against PyTorch float64 -------------------------------------------------------------
@pytest.mark.parametrize("make,shape,torch_fn", [
    (lambda: layers.UpSampling2D(), (2, 3, 2),
     nchw(lambda t: F.interpolate(t, scale_factor=(2, 2), mode="nearest"))),
    (lambda: layers.UpSampling2D((3, 1)), (2, 2, 3),
     nchw(lambda t: F.interpolate(t, scale_factor=(3, 1), mode="nearest"))),
    (lambda: layers.ZeroPadding2D(((1, 0), (2, 1))), (2, 3, 2),
     nchw(lambda t: F.pad(t, (2, 1, 1, 0)))),
    (lambda: layers.ZeroPadding1D((2, 1)), (4, 3), nchw(lambda t: F.pad(t, (2, 1)))),
    (lambda: layers.Cropping2D(((1, 0), (1, 2))), (3, 5, 2), lambda t: t[:, 1:, 1:-2]),
    (lambda: layers.Permute((2, 1)), (3, 4), lambda t: t.permute(0, 2, 1)),
    (lambda: layers.Permute((3, 1, 2)), (2, 3, 4), lambda t: t.permute(0, 3, 1, 2)),
    (lambda: layers.Permute((2, 4, 3, 1)), (2, 1, 3, 2), lambda t: t.permute(0, 2, 4, 3, 1)),
    (lambda: layers.RepeatVector(3), (4,), lambda t: t[:, None, :].repeat(1, 3, 1)),
    (lambda: layers.Reshape((3, -1)), (2, 6), lambda t: t.reshape(t.shape[0], 3, 4)),
    (lambda: layers.Flatten(), (2, 2, 3), lambda t: t.reshape(t.shape[0], -1)),
])
def test_matches_pytorch(make, shape, torch_fn):
    compare(make(), shape, torch_fn)


# ----- in models ---------------------------------------------------------------------------
def _shape_model():
    x = Input(shape=(4, 3, 2), dtype="float64", name="x")
    h = layers.Conv2D(3, 2, padding="same", activation="tanh", name="conv")(x)
    up = layers.UpSampling2D((1, 2))(h)                            # (4, 6, 3)
    crop = layers.Cropping2D(((1, 0), (0, 2)))(up)                  # (3, 4, 3)
    pad = layers.ZeroPadding2D(((0, 1), (1, 0)))(crop)              # (4, 5, 3)
    perm = layers.Permute((2, 3, 1))(pad)                          # (5, 3, 4)
    seq = layers.Reshape((15, 4))(perm)
    seq = layers.ZeroPadding1D((1, 2))(seq)                        # (18, 4)
    flat = layers.Flatten()(seq)
    v = layers.Dense(3, activation="tanh", name="vec")(flat)
    rep = layers.Flatten()(layers.Permute((2, 1))(layers.RepeatVector(2)(v)))
    return Model(x, layers.Dense(2, name="head")(layers.Concatenate()([flat, rep])))


def test_whole_model_gradients_through_every_shape_layer():
    rng = np.random.default_rng(4)
    model = _shape_model()
    data, y = rng.normal(size=(3, 4, 3, 2)), rng.normal(size=(3, 2))
    loss_fn, grads = model_gradients(model, data, y, "mse")
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)
    copy = model_from_json(model.to_json())
    copy.set_weights(model.get_weights())
    np.testing.assert_array_equal(copy.predict(data), model.predict(data))


def test_reshape_and_flatten_are_free_views():
    x = Input(shape=(4, 6), name="x")
    h = layers.Dense(6, name="d")(layers.Reshape((24,))(x))
    r = layers.Reshape((2, 3), name="r")(h)
    out = layers.Dense(2)(layers.Flatten(name="f")(layers.Permute((2, 1), name="p")(r)))
    model = Model(x, out)
    for training in (False, True):
        plan = model.memory_plan(batch_size=2, training=training)
        plan.verify()
        views = {b.name: b.view_of for b in plan.buffers}
        assert views["r"] == "d" and views["f"] == "p"  # no memory of their own
        assert views["p"] is None  # Permute copies
    model.compile(optimizer="sgd", loss="mse")
    data = np.random.default_rng(0).normal(size=(2, 4, 6)).astype("float32")
    expected = model.predict(data)
    kernel, bias = model.get_layer("d").get_weights()
    h_np = (data.reshape(2, 24) @ kernel + bias).reshape(2, 2, 3).transpose(0, 2, 1)
    k2, b2 = model.layers[-1].get_weights()
    assert_close(expected, h_np.reshape(2, -1) @ k2 + b2)


def test_training_steps_allocate_nothing():
    nexec.set_random_seed(0)
    x_in = Input(shape=(4, 3, 2))
    h = layers.UpSampling2D()(x_in)
    h = layers.ZeroPadding2D()(layers.Cropping2D(1)(h))
    h = layers.Permute((3, 1, 2))(h)
    v = layers.Dense(3)(layers.Flatten()(h))
    r = layers.Flatten()(layers.ZeroPadding1D()(layers.RepeatVector(2)(v)))
    model = Model(x_in, layers.Dense(2, activation="softmax")(r))
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((32, 4, 3, 2)).astype(np.float32)
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
        nexec.set_random_seed(5)
        model = _shape_model()
        model.compile(optimizer=optimizers.SGD(0.05), loss="mse", device=device)
        rng = np.random.default_rng(1)
        data, y = rng.normal(size=(4, 4, 3, 2)), rng.normal(size=(4, 2))
        loss = model.fit(data, y, epochs=2, batch_size=2, verbose=0, shuffle=False)
        return model, loss.history["loss"], model.predict(data)

    cpu, l_cpu, p_cpu = fit("cpu")
    gpu, l_gpu, p_gpu = fit("cuda")
    np.testing.assert_allclose(l_gpu, l_cpu, rtol=1e-10)
    np.testing.assert_allclose(p_gpu, p_cpu, rtol=1e-10, atol=1e-12)
    for a, b in zip(cpu.get_weights(), gpu.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
