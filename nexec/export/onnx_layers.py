"""How each built-in layer becomes ONNX nodes: one exporter per layer class.

Every exporter is ``exporter(builder, layer, inputs) -> output name(s)`` on an
:class:`nexec.export.onnx.OnnxBuilder` (the contract is in docs/plugins.md). They are
registered by ``nexec.plugins.builtin`` through the ``nexec_onnx_exporters`` hook, as a
plugin's are. This module imports no ``onnx``: it only asks the builder for nodes.

Keras' layouts become ONNX's here: kernels ``(kh, kw, cin, f)`` are transposed to
``(f, cin, kh, kw)``, images go NHWC -> NCHW around each Conv/Pool (the builder folds a
transpose that undoes the previous one), LSTM gates go from Keras' ``i, f, c, o`` to ONNX's
``i, o, f, c``, a GRU is ONNX's with ``linear_before_reset=1`` (Keras' ``reset_after``).
Inference forms only: Dropout and noise layers are identities, BatchNormalization uses its
moving statistics.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from nexec.errors import ExportError
from nexec.kernels.activations import (
    ELU,
    EXPONENTIAL,
    GELU,
    HARD_SIGMOID,
    LEAKY_RELU,
    LEAKY_SLOPE,
    LINEAR,
    LOG_SOFTMAX,
    RELU,
    RELU6,
    SELU,
    SELU_ALPHA,
    SELU_SCALE,
    SIGMOID,
    SILU,
    SOFTMAX,
    SOFTPLUS,
    SOFTSIGN,
    TANH,
)
from nexec.layers.recurrent import GRU, LSTM
from nexec.ops.geometry import conv2d_transpose_geometry, padding_before
from nexec.plugins import registry

if TYPE_CHECKING:
    from nexec.export.onnx import OnnxBuilder

__all__ = ["EXPORTERS", "activation", "same_pads"]

_INT64_MIN = -(2**63)


# ----- activations ------------------------------------------------------------------------
def activation(b: OnnxBuilder, x: str, name: str) -> str:
    """``name`` (a registered activation) applied to ``x``; softmaxes on the last axis."""
    act = registry().activation(name)
    code = act.code
    if code == LINEAR:
        return x
    simple = {RELU: "Relu", SIGMOID: "Sigmoid", TANH: "Tanh", SOFTPLUS: "Softplus",
              SOFTSIGN: "Softsign", EXPONENTIAL: "Exp"}
    if code in simple:
        return b.op(simple[code], [x])
    if code == SOFTMAX:
        return b.op("Softmax", [x], axis=-1)
    if code == LOG_SOFTMAX:
        return b.op("LogSoftmax", [x], axis=-1)
    if code == ELU:
        return b.op("Elu", [x], alpha=1.0)
    if code == SELU:
        return b.op("Selu", [x], alpha=SELU_ALPHA, gamma=SELU_SCALE)
    if code == LEAKY_RELU:
        return b.op("LeakyRelu", [x], alpha=LEAKY_SLOPE)
    if code == RELU6:
        return b.op("Clip", [x, b.const(0.0), b.const(6.0)])
    if code == HARD_SIGMOID:
        return b.op("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)
    if code == SILU:
        return b.op("Mul", [x, b.op("Sigmoid", [x])])
    if code == GELU:  # exact (erf) GELU, as Keras' default; ONNX's Gelu op needs opset 20
        erf = b.op("Erf", [b.op("Mul", [x, b.const(math.sqrt(0.5))])])
        half = b.op("Mul", [x, b.const(0.5)])
        return b.op("Mul", [half, b.op("Add", [erf, b.const(1.0)])])
    raise ExportError(f"activation {name!r} has no ONNX form (a plugin activation given as "
                      "scalar Python functions cannot be exported).")


def elementwise(b: OnnxBuilder, ins: list[str], compute: Callable[[list[str]], str]) -> str:
    """``compute(ins)`` for an op that acts value by value (any layout): on the NCHW sources
    when every input is a transposed Conv/Pool result, then transposed once."""
    found = b.transposed_sources(ins)
    if found is None:
        return compute(ins)
    sources, perm = found
    return b.transpose(compute(sources), perm)


def _per_channel(b: OnnxBuilder, values: np.ndarray, perm: tuple[int, ...] | None) -> str:
    """A per-channel constant broadcasting against NHWC, or against the source of a
    transpose by ``perm`` (its channel axis is ``perm[-1]``)."""
    if perm is None:
        return b.const(values)
    trailing = len(perm) - 1 - perm[-1]
    return b.const(values.reshape(-1, *([1] * trailing)))


def _is_row_wise(name: str) -> bool:
    return registry().activation(name).code in (SOFTMAX, LOG_SOFTMAX)


def _epilogue(b: OnnxBuilder, y: str, rank: int, act: str) -> str:
    """An NCHW result back to NHWC with the layer's activation (elementwise ones applied
    before the transpose, where it may still fold into the next Conv's)."""
    if _is_row_wise(act):
        return activation(b, b.channels_last(y, rank), act)
    return b.channels_last(activation(b, y, act), rank)


# ----- core ---------------------------------------------------------------------------------
def _dense_core(b: OnnxBuilder, owner: Any, x: str, use_bias: bool, act: str) -> str:
    kernel = b.param(owner, "kernel")
    if len(b.shape(x)) == 1:
        ins = [x, kernel] + ([b.param(owner, "bias")] if use_bias else [])
        y = b.op("Gemm", ins)
    else:
        y = b.op("MatMul", [x, kernel])
        if use_bias:
            y = b.op("Add", [y, b.param(owner, "bias")])
    return activation(b, y, act)


def _dense(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    return _dense_core(b, layer, ins[0], layer.use_bias, layer.activation)


def _time_distributed(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    return _dense_core(b, layer, ins[0], layer.layer.use_bias, layer.layer.activation)


def _activation_layer(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    if _is_row_wise(layer.activation):
        return activation(b, ins[0], layer.activation)
    return elementwise(b, ins, lambda xs: activation(b, xs[0], layer.activation))


def _identity(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    return ins[0]


def _flatten(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    return b.op("Flatten", [ins[0]], axis=1)


def _out_shape(b: OnnxBuilder, layer: Any, ins: list[str]) -> tuple:
    return tuple(layer.compute_output_shape([b.shape(x) for x in ins]))


def _reshape(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    return b.op("Reshape", [ins[0], b.ints([-1, *_out_shape(b, layer, ins)])])


# ----- convolutions -------------------------------------------------------------------------
def same_pads(size: int, kernel: int, stride: int, padding: str) -> tuple[int, int]:
    """(before, after) zero padding of one axis under Keras' ``"valid"``/``"same"``; the
    odd one goes after (TensorFlow's rule, which ONNX's explicit pads can express)."""
    if padding == "valid":
        return 0, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pads_2d(h: int, w: int, kernel: tuple, strides: tuple, padding: str) -> list[int]:
    top, bottom = same_pads(h, kernel[0], strides[0], padding)
    left, right = same_pads(w, kernel[1], strides[1], padding)
    return [top, left, bottom, right]


def _bias(b: OnnxBuilder, layer: Any) -> list[str]:
    return [b.param(layer, "bias")] if layer.use_bias else []


def _conv2d(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    h, w, _ = b.shape(ins[0])
    weight = b.param(layer, "kernel", lambda k: k.transpose(3, 2, 0, 1), "oihw")
    y = b.op("Conv", [b.channels_first(ins[0], 4), weight, *_bias(b, layer)],
             kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
             pads=_pads_2d(h, w, layer.kernel_size, layer.strides, layer.padding))
    return _epilogue(b, y, 4, layer.activation)


def _conv1d(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    length, _ = b.shape(ins[0])
    (k,), (s,) = layer.kernel_size, layer.strides
    pads = (k - 1, 0) if layer.padding == "causal" else same_pads(length, k, s, layer.padding)
    weight = b.param(layer, "kernel", lambda a: a.transpose(2, 1, 0), "oiw")
    y = b.op("Conv", [b.channels_first(ins[0], 3), weight, *_bias(b, layer)],
             kernel_shape=[k], strides=[s], pads=list(pads))
    return _epilogue(b, y, 3, layer.activation)


def _depthwise_weight(k: np.ndarray) -> np.ndarray:
    """Keras ``(kh, kw, cin, m)`` to ONNX's grouped ``(cin * m, 1, kh, kw)``: output channel
    ``c * m + j`` is input channel ``c`` with ``k[:, :, c, j]``, in both."""
    kh, kw, cin, m = k.shape
    return k.reshape(kh, kw, cin * m).transpose(2, 0, 1)[:, None]


def _depthwise(b: OnnxBuilder, layer: Any, x: str, pname: str, bias: list[str]) -> str:
    h, w, cin = b.shape(x)
    weight = b.param(layer, pname, _depthwise_weight, "grouped")
    return b.op("Conv", [b.channels_first(x, 4), weight, *bias], group=cin,
                kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
                pads=_pads_2d(h, w, layer.kernel_size, layer.strides, layer.padding))


def _depthwise_conv2d(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    y = _depthwise(b, layer, ins[0], "kernel", _bias(b, layer))
    return _epilogue(b, y, 4, layer.activation)


def _separable_conv2d(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    y = _depthwise(b, layer, ins[0], "depthwise_kernel", [])
    weight = b.param(layer, "pointwise_kernel", lambda k: k.transpose(3, 2, 0, 1), "oihw")
    y = b.op("Conv", [y, weight, *_bias(b, layer)], kernel_shape=[1, 1])
    return _epilogue(b, y, 4, layer.activation)


def _conv2d_transpose(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    h, w, _ = b.shape(ins[0])
    (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
    ho, wo, _, _ = conv2d_transpose_geometry(h, w, kh, kw, sh, sw, layer.padding)
    begins, ends, extra = [], [], []
    for size, out, k, s in ((h, ho, kh, sh), (w, wo, kw, sw)):
        # ONNX: out = (size - 1) * s + output_padding + k - begin - end; Keras' output size
        # and its adjoint convolution's leading padding fix begin, then end or the padding.
        begin = padding_before(out, k, s, layer.padding)
        surplus = (size - 1) * s + k - begin - out
        begins.append(begin)
        ends.append(max(surplus, 0))
        extra.append(max(-surplus, 0))
    weight = b.param(layer, "kernel", lambda k: k.transpose(3, 2, 0, 1), "iohw")
    y = b.op("ConvTranspose", [b.channels_first(ins[0], 4), weight, *_bias(b, layer)],
             kernel_shape=[kh, kw], strides=[sh, sw], pads=begins + ends,
             output_padding=extra)
    return _epilogue(b, y, 4, layer.activation)


# ----- pooling ------------------------------------------------------------------------------
def _pooling(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    shape = b.shape(ins[0])
    rank = len(shape) + 1
    pads_before, pads_after = [], []
    for size, k, s in zip(shape[:-1], layer.pool_size, layer.strides):
        before, after = same_pads(size, k, s, layer.padding)
        pads_before.append(before)
        pads_after.append(after)
    attrs: dict[str, Any] = {"kernel_shape": list(layer.pool_size),
                             "strides": list(layer.strides), "pads": pads_before + pads_after}
    if layer.mode == "avg":
        op = "AveragePool"
        attrs["count_include_pad"] = 0  # a border window averages its real inputs only
    else:
        op = "MaxPool"
    y = b.op(op, [b.channels_first(ins[0], rank)], **attrs)
    return b.channels_last(y, rank)


def _global_pooling(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    spatial = list(range(1, len(b.shape(ins[0]))))
    op = "ReduceMean" if layer.mode == "avg" else "ReduceMax"
    found = b.transposed_sources(ins)
    if found is None:
        return b.reduce(op, ins[0], spatial, keepdims=layer.keepdims)
    (source,), perm = found  # reduce the NCHW source over the same (spatial) axes
    y = b.reduce(op, source, sorted(perm[a] for a in spatial), keepdims=layer.keepdims)
    return b.transpose(y, perm) if layer.keepdims else y


# ----- normalisation ------------------------------------------------------------------------
def _batch_normalization(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    """Inference form: ``x * a + c`` with ``a = gamma / sqrt(var + eps)``,
    ``c = beta - mean * a`` per channel (computed in float64)."""
    p = {k: np.asarray(v, np.float64) for k, v in layer._params.items()}
    scale = 1.0 / np.sqrt(p["moving_variance"] + layer.epsilon)
    if "gamma" in p:
        scale = scale * p["gamma"]
    shift = -p["moving_mean"] * scale
    if "beta" in p:
        shift = shift + p["beta"]
    found = b.transposed_sources(ins)
    perm = None if found is None else found[1]

    def affine(xs: list[str]) -> str:
        y = b.op("Mul", [xs[0], _per_channel(b, scale, perm)])
        return b.op("Add", [y, _per_channel(b, shift, perm)])

    return elementwise(b, ins, affine)


def _layer_normalization(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    c = b.shape(ins[0])[-1]
    scale = b.param(layer, "gamma") if layer.scale else b.const(np.ones(c))
    inputs = [ins[0], scale] + ([b.param(layer, "beta")] if layer.center else [])
    return b.op("LayerNormalization", inputs, axis=-1, epsilon=float(layer.epsilon))


def _normalization(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    """``(x - mean) / max(sqrt(var), 1e-7)``, or ``mean + x * that`` with ``invert``."""
    c = b.shape(ins[0])[-1]
    if layer.input_mean is not None:
        mean, var = layer.constants(c)
    else:
        mean = np.asarray(layer._params["mean"], np.float64)
        var = np.asarray(layer._params["variance"], np.float64)
    sd = np.maximum(np.sqrt(var), 1e-7)
    if layer.invert:
        return b.op("Add", [b.const(mean), b.op("Mul", [ins[0], b.const(sd)])])
    return b.op("Div", [b.op("Sub", [ins[0], b.const(mean)]), b.const(sd)])


# ----- activation layers --------------------------------------------------------------------
def _relu(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    """Keras' ``relu(x, negative_slope, max_value, threshold)``: ``x`` above the threshold
    (0 below), clipped to ``[0, max_value]``, minus ``slope * relu(threshold - x)``."""
    return elementwise(b, ins, lambda xs: _relu_of(b, layer, xs[0]))


def _relu_of(b: OnnxBuilder, layer: Any, x: str) -> str:
    slope, top, threshold = layer.kernel_args()
    if threshold == 0.0:
        y = b.op("Relu", [x])
    else:
        above = b.op("Greater", [x, b.const(threshold)])
        y = b.op("Where", [above, x, b.const(0.0)])
    if top != math.inf:
        y = b.op("Clip", [y, b.const(0.0), b.const(top)])
    if slope != 0.0:
        below = b.op("Relu", [b.op("Sub", [b.const(threshold), x])])
        y = b.op("Sub", [y, b.op("Mul", [below, b.const(slope)])])
    return y


def _leaky_relu(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    slope = float(layer.negative_slope)
    return elementwise(b, ins, lambda xs: b.op("LeakyRelu", xs, alpha=slope))


def _prelu(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    return b.op("PRelu", [ins[0], b.param(layer, "alpha")])


def _elu(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    return elementwise(b, ins, lambda xs: b.op("Elu", xs, alpha=float(layer.alpha)))


def _softmax(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    return b.op("Softmax", [ins[0]], axis=-1)


def _rescaling(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    y = b.op("Mul", [ins[0], b.const(layer.scale)])
    return b.op("Add", [y, b.const(layer.offset)]) if layer.offset != 0.0 else y


# ----- embedding ----------------------------------------------------------------------------
def _embedding(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    ids = ins[0]
    if b.dtype_of(ids) not in ("int32", "int64"):  # whole numbers in a float input (Keras)
        ids = b.op("Cast", [ids], to=7)  # int64
    return b.op("Gather", [b.param(layer, "embeddings"), ids], axis=0)


# ----- shape layers -------------------------------------------------------------------------
def _permute(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    return b.transpose(ins[0], [0, *layer.dims])


def _repeat_vector(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    (f,) = b.shape(ins[0])
    return b.op("Expand", [b.unsqueeze(ins[0], [1]), b.ints([1, layer.n, f])])


def _upsampling2d(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    h, w, c = b.shape(ins[0])
    sh, sw = layer.size
    y = b.unsqueeze(ins[0], [2, 4])  # (N, H, 1, W, 1, C)
    y = b.op("Expand", [y, b.ints([1, h, sh, w, sw, c])])
    return b.op("Reshape", [y, b.ints([-1, h * sh, w * sw, c])])


def _zero_padding1d(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    before, after = layer.padding
    return b.op("Pad", [ins[0], b.ints([0, before, 0, 0, after, 0])])


def _zero_padding2d(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    (t, bottom), (left, r) = layer.padding
    return b.op("Pad", [ins[0], b.ints([0, t, left, 0, 0, bottom, r, 0])])


def _cropping2d(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    h, w, _ = b.shape(ins[0])
    (t, bottom), (left, r) = layer.cropping
    return b.op("Slice", [ins[0], b.ints([t, left]), b.ints([h - bottom, w - r]),
                          b.ints([1, 2])])


# ----- merging ------------------------------------------------------------------------------
def _chain(b: OnnxBuilder, op: str, ins: list[str]) -> str:
    y = ins[0]
    for x in ins[1:]:
        y = b.op(op, [y, x])
    return y


def _add(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    return elementwise(b, ins, lambda xs: _chain(b, "Add", xs))


def _subtract(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    return elementwise(b, ins, lambda xs: b.op("Sub", xs))


def _multiply(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    return elementwise(b, ins, lambda xs: _chain(b, "Mul", xs))


def _average(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    return elementwise(b, ins, lambda xs: b.op("Div", [_chain(b, "Add", xs),
                                                       b.const(float(len(xs)))]))


def _maximum(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    return elementwise(b, ins, lambda xs: b.op("Max", xs))


def _minimum(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    return elementwise(b, ins, lambda xs: b.op("Min", xs))


def _concatenate(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    axis = layer.feature_axis(len(b.shape(ins[0]))) + 1
    found = b.transposed_sources(ins)
    if found is None:
        return b.op("Concat", ins, axis=axis)
    sources, perm = found  # join the NCHW sources along the same axis in their layout
    return b.transpose(b.op("Concat", sources, axis=perm[axis]), perm)


def _dot(b: OnnxBuilder, layer: Any, ins: list[str]) -> str:
    u, v = ins
    if layer.normalize:  # x / sqrt(max(sum(x^2), 1e-12)), Keras' l2_normalize
        def unit(x: str) -> str:
            sq = b.reduce("ReduceSum", b.op("Mul", [x, x]), [1], keepdims=True)
            norm = b.op("Sqrt", [b.op("Max", [sq, b.const(1e-12)])])
            return b.op("Div", [x, norm])
        u, v = unit(u), unit(v)
    return b.reduce("ReduceSum", b.op("Mul", [u, v]), [1], keepdims=True)


# ----- recurrent ----------------------------------------------------------------------------
_RNN_ACTIVATIONS = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu", "linear": "Affine"}


def _lstm_order(units: int) -> np.ndarray:
    """Columns of Keras' ``i, f, c, o`` gate blocks in ONNX's order ``i, o, f, c``."""
    u = np.arange(units)
    return np.concatenate([u, u + 3 * units, u + units, u + 2 * units])


def _rnn_weights(cell: Any) -> tuple[Callable, Callable, Callable]:
    """ONNX's ``W``, ``R`` and ``B`` from Keras' kernel, recurrent kernel and bias."""
    u = cell.units
    if isinstance(cell, LSTM):
        order = _lstm_order(u)
        return (lambda k: k[:, order].T[None], lambda r: r[:, order].T[None],
                lambda bias: np.concatenate([bias[order], np.zeros(4 * u)])[None])
    if isinstance(cell, GRU):  # z, r, h in both; bias (2, 3u): input, recurrent
        return (lambda k: k.T[None], lambda r: r.T[None],
                lambda bias: np.concatenate([bias[0], bias[1]])[None])
    return (lambda k: k.T[None], lambda r: r.T[None],
            lambda bias: np.concatenate([bias, np.zeros(u)])[None])


def _recurrent_pass(b: OnnxBuilder, owner: Any, cell: Any, prefix: str, x: str) -> Any:
    """One direction of ``cell`` (with ``owner``'s parameters ``<prefix>kernel``...) over
    ``x`` ``(N, T, F)``; ``(N, T, units)`` or ``(N, units)`` as the cell returns, and with
    ``return_state`` a list: that, then the final ``h`` (and ``c``), each ``(N, units)``."""
    xt = b.transpose(x, [1, 0, 2])  # ONNX: (T, N, F)
    if cell.go_backwards:  # outputs in processing order, as Keras
        xt = b.op("Slice", [xt, b.ints([-1]), b.ints([_INT64_MIN]), b.ints([0]), b.ints([-1])])
    to_w, to_r, to_b = _rnn_weights(cell)
    inputs = [xt, b.param(owner, prefix + "kernel", to_w, "onnx"),
              b.param(owner, prefix + "recurrent_kernel", to_r, "onnx")]
    if cell.use_bias:
        inputs.append(b.param(owner, prefix + "bias", to_b, "onnx"))
    acts = [cell.cell_activation]
    if isinstance(cell, (LSTM, GRU)):
        acts = [cell.recurrent_activation] + acts * (2 if isinstance(cell, LSTM) else 1)
    for a in acts:
        if a not in _RNN_ACTIVATIONS:
            raise ExportError(f"activation {a!r} inside a recurrent cell has no ONNX form.")
    attrs: dict[str, Any] = {"hidden_size": cell.units,
                             "activations": [_RNN_ACTIVATIONS[a] for a in acts]}
    if "linear" in acts:  # Affine(x) = alpha * x + beta; one (alpha, beta) per activation
        attrs["activation_alpha"] = [1.0] * len(acts)
        attrs["activation_beta"] = [0.0] * len(acts)
    op = "LSTM" if isinstance(cell, LSTM) else "GRU" if isinstance(cell, GRU) else "RNN"
    if isinstance(cell, GRU):
        attrs["linear_before_reset"] = 1  # Keras' reset_after=True
    states = getattr(cell, "return_state", False)
    names = [b.fresh(op.lower() + "_y") if cell.return_sequences else "",
             b.fresh(op.lower() + "_h")]
    if states and isinstance(cell, LSTM):
        names.append(b.fresh(op.lower() + "_c"))
    outs = b.op(op, inputs, outputs=names, **attrs)
    finals = [b.squeeze(o, [0]) for o in outs[1:]]  # (1, N, U) -> (N, U): h (and c)
    if cell.return_sequences:
        y = b.squeeze(outs[0], [1])  # (T, 1, N, U) -> (T, N, U)
        y = b.transpose(y, [1, 0, 2])
    else:
        y = finals[0]
    return [y, *finals] if states else y


def _recurrent(b: OnnxBuilder, layer: Any, ins: list[str]) -> str | list[str]:
    """The layer's output, and with ``return_state`` its final states (ONNX's Y_h, Y_c)."""
    if len(ins) > 1:
        raise ExportError("a call with initial_state= is not exported yet (ONNX's initial_h "
                          "and initial_c are not wired); export the model without it.")
    return _recurrent_pass(b, layer, layer, "", ins[0])


def _bidirectional(b: OnnxBuilder, layer: Any, ins: list[str]) -> str | list[str]:
    """The merged output, and with ``return_state`` the forward then backward states."""
    if len(ins) > 1:
        raise ExportError("a Bidirectional call with initial_state= is not exported yet "
                          "(ONNX's initial_h and initial_c are not wired); export the model "
                          "without it.")
    fwd = _recurrent_pass(b, layer, layer.forward_layer, "forward_", ins[0])
    bwd = _recurrent_pass(b, layer, layer.backward_layer, "backward_", ins[0])
    if layer.return_state:
        (fwd, *fs), (bwd, *bs) = fwd, bwd
        return [_merged(b, layer, fwd, bwd), *fs, *bs]
    return _merged(b, layer, fwd, bwd)


def _merged(b: OnnxBuilder, layer: Any, fwd: str, bwd: str) -> str:
    """Bidirectional's merge of its directions' outputs."""
    if layer.return_sequences:  # the backward sequence back in input order, as Keras
        bwd = b.op("Slice", [bwd, b.ints([-1]), b.ints([_INT64_MIN]), b.ints([1]),
                             b.ints([-1])])
    mode = layer.merge_mode
    if mode == "concat":
        return b.op("Concat", [fwd, bwd], axis=-1)
    if mode == "sum":
        return b.op("Add", [fwd, bwd])
    if mode == "mul":
        return b.op("Mul", [fwd, bwd])
    return b.op("Mul", [b.op("Add", [fwd, bwd]), b.const(0.5)])  # "ave"


#: Every built-in layer's exporter, by class name (``nexec.plugins.builtin`` registers them).
EXPORTERS: dict[str, Callable[..., Any]] = {
    "Dense": _dense,
    "Activation": _activation_layer,
    "Flatten": _flatten,
    "Conv2D": _conv2d,
    "Conv1D": _conv1d,
    "DepthwiseConv2D": _depthwise_conv2d,
    "SeparableConv2D": _separable_conv2d,
    "Conv2DTranspose": _conv2d_transpose,
    "Embedding": _embedding,
    "Dropout": _identity,
    "SpatialDropout1D": _identity,
    "SpatialDropout2D": _identity,
    "GaussianNoise": _identity,
    "BatchNormalization": _batch_normalization,
    "LayerNormalization": _layer_normalization,
    "MaxPooling1D": _pooling,
    "MaxPooling2D": _pooling,
    "AveragePooling1D": _pooling,
    "AveragePooling2D": _pooling,
    "GlobalMaxPooling1D": _global_pooling,
    "GlobalMaxPooling2D": _global_pooling,
    "GlobalAveragePooling1D": _global_pooling,
    "GlobalAveragePooling2D": _global_pooling,
    "Reshape": _reshape,
    "Permute": _permute,
    "RepeatVector": _repeat_vector,
    "UpSampling2D": _upsampling2d,
    "ZeroPadding1D": _zero_padding1d,
    "ZeroPadding2D": _zero_padding2d,
    "Cropping2D": _cropping2d,
    "Add": _add,
    "Subtract": _subtract,
    "Multiply": _multiply,
    "Average": _average,
    "Maximum": _maximum,
    "Minimum": _minimum,
    "Concatenate": _concatenate,
    "Dot": _dot,
    "ReLU": _relu,
    "LeakyReLU": _leaky_relu,
    "PReLU": _prelu,
    "ELU": _elu,
    "Softmax": _softmax,
    "Rescaling": _rescaling,
    "Normalization": _normalization,
    "SimpleRNN": _recurrent,
    "LSTM": _recurrent,
    "GRU": _recurrent,
    "Bidirectional": _bidirectional,
    "TimeDistributed": _time_distributed,
}
