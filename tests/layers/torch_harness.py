"""A layer under test between two Dense layers, against the same model in PyTorch float64.

``Input(F) -> Dense(prod(S)) -> Reshape(S) -> layer -> Flatten -> Dense(3)``, mse loss:
the weight gradients of the first Dense carry the layer's input gradient, so matching
them (and the outputs and loss) to 1e-10 checks the layer's forward and backward.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from nexec import Input, Model, layers
from nexec.testing import assert_close, model_gradients, weights_by_name


def build(layer, shape: tuple, features: int = 5) -> Model:
    x = Input(shape=(features,), dtype="float64", name="x")
    h = layers.Dense(math.prod(shape), activation="tanh", name="first")(x)
    h = layers.Reshape(shape, name="to_shape")(h)
    h = layers.Flatten(name="flat")(layer(h))
    return Model(x, layers.Dense(3, name="last")(h))


def compare(layer, shape: tuple, torch_fn: Callable[[torch.Tensor], torch.Tensor],
            batch: int = 3, seed: int = 0) -> Model:
    """Outputs, loss and every weight gradient of nexec and PyTorch agree to 1e-10."""
    rng = np.random.default_rng(seed)
    model = build(layer, shape)
    x = rng.normal(size=(batch, 5))
    y = rng.normal(size=(batch, 3))
    predicted = model.predict(x)
    loss_fn, grads = model_gradients(model, x, y, "mse")
    w = {k: torch.tensor(v.copy(), requires_grad=True)
         for k, v in weights_by_name(model).items()}
    h = torch.tanh(torch.tensor(x) @ w["first/kernel"] + w["first/bias"])
    h = torch_fn(h.reshape(batch, *shape)).reshape(batch, -1)
    out = h @ w["last/kernel"] + w["last/bias"]
    loss = ((out - torch.tensor(y)) ** 2).mean()
    loss.backward()
    assert_close(predicted, out.detach().numpy(), rtol=1e-10, atol=1e-12, what="output")
    assert abs(loss_fn() - loss.item()) <= 1e-10 * abs(loss.item())
    for k, t in w.items():
        assert_close(grads[k], t.grad.numpy(), rtol=1e-10, atol=1e-14, what=f"grad {k}")
    return model


def nchw(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A torch op on channels-first images applied to NHWC (or NLC) tensors."""
    def wrapped(t: torch.Tensor) -> torch.Tensor:
        perm = (0, t.dim() - 1, *range(1, t.dim() - 1))
        back = (0, *range(2, t.dim()), 1)
        return fn(t.permute(*perm)).permute(*back)
    return wrapped


def tf_same_pads(size: int, pool: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding before and after one axis (computed independently)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + pool - size, 0)
    return total // 2, total - total // 2
