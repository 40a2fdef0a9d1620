"""A plugin's activation, loss and metric, given as scalar functions, train end to end on the
CPU and (in Numba's simulator) on CUDA, and a model using them saves and loads."""
import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers, optimizers
from nexec.kernels.cuda import backend
from nexec.testing import check_gradients, model_gradients, weights_by_name

from .conftest import reload_registry, write_plugin

SOURCE = """
from nexec.plugin import Activation, Loss, Metric, hookimpl

NEXEC_API_VERSION = "1.1"


def softsign(z):
    return z / (1.0 + abs(z))


def softsign_derivative(y):
    return (1.0 - abs(y)) ** 2


def absolute_error(p, t):
    return abs(p - t)


def absolute_error_derivative(p, t):
    if p > t:
        return 1.0
    if p < t:
        return -1.0
    return 0.0


def within_half(p, t):
    return 1.0 if abs(p - t) < 0.5 else 0.0


@hookimpl
def nexec_activations():
    return [Activation("softsign_plugin", forward=softsign, derivative=softsign_derivative)]


@hookimpl
def nexec_losses():
    return [Loss("mae_plugin", elementwise=(absolute_error, absolute_error_derivative))]


@hookimpl
def nexec_metrics():
    return [Metric("within_half", elementwise=within_half)]
"""


@pytest.fixture
def scalar_plugin(plugin_dir):
    write_plugin(plugin_dir, "nexec_scalar_demo", SOURCE)
    assert reload_registry() == []
    reg = nexec.plugins.registry()
    assert reg.owner[("activations", "softsign_plugin")] == "nexec_scalar_demo"
    return reg


def _model(dtype="float64"):
    nexec.clear_session()
    nexec.set_random_seed(5)
    x_in = Input(shape=(3,), dtype=dtype)
    h = layers.Dense(4, activation="softsign_plugin")(x_in)
    h = layers.Add()([layers.Dense(4)(h), h])
    out = layers.Dense(2, activation="softsign_plugin")(layers.Activation("softsign_plugin")(h))
    return Model(x_in, out)


def _data():
    rng = np.random.default_rng(1)
    return rng.normal(size=(12, 3)), rng.uniform(-0.8, 0.8, size=(12, 2))


def _softsign(z):
    return z / (1.0 + np.abs(z))


def _reference(model, x):
    w = {k: v for k, v in weights_by_name(model).items()}
    names = [l.name for l in model.layers if l.name.startswith("dense")]
    d0, d1, d2 = names
    h = _softsign(x @ w[f"{d0}/kernel"] + w[f"{d0}/bias"])
    h = h @ w[f"{d1}/kernel"] + w[f"{d1}/bias"] + h
    h = _softsign(h)
    return _softsign(h @ w[f"{d2}/kernel"] + w[f"{d2}/bias"])


def test_plugin_activation_loss_and_metric_match_numpy(scalar_plugin):
    model = _model()
    model.compile(optimizer=optimizers.SGD(0.0), loss="mae_plugin", metrics=["within_half"])
    x, y = _data()
    p = _reference(model, x)
    np.testing.assert_allclose(model.predict(x, verbose=0), p, rtol=1e-12, atol=1e-14)
    loss, metric = model.evaluate(x, y, verbose=0)
    assert loss == pytest.approx(np.abs(p - y).mean(), rel=1e-12)
    assert metric == pytest.approx((np.abs(p - y) < 0.5).mean(), rel=1e-12)


def test_plugin_activation_and_loss_gradients_match_finite_differences(scalar_plugin):
    model = _model()
    x, y = _data()
    loss_fn, grads = model_gradients(model, x, y, "mae_plugin")
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-5)


def _fit(device):
    model = _model()
    model.compile(optimizer=optimizers.Adam(0.05), loss="mae_plugin", metrics=["within_half"],
                  device=device)
    x, y = _data()
    history = model.fit(x, y, epochs=3, batch_size=4, verbose=0, shuffle=False)
    return model, history


def test_plugin_contributions_train_on_the_cpu(scalar_plugin):
    _, history = _fit("cpu")
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    assert all(0.0 <= m <= 1.0 for m in history.history["within_half"])


@pytest.mark.cudasim
@pytest.mark.skipif(not backend.is_available(), reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1")
def test_plugin_contributions_train_on_cuda_as_on_the_cpu(scalar_plugin):
    cpu, h_cpu = _fit("cpu")
    gpu, h_gpu = _fit("cuda")
    for a, b in zip(cpu.get_weights(), gpu.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(h_gpu.history["loss"], h_cpu.history["loss"], rtol=1e-6)
    assert h_gpu.history["within_half"] == h_cpu.history["within_half"]


def test_model_with_plugin_contributions_saves_and_loads(scalar_plugin, tmp_path):
    model, _ = _fit("cpu")
    x, y = _data()
    path = tmp_path / "m.nexec"
    model.save(path)
    loaded = nexec.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
    loaded.fit(x, y, epochs=1, batch_size=4, verbose=0, shuffle=False)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0, shuffle=False)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
