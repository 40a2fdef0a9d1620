"""Dropout: the seeded mask, inverted scaling, identity at inference, gradients."""
import numpy as np
import pytest

import nexec
from nexec import Input, Model, Sequential, layers, optimizers
from nexec.models import model_from_json
from nexec.testing import assert_close, check_gradients, numerical_gradient, weights_by_name

import nexec_regularization
from nexec_regularization import kernels as K

MASK64 = (1 << 64) - 1


def splitmix64_reference(seed, count):
    """The stream in plain Python integers (Steele, Lea & Flood's SplitMix64), 53-bit."""
    out, s = [], seed
    for _ in range(count):
        s = (s + 0x9E3779B97F4A7C15) & MASK64
        z = ((s ^ (s >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        out.append((z ^ (z >> 31)) >> 11)
    return out


def _forward(x, rate, seed):
    state = np.array([seed], np.uint64)
    mask = np.full(x.shape, np.nan, x.dtype)
    out = np.full(x.shape, np.nan, x.dtype)
    K.dropout_forward(x, np.uint64(int(rate * 2 ** 53)), 1.0 / (1.0 - rate), state, mask, out)
    return mask, out, state


# ----- kernels -----------------------------------------------------------------------------
def test_random_stream_is_splitmix64():
    state = np.array([42], np.uint64)
    got = [int(K.splitmix64(state)) for _ in range(5)]
    assert got == splitmix64_reference(42, 5)
    assert int(state[0]) == (42 + 5 * 0x9E3779B97F4A7C15) & MASK64


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mask_is_inverted_dropout_from_the_stream(dtype):
    rate = 0.3
    x = np.random.default_rng(0).normal(size=(50, 40)).astype(dtype)
    mask, out, _ = _forward(x, rate, seed=7)
    draws = np.array(splitmix64_reference(7, x.size)).reshape(x.shape)
    keep = draws >= int(rate * 2 ** 53)
    assert_close(mask, np.where(keep, 1.0 / (1.0 - rate), 0.0))
    assert_close(out, np.where(keep, x / (1.0 - rate), 0.0))
    assert abs((~keep).mean() - rate) < 0.03


def test_same_seed_same_mask_and_the_stream_moves_on():
    x = np.ones((8, 16))
    m1, _, state = _forward(x, 0.5, seed=3)
    m2, _, _ = _forward(x, 0.5, seed=3)
    np.testing.assert_array_equal(m1, m2)
    m3 = np.empty_like(x)
    K.dropout_forward(x, np.uint64(2 ** 52), 2.0, state, m3, np.empty_like(x))
    assert not np.array_equal(m1, m3)  # the next step draws a new mask
    m4, _, _ = _forward(x, 0.5, seed=4)
    assert not np.array_equal(m1, m4)


def test_backward_applies_the_saved_mask_and_matches_finite_differences():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 5))
    weights = rng.normal(size=x.shape)
    mask, _, _ = _forward(x, 0.4, seed=11)

    def loss():
        return float((_forward(x, 0.4, seed=11)[1] * weights).sum())

    dx = np.full(x.shape, np.nan)
    K.dropout_backward(weights, mask, dx)
    assert_close(dx, weights * mask)
    assert_close(dx, numerical_gradient(loss, x), rtol=1e-6, atol=1e-8)


def test_rate_zero_keeps_everything():
    x = np.random.default_rng(2).normal(size=(4, 3))
    mask, out, _ = _forward(x, 0.0, seed=1)
    np.testing.assert_array_equal(mask, 1.0)
    np.testing.assert_array_equal(out, x)


# ----- layer ---------------------------------------------------------------------------------
def test_discovered_and_configured_as_keras():
    assert layers.Dropout is nexec_regularization.Dropout
    d = layers.Dropout(0.25, seed=9, name="drop")
    assert d.get_config() == {"name": "drop", "trainable": True, "rate": 0.25,
                              "noise_shape": None, "seed": 9}
    assert layers.Dropout.from_config(d.get_config()).get_config() == d.get_config()
    assert d(Input(shape=(3, 4))).shape == (None, 3, 4)
    assert d.count_params() == 0 and layers.Dropout.has_training_mode
    with pytest.raises(ValueError, match="rate"):
        layers.Dropout(1.0)
    with pytest.raises(ValueError, match="rate"):
        layers.Dropout(-0.1)
    with pytest.raises(ValueError, match="noise_shape"):
        layers.Dropout(0.5, noise_shape=(None, 1))


def test_identity_in_predict_and_evaluate():
    x = Input(shape=(6,))
    model = Model(x, layers.Dropout(0.9)(x))
    data = np.random.default_rng(3).normal(size=(5, 6)).astype("float32")
    np.testing.assert_array_equal(model.predict(data), data)
    model.compile(optimizer="sgd", loss="mse")
    assert model.evaluate(data, data, verbose=0) == 0.0


def _trained_weights(seed, layer_seed):
    nexec.clear_session()
    nexec.set_random_seed(seed)
    model = Sequential([Input(shape=(6,)), layers.Dense(8, activation="relu"),
                        layers.Dropout(0.5, seed=layer_seed), layers.Dense(2)])
    rng = np.random.default_rng(0)
    data, target = rng.normal(size=(16, 6)), rng.normal(size=(16, 2))
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse")
    model.fit(data, target, epochs=2, batch_size=8, verbose=0)
    return model.get_weights()


def test_training_is_reproducible_under_a_seed():
    same = [_trained_weights(0, 5), _trained_weights(0, 5)]
    for a, b in zip(*same):
        np.testing.assert_array_equal(a, b)
    other = _trained_weights(0, 6)  # same initial weights, another mask stream
    assert any(not np.array_equal(a, b) for a, b in zip(same[0], other))
    # seed=None draws the stream from nexec's seeded generator
    no_seed = [_trained_weights(1, None), _trained_weights(1, None)]
    for a, b in zip(*no_seed):
        np.testing.assert_array_equal(a, b)


def test_dropout_is_active_in_fit():
    """A training step sees the dropped and scaled activations (here: the loss changes)."""
    x = Input(shape=(50,))
    model = Model(x, layers.Dropout(0.5, seed=1)(x))
    model.compile(optimizer="sgd", loss="mse")
    data = np.ones((4, 50), "float32")
    # output = data * mask with mask in {0, 2}: each value is off by exactly 1
    assert model.train_on_batch(data, data) == pytest.approx(1.0)
    assert model.evaluate(data, data, verbose=0) == 0.0


def test_training_mode_gradients_through_the_executor(train_grads):
    rng = np.random.default_rng(4)
    x = Input(shape=(5,), dtype="float64")
    drop = layers.Dropout(0.4, seed=21)
    out = layers.Dense(3, activation="tanh")(drop(layers.Dense(6, activation="sigmoid")(x)))
    model = Model(x, out)
    loss_fn, grads = train_grads(model, rng.normal(size=(7, 5)), rng.normal(size=(7, 3)),
                                 "mse", before_forward=lambda: drop.reset_seed(21))
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def test_mask_is_a_saved_workspace_and_json_round_trips():
    x = Input(shape=(4,), name="x")
    model = Model(x, layers.Dense(2)(layers.Dropout(0.5, seed=2, name="drop")(x)))
    plan = model.memory_plan(batch_size=3, training=True)
    plan.verify()
    (mask,) = [b for b in plan.buffers if b.name.endswith(".mask")]
    assert mask.role == "saved" and mask.nbytes == 3 * 4 * 4
    assert not [b for b in model.memory_plan(batch_size=3, training=False).buffers
                if "mask" in b.name]
    copy = model_from_json(model.to_json())
    assert copy.get_layer("drop").seed == 2 and copy.get_layer("drop").rate == 0.5
    lines = []
    model.summary(print_fn=lines.append)
    assert any("drop (Dropout)" in line for line in lines)


def test_inference_dropout_is_planned_over_its_input_and_runs_nothing():
    x = Input(shape=(5,))
    h = layers.Dense(4, name="d1")(x)
    model = Model(x, layers.Dense(3, name="d2")(layers.Dropout(0.5, name="drop")(h)))
    plan = model.memory_plan(batch_size=2, training=False)
    plan.verify()
    assert "drop" in plan.in_place  # at inference Dropout writes over its input: free
    data = np.random.default_rng(5).normal(size=(3, 5)).astype("float32")
    k1, b1 = model.get_layer("d1").get_weights()
    k2, b2 = model.get_layer("d2").get_weights()
    assert_close(model.predict(data), (data @ k1 + b1) @ k2 + b2)
