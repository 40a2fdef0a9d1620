"""Subtract, Multiply, Average, Maximum, Minimum, Dot and the functional aliases: forward
against NumPy, gradients against finite differences, both against PyTorch float64, fit, and
the CUDA simulator."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nexec
from nexec import Input, Model, layers
from nexec.errors import ShapeError
from nexec.kernels.cpu.merge import (
    MERGE_MAX,
    MERGE_MIN,
    MERGE_MUL,
    MERGE_SUB,
    MERGE_SUM,
    dot_backward,
    dot_forward,
    extreme_grad,
    merge_forward,
)
from nexec.kernels.cuda import backend
from nexec.testing import assert_close, check_gradients, model_gradients, weights_by_name
from tests.layers.helpers_merge import branches, compare_with_torch, torch_dense

NUMPY = {"Subtract": lambda xs: xs[0] - xs[1], "Multiply": lambda xs: np.prod(xs, axis=0),
         "Average": lambda xs: np.mean(xs, axis=0), "Maximum": lambda xs: np.max(xs, axis=0),
         "Minimum": lambda xs: np.min(xs, axis=0)}
TORCH = {"Subtract": lambda ts: ts[0] - ts[1],
         "Multiply": lambda ts: ts[0] * ts[1] * ts[2] if len(ts) == 3 else ts[0] * ts[1],
         "Average": lambda ts: sum(ts) / len(ts),
         "Maximum": lambda ts: torch.stack(ts).max(dim=0).values,
         "Minimum": lambda ts: torch.stack(ts).min(dim=0).values}
COUNT = {"Subtract": 2, "Multiply": 3, "Average": 3, "Maximum": 3, "Minimum": 2}


@pytest.mark.parametrize("op,ref", [(MERGE_SUM, np.add), (MERGE_SUB, np.subtract),
                                    (MERGE_MUL, np.multiply), (MERGE_MAX, np.maximum),
                                    (MERGE_MIN, np.minimum)])
def test_merge_kernel_matches_numpy_strided_and_in_place(op, ref):
    rng = np.random.default_rng(op)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    big = np.full((3, 7), 9.0)
    merge_forward(a, b, op, big[:, 1:5])
    assert_close(big[:, 1:5], ref(a, b), rtol=0, what="merge")
    assert np.all(big[:, [0, 5, 6]] == 9.0)
    c = a.copy()
    merge_forward(c, b, op, c)
    assert_close(c, ref(a, b), rtol=0, what="merge in place")


def test_extreme_grad_gives_a_tie_to_the_first_input():
    a = np.array([[1.0, 2.0, 3.0]])
    b = np.array([[1.0, 5.0, 0.0]])
    y = np.maximum(a, b)
    rest = np.array([[10.0, 20.0, 30.0]])
    da, db = np.empty_like(a), np.empty_like(b)
    extreme_grad(a, y, rest, da)
    extreme_grad(b, y, rest, db)
    assert da.tolist() == [[10.0, 0.0, 30.0]] and db.tolist() == [[0.0, 20.0, 0.0]]
    assert not rest.any()


@pytest.mark.parametrize("normalize", [False, True])
def test_dot_kernels_match_numpy_and_finite_differences(normalize):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    a[3] = 1e-9  # below the epsilon: the norm is clamped (also under the FD steps)
    out = np.empty((4, 1))
    dot_forward(a, b, normalize, out)

    def ref() -> np.ndarray:
        if not normalize:
            return (a * b).sum(axis=1, keepdims=True)
        na = np.sqrt(np.maximum((a * a).sum(axis=1, keepdims=True), 1e-12))
        nb = np.sqrt(np.maximum((b * b).sum(axis=1, keepdims=True), 1e-12))
        return ((a / na) * (b / nb)).sum(axis=1, keepdims=True)

    assert_close(out, ref(), rtol=1e-14, what="dot")
    r = rng.normal(size=(4, 1))
    da, db = np.empty_like(a), np.empty_like(b)
    dot_backward(a, b, r, normalize, da, db)
    check_gradients(lambda: float((ref() * r).sum()), {"a": da, "b": db}, {"a": a, "b": b},
                    rtol=1e-6, eps=1e-7)


@pytest.mark.parametrize("name", sorted(NUMPY))
def test_layer_forward_numpy_gradients_and_torch(name):
    n = COUNT[name]
    rng = np.random.default_rng(len(name))
    ins, hs, denses = branches(n, (2, 3))  # rank 3: (batch, 2, 3)
    merged = getattr(layers, name)(name="m")(hs)
    head = layers.Dense(2, name="head")
    model = Model(ins, head(merged))
    xs = [rng.normal(size=(5, 2, 3)) for _ in range(n)]
    y = rng.normal(size=(5, 2, 2))

    probe = Model(ins, merged)
    expected = NUMPY[name]([x @ d.get_weights()[0] + d.get_weights()[1]
                            for x, d in zip(xs, denses)])
    assert_close(probe.predict(xs, verbose=0), expected, rtol=1e-14, what=name)

    def torch_forward(ts):
        leaves, hs_t = {}, []
        for i, (t, d) in enumerate(zip(ts, denses)):
            h, (w, b) = torch_dense(t, d)
            leaves.update({f"d{i}/kernel": w, f"d{i}/bias": b})
            hs_t.append(h)
        out, (w, b) = torch_dense(TORCH[name](hs_t), head)
        leaves.update({"head/kernel": w, "head/bias": b})
        return out, leaves

    compare_with_torch(model, xs, y, torch_forward)
    loss_fn, grads = model_gradients(model, xs, y, "mse")
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


@pytest.mark.parametrize("normalize", [False, True])
def test_dot_layer_against_torch(normalize):
    rng = np.random.default_rng(3)
    ins, hs, denses = branches(2, (3,))
    head = layers.Dense(2, name="head")
    model = Model(ins, head(layers.Dot(axes=-1, normalize=normalize)(hs)))
    xs = [rng.normal(size=(6, 3)) for _ in range(2)]
    y = rng.normal(size=(6, 2))

    def torch_forward(ts):
        (h0, (w0, b0)), (h1, (w1, b1)) = (torch_dense(t, d) for t, d in zip(ts, denses))
        if normalize:
            h0 = torch.nn.functional.normalize(h0, dim=1)
            h1 = torch.nn.functional.normalize(h1, dim=1)
        out, (w, b) = torch_dense((h0 * h1).sum(dim=1, keepdim=True), head)
        return out, {"d0/kernel": w0, "d0/bias": b0, "d1/kernel": w1, "d1/bias": b1,
                     "head/kernel": w, "head/bias": b}

    compare_with_torch(model, xs, y, torch_forward)


def test_functional_aliases_build_the_layers():
    a, b = Input(shape=(4,)), Input(shape=(4,))
    assert layers.add([a, b]).producer.layer.__class__ is layers.Add
    assert type(layers.subtract([a, b]).producer.layer) is layers.Subtract
    assert type(layers.multiply([a, b]).producer.layer) is layers.Multiply
    assert type(layers.average([a, b]).producer.layer) is layers.Average
    assert type(layers.maximum([a, b]).producer.layer) is layers.Maximum
    assert type(layers.minimum([a, b]).producer.layer) is layers.Minimum
    assert layers.concatenate([a, b], axis=-1, name="cat").shape == (None, 8)
    d = layers.dot([a, b], axes=1, normalize=True)
    assert d.shape == (None, 1) and d.producer.layer.normalize


def test_bad_arguments_and_shapes():
    a, b, c = Input(shape=(4,)), Input(shape=(4,)), Input(shape=(5,))
    with pytest.raises(ShapeError, match="exactly 2 inputs"):
        layers.Subtract()([a, b, b])
    with pytest.raises(ShapeError, match="one shape"):
        layers.Multiply()([a, c])
    with pytest.raises(ValueError, match="axes must be an int or a pair"):
        layers.Dot(axes="x")
    with pytest.raises(ShapeError, match="2-D inputs"):
        layers.Dot(axes=-1)([Input(shape=(2, 4)), Input(shape=(2, 4))])
    with pytest.raises(ShapeError, match="one known size"):
        layers.Dot(axes=1)([a, c])


def test_config_round_trip():
    layer = layers.Dot(axes=[1, 1], normalize=True, name="dt")
    again = layers.Dot.from_config(layer.get_config())
    assert again.axes == [1, 1] and again.normalize and again.name == "dt"


def test_fit_and_predict():
    rng = np.random.default_rng(0)
    ins, hs, _ = branches(2, (3,), width=8)
    h = layers.Activation("relu")(layers.maximum([layers.multiply(hs), layers.subtract(hs)]))
    model = Model(ins, layers.Dense(1)(layers.average([h, h])))
    model.compile(optimizer=nexec.optimizers.Adam(0.02), loss="mse")
    xs = [rng.normal(size=(64, 3)).astype("float32") for _ in range(2)]
    y = (xs[0] * xs[1]).sum(axis=1, keepdims=True)
    hist = model.fit(xs, y, epochs=40, batch_size=16, verbose=0)
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]


@pytest.mark.cudasim
@pytest.mark.skipif(not backend.is_available(), reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1")
def test_same_training_on_cuda():
    """Two SGD steps on the CUDA simulator match the CPU (forward and every gradient)."""
    rng = np.random.default_rng(4)
    xs = [rng.normal(size=(3, 4)) for _ in range(2)]
    y = rng.normal(size=(3, 2))
    results = {}
    for device in ("cpu", "cuda"):
        nexec.clear_session()
        nexec.set_random_seed(5)
        ins, hs, _ = branches(2, (4,), width=3)
        m = layers.concatenate([layers.minimum(hs), layers.multiply(hs), layers.average(hs),
                                layers.subtract(hs), layers.dot(hs, axes=1, normalize=True),
                                layers.maximum(hs)])
        model = Model(ins, layers.Dense(2, name="head")(m))
        model.compile(optimizer=nexec.optimizers.SGD(0.1), loss="mse", device=device)
        model.fit(xs, y, epochs=2, batch_size=3, verbose=0, shuffle=False)
        results[device] = model.predict(xs, verbose=0), weights_by_name(model)
    assert_close(results["cuda"][0], results["cpu"][0], rtol=1e-10, what="predict on cuda")
    for name, w in results["cpu"][1].items():
        assert_close(results["cuda"][1][name], w, rtol=1e-10, what=f"{name} after 2 steps")
