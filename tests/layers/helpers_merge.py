"""Shared helpers of the merge/activation layer tests: a nexec model and its PyTorch twin."""
from __future__ import annotations

import numpy as np
import torch

from nexec import Input, Model, layers
from nexec.testing import assert_close, model_gradients


def branches(n: int, shape: tuple, width: int = 4):
    """n float64 inputs, each through its own Dense(width) (so every input has a gradient)."""
    ins = [Input(shape=shape, dtype="float64", name=f"in{i}") for i in range(n)]
    denses = [layers.Dense(width, name=f"d{i}") for i in range(n)]
    return ins, [d(x) for d, x in zip(denses, ins)], denses


def torch_dense(x: torch.Tensor, layer) -> torch.Tensor:  # noqa: ANN001
    w, b = (torch.tensor(a, requires_grad=True) for a in layer.get_weights())
    return x @ w + b, (w, b)


def compare_with_torch(model: Model, xs: list, y: np.ndarray, torch_forward) -> None:  # noqa: ANN001
    """Loss and every parameter gradient of ``model`` (mse) against ``torch_forward``.

    ``torch_forward(inputs)`` returns ``(prediction, {"layer/param": leaf tensor})``.
    """
    pred = model.predict(xs, verbose=0)
    loss_fn, grads = model_gradients(model, xs, y, "mse")
    out, leaves = torch_forward([torch.tensor(x) for x in xs])
    assert_close(pred, out.detach().numpy(), rtol=1e-10, what="forward vs torch")
    loss = torch.nn.functional.mse_loss(out, torch.tensor(y))
    loss.backward()
    assert abs(loss_fn() - loss.item()) <= 1e-10 * max(1.0, abs(loss.item()))
    for name, leaf in leaves.items():
        assert_close(grads[name], leaf.grad.numpy(), rtol=1e-10, what=f"gradient of {name}")
