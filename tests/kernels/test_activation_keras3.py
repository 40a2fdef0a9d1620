"""The Keras 3 activations (elu ... log_softmax): CPU kernels against NumPy float64 formulas,
finite differences and PyTorch float64, on their own and fused into epilogues."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nexec.kernels.activations import (
    CODES,
    ELU,
    EXPONENTIAL,
    GELU,
    HARD_SIGMOID,
    LEAKY_RELU,
    LOG_SOFTMAX,
    NEEDS_INPUT,
    RELU6,
    SELU,
    SILU,
    SOFTPLUS,
    SOFTSIGN,
)
from nexec.kernels.cpu.activation import (
    activation_backward,
    activation_backward_input,
    activation_forward,
    epilogue_grad_rows,
    epilogue_rows,
)
from nexec.testing import assert_close, numerical_gradient

SELU_A, SELU_S = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
_erf = np.vectorize(math.erf)


def ref(x: np.ndarray, act: int) -> np.ndarray:
    """Keras 3's formulas in plain NumPy float64."""
    if act == ELU:
        return np.where(x > 0, x, np.expm1(x))
    if act == SELU:
        return SELU_S * np.where(x > 0, x, SELU_A * np.expm1(x))
    if act == GELU:
        return 0.5 * x * (1 + _erf(x / np.sqrt(2)))
    if act == SILU:
        return x / (1 + np.exp(-x))
    if act == LEAKY_RELU:
        return np.where(x >= 0, x, 0.2 * x)
    if act == RELU6:
        return np.clip(x, 0, 6)
    if act == SOFTPLUS:
        return np.log1p(np.exp(x))
    if act == SOFTSIGN:
        return x / (1 + np.abs(x))
    if act == HARD_SIGMOID:
        return np.clip(x + 3, 0, 6) / 6
    if act == EXPONENTIAL:
        return np.exp(x)
    assert act == LOG_SOFTMAX
    z = x - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


TORCH = {ELU: F.elu, SELU: F.selu, GELU: F.gelu, SILU: F.silu,
         LEAKY_RELU: lambda t: F.leaky_relu(t, 0.2), RELU6: F.relu6, SOFTPLUS: F.softplus,
         SOFTSIGN: F.softsign, HARD_SIGMOID: F.hardsigmoid, EXPONENTIAL: torch.exp,
         LOG_SOFTMAX: lambda t: F.log_softmax(t, dim=-1)}
ACTS = sorted(TORCH)


def inputs(act: int, shape=(4, 6), seed=0) -> np.ndarray:
    """Values in ±[0.1, 3.9], away from every kink (0 and ±3 and 6), so FD steps are safe."""
    rng = np.random.default_rng(seed + act)
    x = rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 3.9, size=shape)
    x[np.abs(np.abs(x) - 3.0) < 0.05] = 2.5  # hard_sigmoid's kinks
    return x


def backward(act: int, x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    dx = np.empty_like(x)
    if act in NEEDS_INPUT:
        activation_backward_input(x, dy, act, dx)
    else:
        activation_backward(y, dy, act, dx)
    return dx


def test_names_are_keras_3s():
    assert CODES["swish"] == CODES["silu"] == SILU
    for name in ("elu", "selu", "gelu", "silu", "leaky_relu", "relu6", "softplus", "softsign",
                 "hard_sigmoid", "exponential", "log_softmax"):
        assert name in CODES


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ACTS)
def test_forward_matches_numpy(act, dtype):
    x = inputs(act)
    out = np.full(x.shape, np.nan, dtype)
    activation_forward(x.astype(dtype), act, out)
    assert_close(out, ref(x, act), rtol=1e-6 if dtype == np.float32 else 1e-14,
                 what=f"activation {act}")


@pytest.mark.parametrize("act", ACTS)
def test_backward_matches_finite_differences(act):
    x = inputs(act, seed=5)
    r = np.random.default_rng(act).standard_normal(x.shape)
    y = np.empty_like(x)
    activation_forward(x, act, y)
    dx = backward(act, x, y, r)

    def loss() -> float:
        out = np.empty_like(x)
        activation_forward(x, act, out)
        return float((out * r).sum())

    assert_close(dx, numerical_gradient(loss, x), rtol=1e-7, what=f"gradient {act}")


@pytest.mark.parametrize("act", ACTS)
def test_matches_torch_float64(act):
    x = inputs(act, seed=9)
    dy = np.random.default_rng(1).standard_normal(x.shape)
    y = np.empty_like(x)
    activation_forward(x, act, y)
    xt = torch.tensor(x, requires_grad=True)
    yt = TORCH[act](xt)
    yt.backward(torch.tensor(dy))
    assert_close(y, yt.detach().numpy(), rtol=1e-10, what="forward vs torch")
    # torch's hardsigmoid backward multiplies by a float32 1/6 (Keras and nexec: exact 1/6)
    tol = 1e-7 if act == HARD_SIGMOID else 1e-10
    assert_close(backward(act, x, y, dy), xt.grad.numpy(), rtol=tol, what="backward vs torch")


@pytest.mark.parametrize("act", [a for a in ACTS if a not in NEEDS_INPUT])
def test_fused_epilogue_with_bias_and_strided_rows(act):
    x = inputs(act, shape=(3, 5))
    bias = np.array([0.05, -0.1, 0.02, 0.0, 0.07])
    big = np.full((3, 9), 77.0)
    out = big[:, 2:7]
    epilogue_rows(x - bias, bias, act, out)
    assert_close(out, ref(x, act), rtol=1e-14, what="epilogue")
    assert np.all(big[:, :2] == 77.0) and np.all(big[:, 7:] == 77.0)
    dy = np.random.default_rng(3).standard_normal(x.shape)
    dz, db = np.empty_like(x), np.empty(5)
    epilogue_grad_rows(out, dy, act, dz, db)
    assert_close(dz, backward(act, x, ref(x, act), dy), rtol=1e-14, what="epilogue grad")
    assert_close(db, dz.sum(axis=0), rtol=1e-14, what="bias grad")


@pytest.mark.parametrize("act", NEEDS_INPUT)
def test_output_based_gradient_refuses_gelu_and_silu(act):
    y = np.ones((2, 3))
    with pytest.raises(ValueError, match="needs its input"):
        activation_backward(y, y, act, np.empty_like(y))
    with pytest.raises(ValueError):
        activation_backward_input(y, y, ELU, np.empty_like(y))


def test_in_place_forward_and_backward():
    x = inputs(LOG_SOFTMAX)
    expected = ref(x, LOG_SOFTMAX)
    y = x.copy()
    activation_forward(y, LOG_SOFTMAX, y)
    assert_close(y, expected, rtol=1e-14, what="in place")
    dy = np.ones_like(x)
    dx = backward(LOG_SOFTMAX, x, y, dy)
    g = dy.copy()
    activation_backward(y, g, LOG_SOFTMAX, g)
    assert_close(g, dx, rtol=0, what="dx is dy")
