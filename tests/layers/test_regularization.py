"""Dropout, SpatialDropout1D/2D and GaussianNoise: the seeded stream against a plain-Python
SplitMix64, kernels against NumPy, gradients by finite differences in training mode (the
stream rewound before each pass), identity at inference, fit reproducibility."""
import math

import numpy as np
import pytest

import nexec
from nexec import Input, Model, ShapeError, layers, optimizers
from nexec.kernels.cpu import regularization as K
from nexec.models import model_from_json
from nexec.testing import assert_close, check_gradients, model_gradients, weights_by_name

MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15


def stream(seed, count):
    """SplitMix64 (Steele, Lea & Flood) in Python integers: the 53 high bits of each."""
    out, s = [], seed
    for _ in range(count):
        s = (s + GAMMA) & MASK64
        z = ((s ^ (s >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        out.append((z ^ (z >> 31)) >> 11)
    return np.array(out, dtype=np.float64)


def np_mask(seed, shape, rate):
    draws = stream(seed, int(np.prod(shape))).reshape(shape)
    scale = 0.0 if rate == 1 else 1.0 / (1.0 - rate)
    return np.where(draws >= min(int(rate * 2 ** 53), 2 ** 53), scale, 0.0)


def np_normals(seed, shape):
    d = stream(seed, 2 * int(np.prod(shape))).reshape(-1, 2) * 2.0 ** -53
    return (np.sqrt(-2 * np.log(1 - d[:, 0])) * np.cos(2 * math.pi * d[:, 1])).reshape(shape)


# ----- kernels -------------------------------------------------------------------------------
def test_the_stream_is_splitmix64_and_moves_on_by_the_count():
    state = np.array([42], np.uint64)
    out = np.zeros(7, np.uint64)
    K.random_bits53(state, out)
    assert out.astype(np.float64).tolist() == stream(42, 7).tolist()
    assert int(state[0]) == (42 + 7 * GAMMA) & MASK64


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("span", [1, 3])
@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
def test_dropout_kernel_is_inverted_dropout_from_the_stream(dtype, span, rate):
    x = np.random.default_rng(0).normal(size=(4 * span, 5)).astype(dtype)
    mask = np.full((4, 5), np.nan, dtype)
    out = np.full_like(x, np.nan)
    state = np.array([7], np.uint64)
    K.dropout_forward(x, np.uint64(min(int(rate * 2 ** 53), 2 ** 53)),
                      0.0 if rate == 1 else 1 / (1 - rate), span, state, mask, out)
    ref = np_mask(7, (4, 5), rate)
    assert_close(mask, ref, what="mask")
    assert_close(out, x * np.repeat(ref, span, axis=0), what="output")
    assert int(state[0]) == (7 + 20 * GAMMA) & MASK64
    dy = np.random.default_rng(1).normal(size=x.shape).astype(dtype)
    dx = np.full_like(x, np.nan)
    K.dropout_backward(dy, mask, span, dx)
    assert_close(dx, dy * np.repeat(ref, span, axis=0), what="dx")


def test_dropout_drops_about_rate_and_in_place_is_the_same():
    x = np.random.default_rng(2).normal(size=(60, 50))
    mask, out = np.empty_like(x), np.empty_like(x)
    K.dropout_forward(x, np.uint64(int(0.3 * 2 ** 53)), 1 / 0.7, 1, np.array([5], np.uint64),
                      mask, out)
    assert abs((mask == 0).mean() - 0.3) < 0.03
    inplace = x.copy()
    K.dropout_forward(inplace, np.uint64(int(0.3 * 2 ** 53)), 1 / 0.7, 1,
                      np.array([5], np.uint64), mask, inplace)
    np.testing.assert_array_equal(inplace, out)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gaussian_noise_kernel_is_box_muller_from_the_stream(dtype):
    x = np.random.default_rng(3).normal(size=(6, 4)).astype(dtype)
    out = np.full_like(x, np.nan)
    state = np.array([11], np.uint64)
    K.gaussian_noise_forward(x, 0.25, state, out)
    assert_close(out, x + 0.25 * np_normals(11, x.shape))
    assert int(state[0]) == (11 + 48 * GAMMA) & MASK64
    big = np.zeros((200, 100))
    K.gaussian_noise_forward(big, 1.0, state, big)
    assert abs(big.mean()) < 0.02 and abs(big.std() - 1) < 0.02


# ----- layers --------------------------------------------------------------------------------
def test_keras_arguments_defaults_and_config_round_trip():
    d = layers.Dropout(0.25, noise_shape=(None, 1, None), seed=3, name="d")
    assert (d.rate, d.noise_shape, d.seed) == (0.25, (None, 1, None), 3)
    assert layers.Dropout.from_config(d.get_config()).get_config() == d.get_config()
    s1 = layers.SpatialDropout1D(0.5, seed=2, name="s1")
    assert "noise_shape" not in s1.get_config()
    assert layers.SpatialDropout1D.from_config(s1.get_config()).get_config() \
        == s1.get_config()
    s2 = layers.SpatialDropout2D(0.5, data_format="channels_last", name="s2")
    assert layers.SpatialDropout2D.from_config(s2.get_config()).data_format == "channels_last"
    g = layers.GaussianNoise(0.1, seed=4, name="g")
    assert layers.GaussianNoise.from_config(g.get_config()).get_config() == g.get_config()
    assert layers.Dropout is nexec.layers.regularization.Dropout
    for layer in (d, s1, s2, g):
        assert layer.has_training_mode and not layer.weights


@pytest.mark.parametrize("make, match", [
    (lambda: layers.Dropout(1.5), r"rate must be a number between 0 and 1, got 1\.5"),
    (lambda: layers.Dropout(-0.1), r"rate must be a number between 0 and 1"),
    (lambda: layers.Dropout("half"), r"rate must be a number"),
    (lambda: layers.Dropout(0.5, noise_shape="x"), r"noise_shape must be None or a tuple"),
    (lambda: layers.Dropout(0.5, noise_shape=(None, 0)), r"noise_shape must hold positive"),
    (lambda: layers.Dropout(0.5, seed=1.5), r"seed must be an int"),
    (lambda: layers.GaussianNoise(2.0), r"stddev must be a number between 0 and 1"),
    (lambda: layers.SpatialDropout2D(0.5, data_format="channels_first"),
     r"only data_format='channels_last'"),
])
def test_bad_arguments_are_refused_at_construction(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_shapes_are_checked_when_called():
    with pytest.raises(ShapeError, match=r"rank-3 input"):
        layers.SpatialDropout1D(0.5, name="sp")(Input(shape=(4, 4, 2)))
    with pytest.raises(ShapeError, match=r"rank-4 input"):
        layers.SpatialDropout2D(0.5)(Input(shape=(4, 2)))
    with pytest.raises(ShapeError, match=r"noise_shape=\(None, 2, 1\).*SpatialDropout"):
        layers.Dropout(0.5, noise_shape=(None, 2, 1), name="dn")(Input(shape=(2, 3)))
    assert layers.Dropout(0.5, noise_shape=(None, 2, 3))(Input(shape=(2, 3))).shape \
        == (None, 2, 3)


@pytest.mark.parametrize("shape, make, mask_of", [
    ((4,), lambda: layers.Dropout(0.4, seed=21),
     lambda s, b, shape: np_mask(s, (b, *shape), 0.4)),
    ((3, 4), lambda: layers.Dropout(0.4, noise_shape=(None, 1, 4), seed=21),
     lambda s, b, shape: np_mask(s, (b, 1, shape[-1]), 0.4)),
    ((3, 4), lambda: layers.SpatialDropout1D(0.4, seed=21),
     lambda s, b, shape: np_mask(s, (b, 1, shape[-1]), 0.4)),
    ((2, 3, 4), lambda: layers.SpatialDropout2D(0.4, seed=21),
     lambda s, b, shape: np_mask(s, (b, 1, 1, shape[-1]), 0.4)),
])
def test_training_forward_and_gradients_through_the_executor(shape, make, mask_of):
    """[Dense or 1x1 Conv2D, tanh] -> layer -> Flatten -> Dense: the loss in training mode
    equals the NumPy model's with the reference mask, the executor's gradients match central
    differences (through the layer's backward where a layer precedes it), and inference is
    the identity."""
    rng = np.random.default_rng(4)
    x = Input(shape=shape, dtype="float64")
    drop = make()
    pre = {1: lambda: layers.Dense(4, activation="tanh", name="pre"),
           3: lambda: layers.Conv2D(4, 1, activation="tanh", name="pre")}.get(len(shape))
    h = pre()(x) if pre else x
    out = layers.Dense(2, name="d2")(layers.Flatten()(drop(h)))
    model = Model(x, out)
    data, target = rng.normal(size=(5, *shape)), rng.normal(size=(5, 2))
    loss_fn, grads = model_gradients(model, data, target, "mse", training=True,
                                     before_forward=lambda: drop.reset_seed(21))
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)
    h_ref = data
    if pre:
        k1, b1 = model.get_layer("pre").get_weights()
        h_ref = np.tanh(data @ k1.reshape(-1, 4) + b1)
    k2, b2 = model.get_layer("d2").get_weights()
    ref = (h_ref * mask_of(21, 5, shape)).reshape(5, -1) @ k2 + b2
    assert loss_fn() == pytest.approx(((ref - target) ** 2).mean(), rel=1e-12)
    assert_close(model.predict(data), h_ref.reshape(5, -1) @ k2 + b2)


def test_gaussian_noise_training_loss_and_gradients():
    rng = np.random.default_rng(5)
    x = Input(shape=(3,), dtype="float64")
    noise = layers.GaussianNoise(0.3, seed=8)
    out = layers.Dense(2, name="d2")(noise(layers.Dense(3, activation="tanh", name="d1")(x)))
    model = Model(x, out)
    data, target = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    loss_fn, grads = model_gradients(model, data, target, "mse", training=True,
                                     before_forward=lambda: noise.reset_seed(8))
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)
    (k1, b1), (k2, b2) = model.get_layer("d1").get_weights(), model.get_layer("d2").get_weights()
    ref = (np.tanh(data @ k1 + b1) + 0.3 * np_normals(8, (4, 3))) @ k2 + b2
    assert loss_fn() == pytest.approx(((ref - target) ** 2).mean(), rel=1e-12)
    assert_close(model.predict(data), np.tanh(data @ k1 + b1) @ k2 + b2)


def test_the_mask_is_a_saved_workspace_and_inference_runs_nothing():
    x = Input(shape=(4,), name="x")
    h = layers.Dense(4, name="d1")(x)
    model = Model(x, layers.Dense(2)(layers.Dropout(0.5, seed=2, name="drop0")(h)))
    plan = model.memory_plan(batch_size=3, training=True)
    plan.verify()
    (mask,) = [b for b in plan.buffers if b.name.endswith(".mask")]
    assert mask.role == "saved" and mask.nbytes == 3 * 4 * 4
    inference = model.memory_plan(batch_size=3, training=False)
    inference.verify()
    assert "drop0" in inference.in_place
    assert not [b for b in inference.buffers if "mask" in b.name]


def test_spatial_mask_is_one_row_per_sample():
    x = Input(shape=(5, 5, 3))
    model = Model(x, layers.SpatialDropout2D(0.2, name="sp")(layers.Conv2D(3, 1)(x)))
    plan = model.memory_plan(batch_size=2, training=True)
    (mask,) = [b for b in plan.buffers if b.name.endswith(".mask")]
    assert mask.nbytes == 2 * 3 * 4


def test_fit_is_reproducible_from_set_random_seed():
    def run():
        nexec.clear_session()
        nexec.set_random_seed(7)
        x = Input(shape=(6, 3))
        h = layers.GaussianNoise(0.2)(layers.SpatialDropout1D(0.3)(x))
        h = layers.Dropout(0.5)(layers.Flatten()(h))
        model = Model(x, layers.Dense(1)(h))
        model.compile(optimizer=optimizers.SGD(0.05), loss="mse")
        rng = np.random.default_rng(0)
        data, target = rng.normal(size=(12, 6, 3)), rng.normal(size=(12, 1))
        history = model.fit(data, target, epochs=3, batch_size=4, verbose=0)
        return model.get_weights(), history.history["loss"], model.predict(data)

    (w1, l1, p1), (w2, l2, p2) = run(), run()
    assert l1 == l2
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(p1, p2)


def test_json_round_trip_and_summary():
    x = Input(shape=(4, 2), name="x")
    h = layers.SpatialDropout1D(0.1, seed=3, name="sp")(x)
    h = layers.GaussianNoise(0.2, seed=4, name="gn")(h)
    model = Model(x, layers.Dropout(0.5, seed=2, name="drop")(h))
    copy = model_from_json(model.to_json())
    assert copy.get_layer("sp").seed == 3 and copy.get_layer("gn").stddev == 0.2
    assert copy.get_layer("drop").rate == 0.5
    lines = []
    model.summary(print_fn=lines.append)
    assert any("sp (SpatialDropout1D)" in line for line in lines)


def test_identity_copy_kernel_is_used_when_not_in_place():
    """A Dropout whose input is read again later cannot be planned over it: predict copies."""
    x = Input(shape=(3,))
    h = layers.Dense(3, name="d")(x)
    model = Model(x, layers.Add()([layers.Dropout(0.9, name="drop")(h), h]))
    assert "drop" not in model.memory_plan(batch_size=2, training=False).in_place
    data = np.random.default_rng(6).normal(size=(2, 3)).astype("float32")
    k, b = model.get_layer("d").get_weights()
    assert_close(model.predict(data), 2 * (data @ k + b))
