"""Dense (and fused activations) on inputs of rank 3 and 4: the last axis, as Keras."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nexec import Input, Model, layers
from nexec.errors import ShapeError
from nexec.testing import assert_close, check_gradients, model_gradients, weights_by_name
from tests.layers.helpers_merge import compare_with_torch, torch_dense


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 3)])
def test_dense_on_any_rank_matches_numpy_torch_and_finite_differences(shape):
    rng = np.random.default_rng(len(shape))
    x_in = Input(shape=shape, dtype="float64", name="x")
    d1 = layers.Dense(5, activation="softmax", name="d1")
    d2 = layers.Dense(2, activation="elu", name="d2")
    model = Model(x_in, d2(d1(x_in)))
    assert model.output.shape == (None, *shape[:-1], 2)
    x = rng.normal(size=(3, *shape))
    y = rng.normal(size=(3, *shape[:-1], 2))
    w1, b1 = d1.get_weights()
    z = x @ w1 + b1
    h = np.exp(z - z.max(-1, keepdims=True))
    h /= h.sum(-1, keepdims=True)
    w2, b2 = d2.get_weights()
    z = h @ w2 + b2
    assert_close(model.predict(x, verbose=0), np.where(z > 0, z, np.expm1(z)), rtol=1e-13,
                 what="forward")

    def torch_forward(ts):
        h, (wa, ba) = torch_dense(ts[0], d1)
        out, (wb, bb) = torch_dense(torch.softmax(h, dim=-1), d2)
        return torch.nn.functional.elu(out), {"d1/kernel": wa, "d1/bias": ba,
                                              "d2/kernel": wb, "d2/bias": bb}

    compare_with_torch(model, [x], y, torch_forward)
    loss_fn, grads = model_gradients(model, x, y, "mse")
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def test_an_unknown_last_axis_is_refused_before_dense_sees_it():
    # Every sample dimension must be known (buffers are planned for fixed shapes).
    with pytest.raises(ShapeError, match="unknown dimension"):
        layers.Dense(2)(Input(shape=(3, None)))
