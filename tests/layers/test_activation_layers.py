"""ReLU, LeakyReLU, PReLU, ELU, Softmax, Rescaling, Normalization: forward against NumPy and
PyTorch float64, gradients against finite differences and PyTorch, Keras weight layout,
argument errors, fit, and the CUDA simulator."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nexec
from nexec import Input, Model, layers
from nexec.errors import ShapeError
from nexec.kernels.cuda import backend
from nexec.testing import assert_close, check_gradients, model_gradients, weights_by_name
from tests.layers.helpers_merge import compare_with_torch, torch_dense


def relu_ref(x, slope=0.0, top=None, thr=0.0):
    p = np.where(x > thr, x, 0.0)
    if top is not None:
        p = np.clip(p, 0.0, top)
    return p - slope * np.maximum(thr - x, 0.0)


def torch_relu(t, slope=0.0, top=None, thr=0.0):
    p = torch.where(t > thr, t, torch.zeros_like(t))
    if top is not None:
        p = torch.clamp(p, 0.0, top)
    return p - slope * torch.relu(thr - t)


ALPHA = np.array([[0.1, -0.2, 0.3]])  # PReLU alpha shared along axis 1 of (2, 3)

CASES = {
    "relu": (lambda: layers.ReLU(), lambda x: np.maximum(x, 0), torch.relu),
    "relu_general": (lambda: layers.ReLU(max_value=1.2, negative_slope=0.1, threshold=0.3),
                     lambda x: relu_ref(x, 0.1, 1.2, 0.3),
                     lambda t: torch_relu(t, 0.1, 1.2, 0.3)),
    "relu_threshold": (lambda: layers.ReLU(threshold=0.4), lambda x: relu_ref(x, thr=0.4),
                       lambda t: torch_relu(t, thr=0.4)),
    "relu6": (lambda: layers.ReLU(max_value=6.0), lambda x: np.clip(x, 0, 6),
              torch.nn.functional.relu6),
    "leaky": (lambda: layers.LeakyReLU(), lambda x: np.where(x >= 0, x, 0.3 * x),
              lambda t: torch.nn.functional.leaky_relu(t, 0.3)),
    "elu": (lambda: layers.ELU(alpha=0.7), lambda x: np.where(x > 0, x, 0.7 * np.expm1(x)),
            lambda t: torch.nn.functional.elu(t, 0.7)),
    "prelu": (lambda: layers.PReLU(shared_axes=[1], name="p"),
              lambda x: np.where(x >= 0, x, ALPHA * x), None),
    "softmax": (lambda: layers.Softmax(), lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True),
                lambda t: torch.softmax(t, dim=-1)),
    "rescaling": (lambda: layers.Rescaling(0.5, offset=0.25), lambda x: 0.5 * x + 0.25,
                  lambda t: 0.5 * t + 0.25),
    "normalization": (lambda: layers.Normalization(mean=[0.1, 0.2, 0.3],
                                                   variance=[1, 4, 0.25]),
                      lambda x: (x - [0.1, 0.2, 0.3]) / np.array([1.0, 2.0, 0.5]),
                      lambda t: (t - torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64))
                      / torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)),
}


def kink_free(rng, shape):
    """Values away from every kink of the cases (0, 0.3, 0.4, 1.2, 6)."""
    x = rng.uniform(-2.0, 2.0, size=shape)
    for k in (0.0, 0.3, 0.4, 1.2):
        x[np.abs(x - k) < 0.03] = 0.8
    return x


def build(name):
    make, _, _ = CASES[name]
    x_in = Input(shape=(2, 3), dtype="float64", name="x")
    layer = make()
    d = layers.Dense(3, name="d")
    head = layers.Dense(2, name="head")
    y = layer(d(x_in))
    if name == "prelu":
        layer.set_weights([ALPHA])
    return Model(x_in, head(y)), Model(x_in, y), layer, d, head


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_numpy_gradients_and_torch(name):
    _, ref, torch_fn = CASES[name]
    rng = np.random.default_rng(len(name))
    model, probe, layer, d, head = build(name)
    w, _ = d.get_weights()
    d.set_weights([w, np.zeros(3)])
    # inputs whose Dense output is away from every kink (w is a random square matrix)
    x = np.linalg.solve(w.T, kink_free(rng, (5, 2, 3)).reshape(-1, 3).T).T.reshape(5, 2, 3)
    pre = x @ w
    assert_close(probe.predict(x, verbose=0), ref(pre), rtol=1e-12, what=f"{name} forward")
    y = rng.normal(size=(5, 2, 2))
    loss_fn, grads = model_gradients(model, x, y, "mse")
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)
    if torch_fn is None:  # PReLU: torch's prelu is channels-first; the formula instead
        alpha_t = torch.tensor(ALPHA, requires_grad=True)

        def torch_fn(t):
            return torch.where(t >= 0, t, alpha_t * t)

        extra = {"p/alpha": alpha_t}
    else:
        extra = {}

    def torch_forward(ts):
        hd, (wd, bd) = torch_dense(ts[0], d)
        out, (wh, bh) = torch_dense(torch_fn(hd), head)
        return out, {"d/kernel": wd, "d/bias": bd, "head/kernel": wh, "head/bias": bh, **extra}

    compare_with_torch(model, [x], y, torch_forward)


def test_weights_have_keras_names_and_shapes():
    x_in = Input(shape=(4, 5, 3))
    assert layers.PReLU()(x_in).shape == (None, 4, 5, 3)
    p = layers.PReLU(shared_axes=[1, 2])
    p(x_in)
    assert [w.shape for w in p.get_weights()] == [(1, 1, 3)] and not p.get_weights()[0].any()
    n = layers.Normalization()
    n(x_in)
    assert list(n._params) == ["mean", "variance", "count"]
    assert [w.shape for w in n.get_weights()] == [(3,), (3,), ()]
    assert n.trainable_weights == [] and len(n.non_trainable_weights) == 3
    assert layers.Normalization(mean=0.0, variance=1.0).get_weights() == []


def test_zero_variance_divides_by_epsilon():
    x_in = Input(shape=(2,), dtype="float64")
    out = Model(x_in, layers.Normalization(mean=[0.0, 0.0], variance=[0.0, 1.0])(x_in))
    assert_close(out.predict(np.array([[1e-7, 3.0]]), verbose=0), np.array([[1.0, 3.0]]),
                 rtol=1e-12, what="max(sqrt(var), 1e-7)")


def test_normalization_adapt_matches_numpy_and_updates_a_compiled_model():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(20, 2, 3)) * [1.0, 2.0, 3.0] + [1.0, -1.0, 0.5]
    layer = layers.Normalization()
    x_in = Input(shape=(2, 3), dtype="float64")
    model = Model(x_in, layer(x_in))
    model.compile(optimizer="sgd", loss="mse")
    layer.adapt(data)
    flat = data.reshape(-1, 3)
    assert_close(layer.get_weights()[0], flat.mean(0), rtol=1e-14, what="mean")
    assert_close(layer.get_weights()[1], flat.var(0), rtol=1e-14, what="variance")
    assert layer.get_weights()[2] == 0
    expected = (data - flat.mean(0)) / np.sqrt(flat.var(0))
    assert_close(model.predict(data, verbose=0), expected, rtol=1e-12, what="normalized")
    inv = layers.Normalization(invert=True)
    inv.adapt(data)
    out = Model(x_in, inv(x_in)).predict(expected, verbose=0)
    assert_close(out, data, rtol=1e-12, what="invert")


def test_bad_arguments():
    with pytest.raises(ValueError, match="negative_slope must be a finite number >= 0"):
        layers.LeakyReLU(negative_slope=-1)
    with pytest.raises(ValueError, match="max_value"):
        layers.ReLU(max_value=-1.0)
    with pytest.raises(ValueError, match="alpha_regularizer is not supported"):
        layers.PReLU(alpha_regularizer="l2")
    with pytest.raises(ShapeError, match="leading axes only"):
        layers.PReLU(shared_axes=[2])(Input(shape=(4, 3)))
    with pytest.raises(ShapeError, match="last axis only"):
        layers.Softmax(axis=1)(Input(shape=(4, 3)))
    with pytest.raises(ValueError, match="both mean and variance"):
        layers.Normalization(mean=1.0)
    with pytest.raises(ValueError, match="axis=-1 only"):
        layers.Normalization(axis=None)
    with pytest.raises(ValueError, match="scale must be a finite number"):
        layers.Rescaling("x")


def test_leaky_relu_accepts_keras_2_alpha_and_config_round_trips():
    layer = layers.LeakyReLU(alpha=0.1, name="lk")
    assert layer.negative_slope == 0.1
    again = layers.LeakyReLU.from_config(layer.get_config())
    assert again.negative_slope == 0.1 and again.name == "lk"
    relu = layers.ReLU.from_config(layers.ReLU(6.0, 0.1, 0.5).get_config())
    assert (relu.max_value, relu.negative_slope, relu.threshold) == (6.0, 0.1, 0.5)


def test_softmax_layer_folds_into_dense():
    x_in = Input(shape=(4,))
    y = layers.Softmax(name="sm")(layers.Dense(3, name="d")(x_in))
    (op,) = Model(x_in, y).plan().ops
    assert (op.layer.name, op.activation, op.fused) == ("d", "softmax", ["sm"])


def test_fit_and_predict():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 4)).astype("float32") * 3 + 2
    y = (x[:, :1] > 2).astype("float32")
    norm = layers.Normalization()
    norm.adapt(x)
    x_in = Input(shape=(4,))
    h = layers.PReLU()(layers.Dense(8)(norm(x_in)))
    h = layers.LeakyReLU()(layers.Dense(8)(layers.ELU()(h)))
    model = Model(x_in, layers.Dense(1, activation="sigmoid")(layers.Rescaling(1.0)(h)))
    model.compile(optimizer=nexec.optimizers.Adam(0.02), loss="binary_crossentropy")
    hist = model.fit(x, y, epochs=30, batch_size=16, verbose=0)
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]


@pytest.mark.cudasim
@pytest.mark.skipif(not backend.is_available(), reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1")
def test_same_training_on_cuda():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 2, 3))
    y = rng.normal(size=(4, 2, 2))
    results = {}
    for device in ("cpu", "cuda"):
        nexec.clear_session()
        nexec.set_random_seed(7)
        x_in = Input(shape=(2, 3), dtype="float64")
        norm = layers.Normalization()
        norm.adapt(x)
        h = layers.Dense(3)(norm(x_in))
        h = layers.PReLU(alpha_initializer="glorot_uniform", shared_axes=[1])(h)
        h = layers.ReLU(max_value=1.0, negative_slope=0.1, threshold=0.2)(layers.Dense(3)(h))
        h = layers.ELU(0.5)(layers.Rescaling(2.0, 0.1)(h))
        h = layers.Normalization(mean=0.5, variance=2.0, invert=True)(layers.LeakyReLU()(h))
        out = layers.Dense(2, activation="log_softmax")(layers.Softmax()(h))
        model = Model(x_in, out)
        model.compile(optimizer=nexec.optimizers.SGD(0.1), loss="mse", device=device)
        model.fit(x, y, epochs=2, batch_size=4, verbose=0, shuffle=False)
        results[device] = model.predict(x, verbose=0), weights_by_name(model)
    assert_close(results["cuda"][0], results["cpu"][0], rtol=1e-10, what="predict on cuda")
    for name, w in results["cpu"][1].items():
        assert_close(results["cuda"][1][name], w, rtol=1e-10, what=f"{name} after 2 steps")
