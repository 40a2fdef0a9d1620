"""GaussianDropout and AlphaDropout: the stream against a plain-Python reference, kernels
against NumPy, gradients by finite differences in training mode (the stream rewound before
each pass), identity at inference, fit, and registration through the plugin hooks."""
import math

import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers, optimizers
from nexec.models import model_from_json
from nexec.testing import assert_close, check_gradients, model_gradients, weights_by_name

import nexec_regularization
from nexec_regularization import kernels as K
from nexec_regularization.layers import ALPHA, SCALE

M64 = (1 << 64) - 1


def _ror(v, k):
    return ((v >> k) | (v << (64 - k))) & M64


def stream(seed, count):
    """rrmxmx over a Weyl sequence, in Python integers (53 high bits)."""
    out = []
    for i in range(1, count + 1):
        v = (seed + i * 0xD1B54A32D192ED03) & M64
        v ^= _ror(v, 49) ^ _ror(v, 24)
        v = (v * 0x9FB21C651E98DF25) & M64
        v ^= v >> 28
        v = (v * 0x9FB21C651E98DF25) & M64
        v ^= v >> 28
        out.append(v >> 11)
    return np.array(out, dtype=np.float64)


def normals(seed, shape):
    u = stream(seed, 2 * int(np.prod(shape))).reshape(-1, 2) * 2.0 ** -53
    return (np.sqrt(-2 * np.log(1 - u[:, 0])) * np.cos(2 * math.pi * u[:, 1])).reshape(shape)


def alpha_reference(x, rate, seed):
    keep = stream(seed, x.size).reshape(x.shape) >= int(rate * 2 ** 53)
    alpha_p = -ALPHA * SCALE
    a = ((1 - rate) * (1 + rate * alpha_p ** 2)) ** -0.5
    b = -a * alpha_p * rate
    return a * np.where(keep, x, alpha_p) + b, np.where(keep, a, 0.0)


# ----- kernels -------------------------------------------------------------------------------
def test_the_stream_matches_the_reference():
    state, out = np.array([5], np.uint64), np.zeros(9, np.uint64)
    K.next_bits(state, out)
    assert out.astype(np.float64).tolist() == stream(5, 9).tolist()
    assert int(state[0]) == (5 + 9 * 0xD1B54A32D192ED03) & M64
    big = np.zeros(20000, np.uint64)
    K.next_bits(state, big)
    assert abs(big.astype(np.float64).mean() * 2.0 ** -53 - 0.5) < 0.01


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gaussian_dropout_kernels(dtype):
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(dtype)
    noise, out = np.full_like(x, np.nan), np.full_like(x, np.nan)
    K.gaussian_dropout_forward(x, 0.5, np.array([3], np.uint64), noise, out)
    ref = 1 + 0.5 * normals(3, x.shape)
    assert_close(noise, ref, what="noise")
    assert_close(out, x * ref, what="out")
    dx = np.full_like(x, np.nan)
    K.gaussian_dropout_backward(x, noise, dx)
    assert_close(dx, x * ref, what="dx")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_alpha_dropout_kernels(dtype):
    x = np.random.default_rng(1).normal(size=(6, 7)).astype(dtype)
    layer = nexec_regularization.AlphaDropout(0.3)
    a, b, alpha_p = layer.coefficients()
    mask, out = np.full_like(x, np.nan), np.full_like(x, np.nan)
    K.alpha_dropout_forward(x, np.uint64(int(0.3 * 2 ** 53)), a, b, alpha_p,
                            np.array([4], np.uint64), mask, out)
    ref_out, ref_mask = alpha_reference(x.astype(np.float64), 0.3, 4)
    assert_close(out, ref_out, what="out")
    assert_close(mask, ref_mask, what="mask")
    dx = np.full_like(x, np.nan)
    K.alpha_dropout_backward(x, mask, dx)
    assert_close(dx, x * ref_mask, what="dx")


def test_alpha_dropout_keeps_zero_mean_unit_variance():
    x = np.random.default_rng(2).normal(size=(400, 100))
    layer = nexec_regularization.AlphaDropout(0.2)
    a, b, alpha_p = layer.coefficients()
    out, mask = np.empty_like(x), np.empty_like(x)
    K.alpha_dropout_forward(x, np.uint64(int(0.2 * 2 ** 53)), a, b, alpha_p,
                            np.array([1], np.uint64), mask, out)
    assert abs(out.mean()) < 0.02 and abs(out.std() - 1) < 0.02


# ----- layers --------------------------------------------------------------------------------
def test_registered_through_the_plugin_and_config_round_trips():
    assert layers.GaussianDropout is nexec_regularization.GaussianDropout
    assert layers.AlphaDropout is nexec_regularization.AlphaDropout
    assert layers.Dropout.__module__ == "nexec.layers.regularization"  # nexec's own
    g = layers.GaussianDropout(0.2, seed=3, name="g")
    assert g.stddev == pytest.approx(math.sqrt(0.25))
    assert layers.GaussianDropout.from_config(g.get_config()).get_config() == g.get_config()
    a = layers.AlphaDropout(0.1, seed=1, name="a")
    assert layers.AlphaDropout.from_config(a.get_config()).get_config() == a.get_config()


@pytest.mark.parametrize("make, match", [
    (lambda: layers.GaussianDropout(1.0), r"rate must be a number in \[0, 1\)"),
    (lambda: layers.AlphaDropout(-0.5), r"rate must be a number"),
    (lambda: layers.AlphaDropout(0.5, noise_shape=(None, 1)), r"noise_shape"),
    (lambda: layers.GaussianDropout(0.5, seed="x"), r"seed must be an int"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("kind", ["gaussian", "alpha"])
def test_training_loss_and_gradients_through_the_executor(kind):
    rng = np.random.default_rng(3)
    x = Input(shape=(4,), dtype="float64")
    noise = (layers.GaussianDropout(0.3, seed=9) if kind == "gaussian"
             else layers.AlphaDropout(0.3, seed=9))
    out = layers.Dense(2, name="d2")(noise(layers.Dense(5, activation="tanh", name="d1")(x)))
    model = Model(x, out)
    data, target = rng.normal(size=(6, 4)), rng.normal(size=(6, 2))
    loss_fn, grads = model_gradients(model, data, target, "mse", training=True,
                                     before_forward=lambda: noise.reset_seed(9))
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)
    (k1, b1), (k2, b2) = model.get_layer("d1").get_weights(), model.get_layer("d2").get_weights()
    h = np.tanh(data @ k1 + b1)
    h_train = (h * (1 + math.sqrt(0.3 / 0.7) * normals(9, h.shape)) if kind == "gaussian"
               else alpha_reference(h, 0.3, 9)[0])
    assert loss_fn() == pytest.approx((((h_train @ k2 + b2) - target) ** 2).mean(), rel=1e-12)
    assert_close(model.predict(data), h @ k2 + b2)  # inference: the identity


def test_model_trains_reproducibly_and_round_trips():
    def run():
        nexec.clear_session()
        nexec.set_random_seed(0)
        inp = Input(shape=(6,))
        h = layers.Dense(16, activation="tanh")(inp)
        h = layers.AlphaDropout(0.1)(h)
        h = layers.GaussianDropout(0.2)(layers.Dense(8, activation="tanh")(h))
        model = Model(inp, layers.Dense(2, activation="softmax")(h))
        model.compile(optimizer=optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
        rng = np.random.default_rng(0)
        x = rng.normal(size=(64, 6)).astype("float32")
        y = (x[:, 0] + x[:, 1] > 0).astype(int)
        return model, model.fit(x, y, epochs=8, batch_size=16, verbose=0).history["loss"], x

    m1, l1, x = run()
    _, l2, _ = run()
    assert l1 == l2 and l1[-1] < 0.7 * l1[0], l1
    copy = model_from_json(m1.to_json())
    copy.set_weights(m1.get_weights())
    np.testing.assert_array_equal(copy.predict(x), m1.predict(x))


def test_saved_workspace_and_inference_in_place():
    x = Input(shape=(4,))
    h = layers.Dense(4)(x)
    model = Model(x, layers.Dense(2)(layers.GaussianDropout(0.5, name="gd")(h)))
    plan = model.memory_plan(batch_size=3, training=True)
    plan.verify()
    (saved,) = [b for b in plan.buffers if b.name.endswith(".saved")]
    assert saved.role == "saved"
    assert "gd" in model.memory_plan(batch_size=3, training=False).in_place
