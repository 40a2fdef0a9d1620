"""Inference folds BatchNormalization into the weights of the layer before it.

Checked three ways: the inference graph against an independent reading of the model's
layers (which BatchNormalization may fold, by the rule written out again here), predictions
against plain NumPy (and against the same model planned without folding), and the prepared
weights against every way the weights change (fit, set_weights, writes in place).
"""
from __future__ import annotations

import contextlib
import copy
import re

import numpy as np
import pytest

from nexec import Input, Model, layers
from nexec.errors import PluginError
from nexec.kernels.cpu import normalization as N
from nexec.ops.base import Kernel
from nexec.planner import plan as plan_module
from nexec.planner.algorithms import use_conv_algorithm
from nexec.planner.schedule import build_schedule
from nexec.planner.verify import check_memory_plan
from nexec.plugins import registry


def _randomise(model, seed=0):
    """Weights far from their initial values (moving variances positive), so that a fold
    that dropped a factor or a shift would show."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        new = []
        for name, w in _weights(layer).items():
            v = rng.normal(size=w.shape).astype(w.dtype)
            new.append(np.abs(v) + 0.3 if name == "moving_variance" else v)
        layer.set_weights(new)


def _weights(layer):
    """Parameter name -> a copy of its value."""
    return dict(zip(layer._params, layer.get_weights()))


@contextlib.contextmanager
def _no_folding():
    """Plans made inside are made as before folding existed: the reference path."""
    saved = plan_module.fold_channel_affines
    plan_module.fold_channel_affines = lambda g, *args: g
    try:
        yield
    finally:
        plan_module.fold_channel_affines = saved


def _unfolded(model):
    with _no_folding():
        return model.plan().for_steps(False)


def _predict_unfolded(model, x):
    with _no_folding():
        clone = Model(model.inputs, model.outputs)  # the same layers, planned anew
        return clone.predict(x, verbose=0)


def conv_bn_relu(use_bias=False, dtype="float64", **conv):
    i = Input((5, 5, 3), dtype=dtype, name="x")
    c = layers.Conv2D(4, 3, padding="same", use_bias=use_bias, name="conv", **conv)(i)
    b = layers.BatchNormalization(name="bn")(c)
    return Model(i, layers.Activation("relu", name="act")(b))


# ----- the planner ------------------------------------------------------------------------------
def folded_layers(model):
    """Independently of the planner: the BatchNormalization layers inference may fold, by
    reading the model's layers: the input comes from a Conv2D/Dense/DepthwiseConv2D/
    SeparableConv2D (or Conv1D) without activation, which nothing else reads and which is
    not a model output."""
    foldable = (layers.Conv2D, layers.Dense, layers.DepthwiseConv2D, layers.SeparableConv2D,
                layers.Conv1D)
    readers: dict[int, int] = {}
    for node in model.nodes:
        for t in node.inputs:
            readers[t.id] = readers.get(t.id, 0) + 1
    outputs = {t.id for t in model.outputs}
    out = set()
    for node in model.nodes:
        if not isinstance(node.layer, layers.BatchNormalization):
            continue
        (t,) = node.inputs
        producer = t.node.layer if t.node is not None else None
        if isinstance(producer, foldable) and producer.activation == "linear" \
                and readers.get(t.id, 0) == 1 and t.id not in outputs:
            out.add(node.layer.name)
    return out


def test_conv_bn_relu_is_one_inference_step_and_three_training_steps():
    model = conv_bn_relu()
    plan = model.plan()
    assert [op.layer.name for op in plan.ops] == ["conv", "bn", "act"]
    inference = plan.for_steps(False)
    (op,) = inference.ops
    assert (op.layer.name, op.activation, op.fused) == ("conv", "relu", ["bn", "act"])
    assert op.affine.layer.name == "bn" and op.affine.weight == "kernel"
    assert op.affine.weight_shape == (3, 3, 3, 4) and op.affine.channels == 4
    assert inference.graph.outputs == [op.output]
    assert plan.for_steps(True) is plan
    text = str(plan)
    assert "inference: folded into conv" in text.split("bn (BatchNormalization)")[1]
    assert text.count("inference: folded into conv") == 2  # bn, then the act after it


@pytest.mark.parametrize("case", ["activation", "other reader", "model output", "after add",
                                  "second bn", "transpose"])
def test_what_does_not_fold(case):
    i = Input((4, 4, 2), name="x")
    extra = []
    if case == "activation":
        c = layers.Conv2D(3, 1, activation="relu", name="conv")(i)
    elif case == "after add":
        c = layers.Add(name="conv")([i, i])
    elif case == "transpose":
        c = layers.Conv2DTranspose(3, 1, name="conv")(i)
    else:
        c = layers.Conv2D(3, 1, name="conv")(i)
    if case == "other reader":
        extra = [layers.Dense(2)(c)]
    if case == "model output":
        extra = [c]
    b = layers.BatchNormalization(name="bn")(c)
    if case == "second bn":
        b = layers.BatchNormalization(name="bn2")(b)
    model = Model(i, [b, *extra])
    inference = model.plan().for_steps(False)
    remaining = {op.layer.name for op in inference.ops}
    expected = folded_layers(model)
    assert expected == ({"bn"} if case == "second bn" else set())
    assert not expected & remaining
    assert ("bn2" if case == "second bn" else "bn") in remaining


def test_every_fold_of_a_residual_network_matches_the_independent_reading():
    from benchmarks.peers_resnet import functional_resnet

    s = dict(image=(8, 8, 3), classes=5, widths=(4, 8), blocks=(1, 1), stem=(3, 1),
             bn_momentum=0.9, bn_epsilon=1e-3)
    model = functional_resnet(Input, Model, layers, s)
    inference = model.plan().for_steps(False)
    expected = folded_layers(model)
    bns = {layer.name for layer in model.layers if isinstance(layer, layers.BatchNormalization)}
    assert expected and expected == bns  # every BN of a ResNet follows a linear conv
    folded = {op.affine.layer.name for op in inference.ops if op.affine is not None}
    assert folded == expected
    assert not {op.layer.name for op in inference.ops} & expected
    for batch in (1, 4):
        sched = build_schedule(model.plan(), batch, training=False)
        check_memory_plan(sched.memory)
        kept = [name for name, b in sched.buffers.items()
                if b.role == "prepared" and any(f".{bn}." in name for bn in bns)]
        assert len(kept) == 3 * len(bns)  # scale and shift, weight, bias per fold
    _randomise(model, seed=9)
    x = np.random.default_rng(10).normal(size=(2, 8, 8, 3)).astype("float32")
    want = _predict_unfolded(model, x)
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-4, atol=1e-5)


# ----- the numbers ------------------------------------------------------------------------------
def _conv_ref(x, k, bias, strides=1):
    """'same' 2-D convolution in plain NumPy."""
    kh, kw = k.shape[:2]
    n, h, w, _ = x.shape
    ho, wo = -(-h // strides), -(-w // strides)
    ph = max((ho - 1) * strides + kh - h, 0)
    pw = max((wo - 1) * strides + kw - w, 0)
    xp = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    out = np.zeros((n, ho, wo, k.shape[-1]))
    for a in range(kh):
        for b in range(kw):
            patch = xp[:, a:a + strides * ho:strides, b:b + strides * wo:strides]
            out += patch @ k[a, b]
    return out + (0 if bias is None else bias)


def _bn_ref(y, layer):
    w = _weights(layer)
    inv = 1 / np.sqrt(w["moving_variance"] + layer.epsilon)
    return (y - w["moving_mean"]) * inv * w.get("gamma", 1) + w.get("beta", 0)


@pytest.mark.parametrize("algorithm", ["im2col", "winograd", "toeplitz", "direct"])
@pytest.mark.parametrize("use_bias", [False, True])
def test_conv_bn_relu_predicts_the_numpy_numbers(algorithm, use_bias):
    with use_conv_algorithm(algorithm):
        model = conv_bn_relu(use_bias)
        _randomise(model)
        assert len(model.plan().for_steps(False).ops) == 1
        x = np.random.default_rng(1).normal(size=(3, 5, 5, 3))
        got = model.predict(x, verbose=0)
    conv, bn = model.get_layer("conv"), model.get_layer("bn")
    w = conv.get_weights()
    want = np.maximum(_bn_ref(_conv_ref(x, w[0], w[1] if use_bias else None), bn), 0)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def _stack(kind):
    if kind == "dense":
        i = Input((6,), dtype="float64")
        y = layers.Dense(5)(i)
    elif kind == "dense rank 3":
        i = Input((3, 6), dtype="float64")
        y = layers.Dense(5, use_bias=False)(i)
    elif kind == "conv1d":
        i = Input((7, 3), dtype="float64")
        y = layers.Conv1D(4, 3, padding="same")(i)
    elif kind == "depthwise":
        i = Input((5, 5, 3), dtype="float64")
        y = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(i)
    else:  # separable
        i = Input((5, 5, 3), dtype="float64")
        y = layers.SeparableConv2D(4, 3, padding="same", depth_multiplier=2)(i)
    y = layers.BatchNormalization(center=kind != "dense", scale=kind != "conv1d")(y)
    return Model(i, layers.Activation("tanh")(y))


@pytest.mark.parametrize("kind", ["dense", "dense rank 3", "conv1d", "depthwise", "separable"])
def test_every_folding_layer_predicts_what_the_unfolded_plan_does(kind):
    model = _stack(kind)
    _randomise(model, seed=2)
    inference = model.plan().for_steps(False)
    assert len(inference.ops) == 1 and inference.ops[0].affine is not None
    assert len(_unfolded(model).ops) == 3
    x = np.random.default_rng(3).normal(size=(4, *model.inputs[0].feature_shape))
    np.testing.assert_allclose(model.predict(x, verbose=0), _predict_unfolded(model, x),
                               rtol=1e-12, atol=1e-13)


def test_float32_folding_stays_within_rounding_of_the_unfolded_plan():
    model = conv_bn_relu(True, dtype="float32")
    _randomise(model, seed=4)
    x = np.random.default_rng(5).normal(size=(3, 5, 5, 3)).astype("float32")
    got, want = model.predict(x, verbose=0), _predict_unfolded(model, x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())


def test_prepared_folds_follow_fit_set_weights_and_writes_in_place():
    model = conv_bn_relu(True)
    _randomise(model, seed=6)
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(8, 5, 5, 3)), rng.normal(size=(8, 5, 5, 4))
    conv, bn = model.get_layer("conv"), model.get_layer("bn")

    def numpy_predict():
        w = conv.get_weights()
        return np.maximum(_bn_ref(_conv_ref(x, w[0], w[1]), bn), 0)

    before = model.predict(x, verbose=0)
    np.testing.assert_allclose(before, numpy_predict(), rtol=1e-12, atol=1e-13)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)  # moves weights and moving statistics
    after = model.predict(x, verbose=0)
    assert np.abs(after - before).max() > 1e-3
    np.testing.assert_allclose(after, numpy_predict(), rtol=1e-12, atol=1e-13)
    weights = bn.get_weights()
    weights[0] = weights[0] * 2  # gamma
    bn.set_weights(weights)
    np.testing.assert_allclose(model.predict(x, verbose=0), numpy_predict(), rtol=1e-12,
                               atol=1e-13)
    bn.moving_mean[:] += 1.0  # a view of the flat parameters: seen at the next call
    np.testing.assert_allclose(model.predict(x, verbose=0), numpy_predict(), rtol=1e-12,
                               atol=1e-13)
    loss = model.evaluate(x, y, verbose=0)
    np.testing.assert_allclose(loss, np.mean((numpy_predict() - y) ** 2), rtol=1e-10)


# ----- the kernels ------------------------------------------------------------------------------
@pytest.mark.parametrize("affine", [True, False])
def test_affine_and_fold_kernels_match_numpy(affine):
    rng = np.random.default_rng(8)
    c = 5
    gamma, beta = (rng.normal(size=c), rng.normal(size=c)) if affine else (np.empty(0),) * 2
    mean, var = rng.normal(size=c), rng.random(c) + 0.2
    coef = np.full((2, c), np.nan)
    N.batchnorm_affine(gamma, beta, 1e-3, mean, var, coef)
    a = (gamma if affine else 1) / np.sqrt(var + 1e-3)
    b = (beta if affine else 0) - mean * a
    np.testing.assert_allclose(coef, [a, b], rtol=1e-14)
    w, bias = rng.normal(size=(7, c)), rng.normal(size=c) if affine else np.empty(0)
    w_out, b_out = np.full_like(w, np.nan), np.full(c, np.nan)
    N.fold_channel_affine(w, bias, coef, w_out, b_out)
    np.testing.assert_allclose(w_out, w * a, rtol=1e-14)
    np.testing.assert_allclose(b_out, (bias * a if affine else 0) + b, rtol=1e-14, atol=1e-15)
    # the fold is exact algebra: x @ w_out + b_out == (x @ w + bias) * a + b
    x = rng.normal(size=(3, 7))
    np.testing.assert_allclose(x @ w_out + b_out, (x @ w + (bias if affine else 0)) * a + b,
                               rtol=1e-12, atol=1e-12)


# ----- plugin kernels that claim the capabilities ----------------------------------------------
class _AffineWithoutCalls(Kernel):
    """Says it applies a channel affine, but has no ``channel_affine``."""

    layer_type, device = "BatchNormalization", "cpu"
    applies_channel_affine = True


@pytest.mark.parametrize("broken", ["subclass", "not callable"])
def test_a_kernel_claiming_an_affine_without_its_calls_is_a_plugin_error(monkeypatch, broken):
    kernels = registry().kernels
    if broken == "subclass":
        kernel = _AffineWithoutCalls()
    else:
        kernel = copy.copy(kernels[("BatchNormalization", "cpu")])
        kernel.channel_affine = None
    monkeypatch.setitem(kernels, ("BatchNormalization", "cpu"), kernel)
    with pytest.raises(PluginError, match="applies_channel_affine but does not implement "
                                          r"channel_affine\(call\)"):
        conv_bn_relu().plan()


@pytest.mark.parametrize("names", ["kernel", ("kernel",), ("kernel", 1)])
def test_a_malformed_folds_channel_affine_is_a_plugin_error(monkeypatch, names):
    kernels = registry().kernels
    kernel = copy.copy(kernels[("Conv2D", "cpu")])
    kernel.folds_channel_affine = names
    monkeypatch.setitem(kernels, ("Conv2D", "cpu"), kernel)
    with pytest.raises(PluginError, match=r"folds_channel_affine must be None or a \(weight, "
                                          "bias\\) pair of parameter names, got " + re.escape(
                                              repr(names))):
        conv_bn_relu().plan()
