"""Conv1D, DepthwiseConv2D, SeparableConv2D and Conv2DTranspose as layers: Keras' weights,
PyTorch float64 with copied weights (forward and gradients), finite differences, fit and
predict, no allocation per step, and the CUDA story."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nexec
from nexec import Input, Model, layers
from nexec.errors import PluginError
from nexec.kernels.cuda import backend
from nexec.ops.geometry import conv1d_geometry, conv2d_transpose_geometry
from nexec.testing import (
    array_arguments,
    check_gradients,
    count_allocations,
    model_gradients,
    weights_by_name,
)
from tests.kernels.test_conv_more import tf_pad

TORCH_ACT = {"linear": lambda z: z, "relu": torch.relu, "tanh": torch.tanh,
             "sigmoid": torch.sigmoid, "softmax": lambda z: torch.softmax(z, dim=-1)}


# ----------------------------------------------------------------------------- torch twins


def torch_layer(layer, x, w):
    """The layer's output in PyTorch, channels last, from its weights ``w`` (tensors)."""
    bias = w[-1] if layer.use_bias else None
    act = TORCH_ACT[layer.activation]
    if isinstance(layer, layers.Conv1D):
        (k,), (s,) = layer.kernel_size, layer.strides
        length = x.shape[1]
        if layer.padding == "causal":
            pads = (k - 1, 0)
        else:
            out, before = conv1d_geometry(length, k, s, layer.padding)
            pads = (before, max((out - 1) * s + k - length - before, 0))
        z = F.conv1d(F.pad(x.permute(0, 2, 1), pads), w[0].permute(2, 1, 0), bias, stride=s)
        return act(z.permute(0, 2, 1))
    h, wd, c = x.shape[1:]
    (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
    xt = x.permute(0, 3, 1, 2)
    if isinstance(layer, layers.Conv2DTranspose):
        ho, wo, pt, pl = conv2d_transpose_geometry(h, wd, kh, kw, sh, sw, layer.padding)
        full = F.conv_transpose2d(xt, w[0].permute(3, 2, 0, 1), stride=(sh, sw))
        hf, wf = full.shape[2:]
        z = F.pad(full, (-pl, wo - (wf - pl), -pt, ho - (hf - pt))).permute(0, 2, 3, 1)
        return act(z if bias is None else z + bias)
    dm = layer.depth_multiplier
    xt = F.pad(xt, tf_pad(h, wd, kh, kw, sh, sw, layer.padding))
    dk = w[0].permute(2, 3, 0, 1).reshape(c * dm, 1, kh, kw)
    if isinstance(layer, layers.DepthwiseConv2D):
        z = F.conv2d(xt, dk, bias, stride=(sh, sw), groups=c)
    else:
        z = F.conv2d(xt, dk, None, stride=(sh, sw), groups=c)
        z = F.conv2d(z, w[1].permute(3, 2, 0, 1), bias)
    return act(z.permute(0, 2, 3, 1))


def torch_loss_and_grads(model, x, y):
    """MSE of the model (a chain of conv layers) in PyTorch and its weight gradients."""
    params = {layer.name: [torch.tensor(p, requires_grad=True) for p in layer.get_weights()]
              for layer in model.layers[1:]}
    h = torch.tensor(x)
    for layer in model.layers[1:]:
        h = torch_layer(layer, h, params[layer.name])
    loss = ((h - torch.tensor(y)) ** 2).mean()
    loss.backward()
    grads = {f"{layer.name}/{name}": p.grad.numpy()
             for layer in model.layers[1:] for name, p in zip(layer._params, params[layer.name])}
    return h.detach().numpy(), float(loss.detach()), grads


def _chain(shape, *stack):
    i = Input(shape=shape, dtype="float64")
    h = i
    for layer in stack:
        h = layer(h)
    return Model(i, h)


def _nudge_biases(model, seed=0):
    """Non-zero biases: keeps ReLU pre-activations off the kink and tests the bias path."""
    rng = np.random.default_rng(seed)
    for layer in model.layers[1:]:
        if getattr(layer, "use_bias", False):
            w = layer.get_weights()
            layer.set_weights([*w[:-1], rng.normal(0.0, 0.2, w[-1].shape)])


MODELS = {
    "conv1d-causal": lambda: _chain((9, 3), layers.Conv1D(4, 3, padding="causal",
                                                          activation="tanh"),
                                    layers.Conv1D(3, 2, strides=2, padding="causal")),
    "conv1d-same-valid": lambda: _chain((9, 3), layers.Conv1D(4, 4, 2, padding="same",
                                                              activation="relu"),
                                        layers.Conv1D(2, 3, use_bias=False,
                                                      activation="softmax")),
    "depthwise": lambda: _chain((6, 5, 3), layers.DepthwiseConv2D(3, padding="same",
                                                                  depth_multiplier=2,
                                                                  activation="relu"),
                                layers.DepthwiseConv2D((2, 3), strides=(2, 1),
                                                       activation="sigmoid")),
    "separable": lambda: _chain((6, 5, 3), layers.SeparableConv2D(4, 3, padding="same",
                                                                  depth_multiplier=2,
                                                                  activation="tanh"),
                                layers.SeparableConv2D(3, 2, strides=2, use_bias=False,
                                                       activation="softmax")),
    "transpose": lambda: _chain((3, 4, 2), layers.Conv2DTranspose(3, 3, strides=2,
                                                                  padding="same",
                                                                  activation="relu"),
                                layers.Conv2DTranspose(2, (2, 3), strides=(1, 2),
                                                       activation="tanh")),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_and_gradients_match_torch_float64(name):
    model = MODELS[name]()
    _nudge_biases(model)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, *model.inputs[0].shape[1:]))
    y = rng.normal(size=(3, *model.outputs[0].shape[1:]))
    ref_out, ref_loss, ref_grads = torch_loss_and_grads(model, x, y)
    np.testing.assert_allclose(model.predict(x, verbose=0), ref_out, rtol=0, atol=1e-10)
    loss_fn, grads = model_gradients(model, x, y, "mse")
    assert abs(loss_fn() - ref_loss) < 1e-10
    assert grads.keys() == ref_grads.keys()
    for key, g in ref_grads.items():
        np.testing.assert_allclose(grads[key], g, rtol=0, atol=1e-10, err_msg=key)


def test_whole_model_gradients_match_finite_differences():
    i = Input(shape=(6, 6, 2), dtype="float64")
    h = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="tanh")(i)
    h = layers.SeparableConv2D(3, 3, strides=2, padding="same", activation="relu")(h)
    h = layers.Conv2DTranspose(2, 3, strides=2, padding="same", activation="tanh")(h)
    out = layers.Dense(3, activation="softmax")(layers.Flatten()(h))
    model = Model(i, out)
    _nudge_biases(model, seed=2)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 6, 6, 2))
    y = np.eye(3)[rng.integers(0, 3, 4)]
    loss_fn, grads = model_gradients(model, x, y, "categorical_crossentropy")
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)

    seq = Input(shape=(7, 2), dtype="float64")
    c = layers.Conv1D(3, 3, padding="causal", activation="tanh")(seq)
    c = layers.Conv1D(2, 2, strides=2, padding="same")(c)
    model = Model(seq, layers.Dense(1)(layers.Flatten()(c)))
    _nudge_biases(model, seed=4)
    x = rng.normal(size=(4, 7, 2))
    loss_fn, grads = model_gradients(model, x, rng.normal(size=(4, 1)), "mse")
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


# ----------------------------------------------------------------------------- Keras surface


def test_weights_have_keras_names_order_and_shapes():
    i = Input(shape=(8, 8, 3))
    seq = Input(shape=(10, 3))
    c1 = layers.Conv1D(5, 3)
    dw = layers.DepthwiseConv2D(3, depth_multiplier=2)
    sep = layers.SeparableConv2D(4, (3, 2), depth_multiplier=3)
    tr = layers.Conv2DTranspose(6, (2, 3))
    c1(seq), dw(i), sep(i), tr(i)
    assert [w.shape for w in c1.get_weights()] == [(3, 3, 5), (5,)]
    assert list(dw._params) == ["kernel", "bias"]
    assert [w.shape for w in dw.get_weights()] == [(3, 3, 3, 2), (6,)]
    assert list(sep._params) == ["depthwise_kernel", "pointwise_kernel", "bias"]
    assert [w.shape for w in sep.get_weights()] == [(3, 2, 3, 3), (1, 1, 9, 4), (4,)]
    assert [w.shape for w in tr.get_weights()] == [(2, 3, 6, 3), (6,)]
    assert sep.depthwise_kernel.shape == (3, 2, 3, 3)


@pytest.mark.parametrize("make, shape, expected", [
    (lambda: layers.Conv1D(4, 3), (10, 2), (8, 4)),
    (lambda: layers.Conv1D(4, 3, strides=2, padding="same"), (10, 2), (5, 4)),
    (lambda: layers.Conv1D(4, 3, strides=2, padding="causal"), (10, 2), (5, 4)),
    (lambda: layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=3),
     (7, 6, 2), (4, 3, 6)),
    (lambda: layers.SeparableConv2D(5, 3), (7, 6, 2), (5, 4, 5)),
    (lambda: layers.Conv2DTranspose(5, 3, strides=2), (4, 3, 2), (9, 7, 5)),
    (lambda: layers.Conv2DTranspose(5, 2, strides=3), (4, 3, 2), (12, 9, 5)),
    (lambda: layers.Conv2DTranspose(5, 4, strides=2, padding="same"), (4, 3, 2), (8, 6, 5)),
])
def test_output_shapes_are_keras(make, shape, expected):
    assert make()(Input(shape=shape)).shape == (None, *expected)


@pytest.mark.parametrize("cls", ["Conv1D", "DepthwiseConv2D", "SeparableConv2D",
                                 "Conv2DTranspose"])
def test_config_round_trip(cls):
    args = {} if cls == "DepthwiseConv2D" else {"filters": 3}
    layer = getattr(layers, cls)(kernel_size=2, strides=2, padding="same", activation="relu",
                                 use_bias=False, **args)
    again = type(layer).from_config(layer.get_config())
    assert again.get_config() == layer.get_config()


@pytest.mark.parametrize("make, match", [
    (lambda: layers.Conv1D(4, 3, dilation_rate=2), "dilation_rate=2 is not supported"),
    (lambda: layers.DepthwiseConv2D(3, dilation_rate=(1, 2)), "dilation_rate"),
    (lambda: layers.Conv1D(4, 3, groups=2), "groups=2"),
    (lambda: layers.Conv1D(4, 3, padding="full"), "'valid' or 'same' or 'causal'"),
    (lambda: layers.DepthwiseConv2D(3, padding="causal"), "padding must be 'valid' or"),
    (lambda: layers.SeparableConv2D(0, 3), "filters"),
    (lambda: layers.DepthwiseConv2D(3, depth_multiplier=0), "depth_multiplier"),
    (lambda: layers.Conv2DTranspose(2, 3, output_padding=1), "output_padding=1"),
    (lambda: layers.Conv2DTranspose(2, 3, data_format="channels_first"), "data_format"),
    (lambda: layers.Conv1D(2, (3, 3)), "kernel_size"),
])
def test_bad_arguments_are_refused_clearly(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_shape_errors_say_what_does_not_fit():
    with pytest.raises(nexec.errors.ShapeError, match="does not fit"):
        layers.Conv1D(2, 5)(Input(shape=(3, 2)))
    with pytest.raises(nexec.errors.ShapeError, match="rank-3"):
        layers.Conv1D(2, 2)(Input(shape=(3, 2, 1)))
    with pytest.raises(nexec.errors.ShapeError, match="rank-4"):
        layers.DepthwiseConv2D(2)(Input(shape=(3, 2)))


# ----------------------------------------------------------------------------- training


def _all_four(dtype="float32"):
    i = Input(shape=(8, 8, 2), dtype=dtype)
    h = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu")(i)
    h = layers.SeparableConv2D(4, 3, strides=2, padding="same", activation="relu")(h)
    h = layers.Conv2DTranspose(3, 3, strides=2, padding="same", activation="relu")(h)
    img = layers.Flatten()(h)
    seq = Input(shape=(12, 3), dtype=dtype)
    c = layers.Conv1D(4, 3, padding="causal", activation="relu")(seq)
    c = layers.Conv1D(4, 3, strides=2, activation="relu")(c)
    joined = layers.Concatenate()([img, layers.Flatten()(c)])
    return Model([i, seq], layers.Dense(3, activation="softmax")(joined))


def _data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = [rng.normal(size=(n, 8, 8, 2)).astype(np.float32),
         rng.normal(size=(n, 12, 3)).astype(np.float32)]
    labels = (x[0][:, :4, :4].mean(axis=(1, 2, 3)) > 0).astype(int) \
        + (x[1][:, :6].mean(axis=(1, 2)) > 0).astype(int)
    return x, np.eye(3, dtype=np.float32)[labels]


def test_fit_and_predict():
    model = _all_four()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    x, y = _data()
    history = model.fit(x, y, epochs=8, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    p = model.predict(x, batch_size=7, verbose=0)
    assert p.shape == (48, 3) and np.allclose(p.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(model.predict([a[:5] for a in x], verbose=0), p[:5], rtol=1e-5, atol=1e-6)


def test_training_steps_allocate_nothing():
    model = _all_four()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x, y = _data()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    ex = model._trainer.train_executor
    prog = ex.program(16)
    losses, counts = [0.0], [0] * len(prog.metrics)

    def steps(k):
        for s in range(k):
            for dst, src in zip(prog.inputs + prog.targets, [*x, y]):
                np.copyto(dst, src[s * 16:(s + 1) * 16])
            ex.train_step(prog, losses, counts)

    steps(2)
    nrt, numpy_blocks = count_allocations(lambda: steps(3))
    assert nrt == 3 * array_arguments(prog)
    assert numpy_blocks == []


# ----------------------------------------------------------------------------- CUDA


on_cuda = pytest.mark.skipif(not backend.is_available(),
                             reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1")


@pytest.mark.cudasim
@on_cuda
def test_conv1d_on_cuda_matches_the_cpu():
    def fit(device):
        nexec.clear_session()
        nexec.set_random_seed(5)
        model = MODELS["conv1d-causal"]()
        model.compile(optimizer="sgd", loss="mse", device=device)
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(4, 9, 3)), rng.normal(size=(4, 5, 3))
        model.fit(x, y, epochs=1, batch_size=2, verbose=0, shuffle=False)
        return model.get_weights(), model.predict(x, verbose=0)

    cpu_w, cpu_p = fit("cpu")
    gpu_w, gpu_p = fit("cuda")
    for a, b in zip(cpu_w, gpu_w):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gpu_p, cpu_p, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["depthwise", "separable", "transpose"])
def test_cpu_only_layers_say_so_on_cuda(name):
    model = MODELS[name]()
    with pytest.raises(PluginError, match="no kernel for device 'cuda'; it has kernels for: cpu"):
        model.compile(optimizer="sgd", loss="mse", device="cuda")
        model.predict(np.zeros((1, *model.inputs[0].shape[1:])), verbose=0)


def test_conv1d_branches_write_into_their_concatenation_slices():
    seq = Input(shape=(9, 3), dtype="float64")
    a = layers.Conv1D(4, 3, padding="causal", activation="relu")
    b = layers.Conv1D(2, 2, padding="same", activation="tanh")
    model = Model(seq, layers.Concatenate()([a(seq), b(seq)]))
    assert model.memory_plan(4, False).concat_in_place
    _nudge_biases(model)
    x = np.random.default_rng(6).normal(size=(4, 9, 3))
    xt = torch.tensor(x)
    ref = torch.cat([torch_layer(layer, xt, [torch.tensor(w) for w in layer.get_weights()])
                     for layer in (a, b)], dim=-1)
    np.testing.assert_allclose(model.predict(x, verbose=0), ref.numpy(), rtol=0, atol=1e-12)
