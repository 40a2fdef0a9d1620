"""The recurrent kernels' float32 gate math and their fused LSTM paths.

Float64 recurrent layers are checked against PyTorch in tests/layers/test_recurrent.py; here
the float32 sigmoid/tanh against float64 NumPy, float32 layers against the same layers in
float64, and the LSTM's generic (non-default activation) path against a NumPy reference and
finite differences, since the default activations now take a fused path of their own.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
from numba import njit

import nexec
from nexec import Input, Model, layers
from nexec.kernels.cpu.fastmath32 import sigmoid32, tanh32
from nexec.testing import assert_close, check_gradients, model_gradients, weights_by_name

B, T, F, U = 3, 6, 4, 5
ULP32 = 2.0 ** -23


@njit
def _apply(fn_code: int, x: np.ndarray, out: np.ndarray) -> None:
    for j in range(x.shape[0]):
        out[j] = sigmoid32(x[j]) if fn_code == 0 else tanh32(x[j])


def _grid() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate([np.linspace(-100.0, 100.0, 40001), np.linspace(-1e-3, 1e-3, 2001),
                           rng.normal(scale=3.0, size=5000), [1e-30, -1e-30, 1e-42, 87.5, -88.5]]
                          ).astype(np.float32)


@pytest.mark.parametrize("code,ref", [(0, lambda x: 1.0 / (1.0 + np.exp(-x))), (1, np.tanh)])
def test_float32_gates_are_within_a_few_ulp_of_float64(code: int, ref: Callable) -> None:
    x = _grid()
    out = np.empty_like(x)
    _apply(code, x, out)
    assert out.dtype == np.float32
    expect = ref(x.astype(np.float64))
    tiny = np.abs(expect) < 1e-30  # sigmoid's far tail: an absolute bound is the meaningful one
    rel = np.abs(out[~tiny] - expect[~tiny]) / np.abs(expect[~tiny])
    assert rel.max() < 4 * ULP32, rel.max()
    assert np.abs(out[tiny] - expect[tiny]).max() < 1e-37


@pytest.mark.parametrize("code,expect", [
    (0, [1.0, 0.0, np.nan, 0.5, 0.5]), (1, [1.0, -1.0, np.nan, 0.0, -0.0])])
def test_float32_gates_special_values(code: int, expect: list) -> None:
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0], np.float32)
    out = np.empty_like(x)
    _apply(code, x, out)
    np.testing.assert_allclose(out, np.array(expect, np.float32), atol=1e-37)
    if code == 1:
        assert np.signbit(out[4]) and not np.signbit(out[3])


def _model(kind: str, dtype: str, weights: list | None, **kwargs: Any) -> tuple[Model, list]:
    nexec.clear_session()
    inp = Input(shape=(T, F), dtype=dtype)
    rnn = getattr(layers, kind)(U, name="rnn", return_sequences=True, **kwargs)
    model = Model(inp, rnn(inp))
    if weights is None:
        rng = np.random.default_rng(1)
        weights = [rng.normal(size=w.shape) * 0.6 for w in rnn.get_weights()]
    rnn.set_weights([w.astype(dtype) for w in weights])
    return model, weights


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("go_backwards,use_bias", [(False, True), (True, True), (False, False)])
def test_float32_layers_match_float64(kind: str, go_backwards: bool, use_bias: bool) -> None:
    """Forward and every gradient of a float32 layer within float32 accuracy of float64
    (an LSTM without bias takes the generic path, with bias the fused one)."""
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(B, T, F)), rng.normal(size=(B, T, U))
    kw = dict(go_backwards=go_backwards, use_bias=use_bias)
    m64, weights = _model(kind, "float64", None, **kw)
    p64 = m64.predict(x, verbose=0)
    _, g64 = model_gradients(m64, x, y, "mse")
    m32, _ = _model(kind, "float32", weights, **kw)
    p32 = m32.predict(x.astype(np.float32), verbose=0)
    _, g32 = model_gradients(m32, x.astype(np.float32), y.astype(np.float32), "mse")
    assert p32.dtype == np.float32
    assert_close(p32, p64, rtol=1e-5, what="prediction")
    for name, g in g64.items():
        assert g32[name].dtype == np.float32
        assert_close(g32[name], g, rtol=1e-4, what=name)


def _np_lstm(x: np.ndarray, w: np.ndarray, u: np.ndarray, b: np.ndarray, act: Callable,
             ract: Callable) -> np.ndarray:
    """Keras' LSTM forward (return_sequences) in float64 NumPy."""
    h = np.zeros((x.shape[0], U))
    c = np.zeros((x.shape[0], U))
    out = []
    for t in range(x.shape[1]):
        z = x[:, t] @ w + h @ u + b
        i, f, g, o = ract(z[:, :U]), ract(z[:, U:2 * U]), act(z[:, 2 * U:3 * U]), ract(z[:, 3 * U:])
        c = f * c + i * g
        h = o * act(c)
        out.append(h)
    return np.stack(out, axis=1)


def test_lstm_with_other_activations_matches_numpy_and_finite_differences() -> None:
    """The generic (span) path that non-default activations take."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(B, T, F)), rng.normal(size=(B, T, U))
    model, weights = _model("LSTM", "float64", None, activation="relu",
                            recurrent_activation="tanh")
    expect = _np_lstm(x, *weights, lambda v: np.maximum(v, 0.0), np.tanh)
    assert_close(model.predict(x, verbose=0), expect, rtol=1e-12, what="prediction")
    loss_fn, grads = model_gradients(model, x, y, "mse")
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def test_fused_lstm_matches_numpy() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(B, T, F))
    model, weights = _model("LSTM", "float64", None)
    expect = _np_lstm(x, *weights, np.tanh, lambda v: 1.0 / (1.0 + np.exp(-v)))
    assert_close(model.predict(x, verbose=0), expect, rtol=1e-12, what="prediction")
