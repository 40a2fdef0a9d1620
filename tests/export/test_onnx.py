"""ONNX export: every built-in layer, whole models (Inception + residual, multi-input and
multi-output, Embedding + LSTM, nested), run by onnxruntime against nexec's predict; dynamic
batch, onnx's checker, opsets, dtypes, a plugin's exporter, and the errors."""
from __future__ import annotations

import types

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import nexec
from nexec import Input, Model, Sequential, layers
from nexec.checks import ArgumentError, ArgumentTypeError
from nexec.errors import ExportError, PluginWarning
from nexec.plugin import Kernel, Layer, hookimpl, rows
from nexec.plugins import builtin, registry, reset_registry


# ----- helpers -----------------------------------------------------------------------------
def randomize(model, seed=0):
    """Every parameter random (variances positive), so that no layer hides behind zeros."""
    rng = np.random.default_rng(seed)
    for layer in model._leaves():
        for name, p in layer._params.items():
            if "variance" in name:
                p[...] = rng.uniform(0.5, 1.5, p.shape)
            elif name != "count":
                p[...] = rng.normal(0.0, 0.5, p.shape)
    return model


def data(model, batch, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for t in model.inputs:
        if t.dtype.startswith("int") or t.name.startswith("ids"):
            out.append(rng.integers(0, 10, (batch, *t.feature_shape)).astype(t.dtype))
        else:
            out.append(rng.normal(size=(batch, *t.feature_shape)).astype(t.dtype))
    return out


def run_onnx(path, xs):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: x for i, x in zip(session.get_inputs(), xs)})


def check_export(model, tmp_path, batches=(3,), atol=2e-5, **kwargs):
    """Exports, checks the file with onnx's checker, runs it on each batch size and compares
    every output with nexec's predict."""
    path = tmp_path / "model.onnx"
    model.export(path, **kwargs)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    for batch in batches:
        xs = data(model, batch)
        want = model.predict(xs if len(xs) > 1 else xs[0], batch_size=batch)
        want = want if isinstance(want, list) else [want]
        got = run_onnx(path, xs)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=atol)
    return proto


def single(shape, *stack, dtype="float32"):
    x = Input(shape=shape, dtype=dtype, name="x")
    y = x
    for layer in stack:
        y = layer(y)
    return Model(x, y)


def merged(layer, n=2, shape=(4,)):
    xs = [Input(shape=shape, name=f"in{i}") for i in range(n)]
    return Model(xs, layer(xs))


# ----- every built-in layer ----------------------------------------------------------------
CASES = {
    "dense": lambda: single((6,), layers.Dense(4, activation="tanh")),
    "dense_rank3_nobias": lambda: single((5, 6), layers.Dense(3, use_bias=False)),
    "activation": lambda: single((6,), layers.Activation("gelu")),
    "flatten": lambda: single((2, 3, 2), layers.Flatten()),
    "conv2d_same_strided": lambda: single(
        (7, 7, 3), layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")),
    "conv2d_valid_softmax": lambda: single(
        (6, 5, 2), layers.Conv2D(3, (3, 2), activation="softmax")),
    "conv1d_causal": lambda: single((9, 3), layers.Conv1D(4, 3, padding="causal")),
    "conv1d_same_strided": lambda: single(
        (9, 3), layers.Conv1D(2, 4, strides=2, padding="same", activation="elu")),
    "depthwise": lambda: single(
        (6, 6, 3), layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same",
                                          activation="relu6")),
    "separable": lambda: single(
        (7, 7, 3), layers.SeparableConv2D(5, 3, strides=2, padding="same",
                                          depth_multiplier=2, activation="sigmoid")),
    "conv2d_transpose_same": lambda: single(
        (4, 4, 3), layers.Conv2DTranspose(2, 3, strides=2, padding="same")),
    "conv2d_transpose_valid_wide_stride": lambda: single(
        (3, 4, 2), layers.Conv2DTranspose(2, 2, strides=3, activation="tanh")),
    "conv2d_transpose_same_small_kernel": lambda: single(
        (3, 3, 2), layers.Conv2DTranspose(3, (1, 2), strides=(2, 3), padding="same")),
    "max_pool2d_same": lambda: single((7, 7, 3), layers.MaxPooling2D(3, strides=2,
                                                                     padding="same")),
    "avg_pool2d_same": lambda: single((7, 6, 3), layers.AveragePooling2D(3, strides=2,
                                                                         padding="same")),
    "max_pool1d": lambda: single((9, 3), layers.MaxPooling1D(2)),
    "avg_pool1d_same": lambda: single((9, 3), layers.AveragePooling1D(3, strides=2,
                                                                      padding="same")),
    "global_max2d": lambda: single((4, 5, 3), layers.GlobalMaxPooling2D()),
    "global_avg2d_keepdims": lambda: single((4, 5, 3),
                                            layers.GlobalAveragePooling2D(keepdims=True)),
    "global_max1d_keepdims": lambda: single((6, 3), layers.GlobalMaxPooling1D(keepdims=True)),
    "global_avg1d": lambda: single((6, 3), layers.GlobalAveragePooling1D()),
    "batch_norm": lambda: single((5, 5, 3), layers.BatchNormalization()),
    "batch_norm_no_scale_center": lambda: single(
        (4,), layers.BatchNormalization(scale=False, center=False, epsilon=0.01)),
    "layer_norm": lambda: single((3, 6), layers.LayerNormalization()),
    "layer_norm_no_scale": lambda: single((6,), layers.LayerNormalization(scale=False)),
    "dropout": lambda: single((6,), layers.Dropout(0.5), layers.Dense(2)),
    "spatial_dropout1d": lambda: single((5, 3), layers.SpatialDropout1D(0.5)),
    "spatial_dropout2d": lambda: single((4, 4, 3), layers.SpatialDropout2D(0.5)),
    "gaussian_noise": lambda: single((6,), layers.GaussianNoise(0.5)),
    "embedding_int": lambda: single((5,), layers.Embedding(10, 4), dtype="int32"),
    "embedding_float_ids": lambda: Model(
        (i := Input(shape=(5,), name="ids")), layers.Embedding(10, 3)(i)),
    "relu_plain": lambda: single((6,), layers.ReLU()),
    "relu_args": lambda: single((6,), layers.ReLU(max_value=1.2, negative_slope=0.1,
                                                  threshold=0.2)),
    "leaky_relu": lambda: single((6,), layers.LeakyReLU(0.3)),
    "prelu_shared": lambda: single((4, 4, 3), layers.PReLU(shared_axes=[1, 2])),
    "prelu": lambda: single((5,), layers.PReLU()),
    "elu": lambda: single((6,), layers.ELU(0.7)),
    "softmax": lambda: single((2, 6), layers.Softmax()),
    "rescaling": lambda: single((6,), layers.Rescaling(0.5, offset=0.1)),
    "normalization_given": lambda: single(
        (3,), layers.Normalization(mean=[0.1, 0.2, -0.3], variance=[1.0, 4.0, 0.0])),
    "normalization_adapted_invert": lambda: single(
        (2, 3), layers.Normalization(invert=True)),
    "reshape": lambda: single((12,), layers.Reshape((3, -1))),
    "permute": lambda: single((2, 3, 4), layers.Permute((3, 1, 2))),
    "repeat_vector": lambda: single((4,), layers.RepeatVector(3)),
    "upsampling2d": lambda: single((3, 2, 2), layers.UpSampling2D((2, 3))),
    "zero_padding1d": lambda: single((4, 2), layers.ZeroPadding1D((1, 2))),
    "zero_padding2d": lambda: single((3, 3, 2), layers.ZeroPadding2D(((1, 0), (2, 1)))),
    "cropping2d": lambda: single((5, 6, 2), layers.Cropping2D(((1, 0), (0, 2)))),
    "add": lambda: merged(layers.Add(), 3),
    "subtract": lambda: merged(layers.Subtract()),
    "multiply": lambda: merged(layers.Multiply(), 3),
    "average": lambda: merged(layers.Average(), 3),
    "maximum": lambda: merged(layers.Maximum()),
    "minimum": lambda: merged(layers.Minimum(), 3),
    "concatenate": lambda: merged(layers.Concatenate(axis=1), 2, shape=(2, 3)),
    "dot": lambda: merged(layers.Dot(axes=1)),
    "dot_normalize": lambda: merged(layers.Dot(axes=-1, normalize=True)),
    "simple_rnn_relu_sequences": lambda: single(
        (5, 3), layers.SimpleRNN(4, activation="relu", return_sequences=True)),
    "simple_rnn_linear_backwards": lambda: single(
        (5, 3), layers.SimpleRNN(4, activation="linear", go_backwards=True)),
    "lstm": lambda: single((6, 3), layers.LSTM(5)),
    "lstm_backwards_sequences_nobias": lambda: single(
        (6, 3), layers.LSTM(4, go_backwards=True, return_sequences=True, use_bias=False)),
    "gru": lambda: single((6, 3), layers.GRU(5)),
    "gru_backwards_sequences": lambda: single(
        (6, 3), layers.GRU(4, go_backwards=True, return_sequences=True,
                           recurrent_activation="tanh", activation="relu")),
    "bidirectional_lstm_concat": lambda: single(
        (5, 3), layers.Bidirectional(layers.LSTM(4, return_sequences=True))),
    "bidirectional_gru_ave": lambda: single(
        (5, 3), layers.Bidirectional(layers.GRU(3), merge_mode="ave")),
    "bidirectional_rnn_mul": lambda: single(
        (5, 3), layers.Bidirectional(layers.SimpleRNN(3, return_sequences=True),
                                     merge_mode="mul")),
    "bidirectional_lstm_sum": lambda: single(
        (5, 3), layers.Bidirectional(layers.LSTM(3), merge_mode="sum")),
    "conv1d_batch_norm_relu_keepdims": lambda: single(
        (8, 3), layers.Conv1D(4, 3), layers.BatchNormalization(), layers.ReLU(threshold=0.1),
        layers.LeakyReLU(), layers.ELU(), layers.GlobalMaxPooling1D(keepdims=True)),
    "conv_concat_with_an_nhwc_tensor": lambda: Model(
        (i := Input(shape=(5, 5, 2), name="x")),
        layers.Add()([layers.Concatenate()([layers.Conv2D(2, 1)(i), i]),
                      layers.Conv2D(4, 3, padding="same")(i)])),
    "time_distributed": lambda: single(
        (4, 3), layers.TimeDistributed(layers.Dense(5, activation="softmax"))),
}


def _build(case):
    model = randomize(CASES[case]())
    for layer in model._leaves():
        if type(layer).__name__ == "Normalization" and "mean" in layer._params:
            layer.adapt(np.random.default_rng(2).normal(3.0, 2.0, (20, 2, 3)))
    return model


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_layer_matches_predict(case, tmp_path):
    check_export(_build(case), tmp_path)


def test_the_cases_cover_every_built_in_layer():
    covered = {type(layer).__name__ for case in CASES for layer in CASES[case]()._leaves()}
    wanted = {cls.__name__ for cls in builtin.LAYERS} - {"InputLayer"}
    assert wanted <= covered, sorted(wanted - covered)
    assert wanted <= set(registry().onnx_exporters), "a built-in layer has no exporter"


@pytest.mark.parametrize("name", sorted(n for n, a in registry().activations.items()
                                        if a.fused))
def test_every_built_in_activation(name, tmp_path):
    model = randomize(single((3, 5), layers.Dense(4, activation=name)))
    check_export(model, tmp_path)


# ----- whole models -------------------------------------------------------------------------
def inception_residual():
    """The seed's shape of model: an Inception block (1x1, 3x3, 5x5 and pool branches) with
    a residual connection, batch norm, dropout and a pooled head."""
    x = Input(shape=(10, 10, 3), name="image")
    stem = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    stem = layers.BatchNormalization()(stem)
    b1 = layers.Conv2D(4, 1, padding="same", activation="relu")(stem)
    b3 = layers.Conv2D(4, 1, padding="same", activation="relu")(stem)
    b3 = layers.Conv2D(4, 3, padding="same", activation="relu")(b3)
    b5 = layers.Conv2D(2, 1, padding="same", activation="relu")(stem)
    b5 = layers.Conv2D(4, 5, padding="same", activation="relu")(b5)
    bp = layers.MaxPooling2D(3, strides=1, padding="same")(stem)
    bp = layers.Conv2D(4, 1, padding="same", activation="relu")(bp)
    block = layers.Concatenate()([b1, b3, b5, bp])
    block = layers.Conv2D(8, 1, padding="same")(block)
    res = layers.Activation("relu")(layers.Add()([stem, block]))
    res = layers.AveragePooling2D(2)(res)
    h = layers.GlobalAveragePooling2D()(res)
    h = layers.Dropout(0.3)(h)
    return Model(x, layers.Dense(5, activation="softmax", name="probs")(h), name="inception")


def test_inception_residual_model_with_two_batch_sizes(tmp_path):
    proto = check_export(randomize(inception_residual()), tmp_path, batches=(1, 7))
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == ["probs"]
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param == "batch" and not batch.HasField("dim_value")
    ops = [n.op_type for n in proto.graph.node]
    # Conv -> Relu -> Conv chains stay NCHW: far fewer transposes than Conv/Pool ops.
    assert ops.count("Transpose") == 1, ops
    assert "Dropout" not in ops and "BatchNormalization" not in ops


def test_multi_input_multi_output(tmp_path):
    a = Input(shape=(6,), name="numbers")
    b = Input(shape=(4, 3), name="sequence")
    h = layers.Concatenate()([layers.Dense(5, activation="relu")(a),
                              layers.GRU(5, name="gru")(b)])
    out1 = layers.Dense(2, activation="softmax", name="label")(h)
    out2 = layers.Dense(1, name="value")(h)
    model = randomize(Model([a, b], [out1, out2]))
    proto = check_export(model, tmp_path, batches=(2, 5))
    assert [i.name for i in proto.graph.input] == ["numbers", "sequence"]
    assert [o.name for o in proto.graph.output] == ["label", "value"]


def test_embedding_lstm_model(tmp_path):
    ids = Input(shape=(7,), dtype="int64", name="tokens")
    h = layers.Embedding(10, 6)(ids)
    h = layers.LSTM(8, return_sequences=True)(h)
    h = layers.LSTM(4)(h)
    model = randomize(Model(ids, layers.Dense(3, activation="softmax")(h)))
    proto = check_export(model, tmp_path, batches=(1, 4))
    assert {n.op_type for n in proto.graph.node} >= {"Gather", "LSTM"}


def test_a_masked_batch_normalization_exports_its_inference_form(tmp_path):
    """Its mask weights the batch moments in training only; inference (and so the export)
    reads the moving statistics. A layer reading the mask at inference is still refused."""
    ids = Input(shape=(6,), dtype="int64", name="tokens")
    h = layers.Embedding(10, 4, mask_zero=True)(ids)
    h = layers.BatchNormalization()(h)
    model = randomize(Model(ids, layers.GlobalAveragePooling1D()(layers.Dense(3)(h))))
    with pytest.raises(ExportError, match="GlobalAveragePooling1D"):
        model.export(tmp_path / "refused.onnx")
    model = randomize(Model(ids, layers.Dense(3)(h)))
    check_export(model, tmp_path, batches=(1, 4))


def test_sequential_and_nested_models_and_shared_layers(tmp_path):
    inner = Sequential([layers.Dense(5, activation="relu", input_shape=(4,)),
                        layers.Dense(3)], name="inner")
    shared = layers.Dense(3, name="shared")
    a, b = Input(shape=(4,), name="a"), Input(shape=(4,), name="b")
    out = layers.Add()([inner(a), shared(inner(b)), shared(layers.Dense(3)(a))])
    model = randomize(Model([a, b], out))
    proto = check_export(model, tmp_path)
    # one initialiser per parameter, however often its layer is called
    assert len(proto.graph.initializer) == len(model.weights)
    check_export(randomize(inner), tmp_path)


def test_an_output_that_is_an_input_and_a_repeated_output(tmp_path):
    x = Input(shape=(3,), name="x")
    y = layers.Dense(2, name="y")(x)
    model = randomize(Model(x, [x, y, y]))
    proto = check_export(model, tmp_path)
    assert [o.name for o in proto.graph.output] == ["x_1", "y", "y_1"]


def test_float64_model(tmp_path):
    model = single((5,), layers.Dense(4, activation="tanh"), layers.LayerNormalization(),
                   layers.Dense(2), dtype="float64")
    proto = check_export(randomize(model), tmp_path, atol=1e-12)
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE


@pytest.mark.parametrize("opset", [17, 18, 21])
def test_opsets(opset, tmp_path):
    x = Input(shape=(5, 5, 2), name="x")
    h = layers.Conv2D(3, 3, padding="same")(x)
    pooled = layers.GlobalMaxPooling2D()(h)
    dot = layers.Dot(axes=1, normalize=True)([pooled, layers.Dense(3)(pooled)])
    norm = layers.LayerNormalization()(layers.GlobalAveragePooling2D()(h))
    model = randomize(Model(x, [dot, norm]))
    proto = check_export(model, tmp_path, opset_version=opset)
    assert proto.opset_import[0].version == opset


# ----- arguments and errors -----------------------------------------------------------------
def small():
    return single((3,), layers.Dense(2))


@pytest.mark.parametrize("kwargs, error, words", [
    ({"format": "tf_saved_model"}, ArgumentError, "TensorFlow"),
    ({"format": "h5"}, ArgumentError, "'onnx'"),
    ({"format": 3}, ArgumentTypeError, "string"),
    ({"input_signature": [(None, 3)]}, ArgumentError, "input_signature"),
    ({"verbose": "yes"}, ArgumentTypeError, "verbose"),
    ({"opset_version": 12}, ArgumentError, "17 to 21"),
    ({"opset_version": True}, ArgumentTypeError, "opset_version"),
    ({"jax2tf_kwargs": {}}, ArgumentError, "jax2tf_kwargs"),
])
def test_bad_arguments_are_refused_and_nothing_is_written(kwargs, error, words, tmp_path):
    path = tmp_path / "m.onnx"
    with pytest.raises(error, match=words):
        small().export(path, **kwargs)
    assert not path.exists()


def test_bad_filepath_and_verbose_message(tmp_path, capsys):
    with pytest.raises(ArgumentTypeError, match="filepath"):
        small().export(3)
    small().export(str(tmp_path / "m.onnx"), verbose=True)
    assert "opset 17" in capsys.readouterr().out
    with pytest.raises(IsADirectoryError):
        small().export(tmp_path)


def test_an_unbuilt_sequential_is_refused(tmp_path):
    with pytest.raises(ExportError, match="not built"):
        Sequential([layers.Dense(2)]).export(tmp_path / "m.onnx")


class Halve(Layer):
    """A plugin layer: ``x / 2``."""

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


class HalveKernel(Kernel):
    layer_type = "Halve"
    device = "cpu"

    def forward(self, call):
        def halve(x, out):
            np.multiply(x, 0.5, out=out)

        return [(halve, (rows(call.inputs[0]), rows(call.output)))]

    def backward(self, call):
        return []


def _register(name, exporters=None):
    def nexec_layers():
        return [Halve]

    def nexec_kernels():
        return [HalveKernel()]

    funcs = {"nexec_layers": hookimpl(nexec_layers), "nexec_kernels": hookimpl(nexec_kernels)}
    if exporters is not None:
        def nexec_onnx_exporters():
            return exporters

        funcs["nexec_onnx_exporters"] = hookimpl(nexec_onnx_exporters)
    return registry().register(_module(name, NEXEC_API_VERSION="1.2", **funcs), name)


def _module(name, **attrs):
    """A plugin module made on the fly (pluggy registers hashable objects)."""
    module = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(module, key, value)
    return module


@pytest.fixture
def fresh_registry():
    reset_registry(autoload=False)
    yield
    reset_registry()


def _halve_model():
    x = Input(shape=(4,), name="x")
    return randomize(Model(x, layers.Dense(2)(Halve()(layers.Dense(3)(x)))))


def test_a_plugin_layer_exports_through_its_exporter(fresh_registry, tmp_path):
    calls = []

    def export_halve(b, layer, inputs):
        calls.append(layer.name)
        return b.op("Mul", [inputs[0], b.const(0.5)])

    record = _register("halver", {Halve: export_halve})
    assert record.provides["onnx_exporters"] == ["Halve"] and record.error is None
    check_export(_halve_model(), tmp_path)
    assert calls == ["halve"]


def test_a_layer_without_exporter_is_named_and_nothing_is_written(fresh_registry, tmp_path):
    _register("halver")
    x = Input(shape=(4,))
    model = Model(x, Halve(name="h2")(Halve(name="h1")(x)))
    path = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match=r"'h1' \(Halve, from plugin 'halver'\), 'h2'"):
        model.export(path)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_a_broken_exporter_is_named(fresh_registry, tmp_path):
    _register("halver", {"Halve": lambda b, layer, inputs: 42})
    with pytest.raises(ExportError, match="'halve' \\(Halve\\).*tensor name"):
        _halve_model().export(tmp_path / "m.onnx")
    reset_registry(autoload=False)
    _register("halver", {"Halve": lambda b, layer, inputs: 1 / 0})
    with pytest.raises(ExportError, match="ZeroDivisionError"):
        _halve_model().export(tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


def test_a_non_callable_exporter_is_refused_with_a_warning(fresh_registry):
    with pytest.warns(PluginWarning, match="ONNX exporter 'Halve', which is not callable"):
        record = _register("halver", {"Halve": "not a function"})
    assert "Halve" not in registry().onnx_exporters and record.error


def test_a_plugin_activation_without_onnx_form_is_refused(fresh_registry, tmp_path):
    from nexec.activations import Activation

    soft = Activation("softsign2", forward=lambda z: z / (1.0 + abs(z)),
                      derivative=lambda y: (1.0 - abs(y)) ** 2)
    def nexec_activations():
        return [soft]

    registry().register(_module("acts", nexec_activations=hookimpl(nexec_activations)), "acts")
    model = single((3,), layers.Dense(2, activation="softsign2", name="d"))
    with pytest.raises(ExportError, match="'d' \\(Dense\\) cannot be exported.*softsign2"):
        model.export(tmp_path / "m.onnx")


def test_importing_nexec_does_not_import_onnx():
    import subprocess
    import sys

    code = ("import sys, nexec; from nexec import layers; m = nexec.Sequential("
            "[layers.Dense(2, input_shape=(3,))]); print('onnx' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "False", done.stderr



def test_the_docs_snippet_runs(tmp_path, monkeypatch):
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "keras.md").read_text()
    section = text.split("## Export to ONNX", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```", section, re.S | re.M)
    assert blocks
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__doc__"}
    for code in blocks:
        exec(compile(code, "docs/keras.md (Export to ONNX)", "exec"), namespace)
    assert (tmp_path / "model.onnx").exists()


def test_the_benchmark_of_ort_on_nexec_exports_runs(monkeypatch):
    import pathlib
    import sys

    monkeypatch.syspath_prepend(str(pathlib.Path(__file__).resolve().parents[2]))
    monkeypatch.setenv("NEXEC_BENCH_SMALL", "1")
    from benchmarks import ort_nexec

    record = ort_nexec.measure("seed_mlp", threads=1)
    assert record["workload"] == "seed_mlp" and record["predict_s"] > 0
    assert record["max_abs_diff"] < 1e-5
    assert "benchmarks.ort_nexec" in sys.modules
