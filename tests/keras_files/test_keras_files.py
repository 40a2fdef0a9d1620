"""Keras model files in and out: fixtures written by real Keras 3 (make_fixtures.py) load in
nexec and predict what Keras predicted; what nexec writes, Keras loaded and predicted the
same (recorded by make_fixtures.py --check-only); unsupported files are refused, all at once,
before anything is built."""
from __future__ import annotations

import io
import json
import os
import shutil
import zipfile

import h5py
import numpy as np
import pytest

import nexec
from nexec import Input, Model, Sequential, layers
from nexec.errors import SavedModelError
from nexec.keras_files.model_config import UnsupportedModelError
from nexec.models import load_model, model_from_json
from tests.keras_files.models import (
    FIXTURES,
    NATIVE,
    WRITTEN,
    fixture_inputs,
    fixture_path,
    keras_outputs,
    keras_outputs_of_written,
    load,
    predict,
    written_inputs,
)

OPTIMIZERS = {"sequential_mlp": "Adam", "inception_residual": "SGD",
              "embedding_lstm": "RMSprop", "multi_io": "Adam"}
UNSUPPORTED = [
    "LSTM 'dropout_lstm': dropout=0.25",
    "UnitNormalization 'unit_norm': layer type not supported by nexec",
    "Dense 'regularised': kernel_regularizer=L2(l2=0.01)",
]


def assert_close(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


# ----- Keras -> nexec -------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".keras", ".h5"])
@pytest.mark.parametrize("name", FIXTURES)
def test_keras_file_predicts_as_keras(name, ext):
    model = load(name, ext)
    assert_close(predict(model, fixture_inputs(name)), keras_outputs(name))
    assert type(model.optimizer).__name__ == OPTIMIZERS[name]


def test_loaded_model_keeps_keras_structure():
    model = load("multi_io", ".keras")
    assert model.input_names == ["left", "right", "sequence"]
    assert model.output_names == ["out_a", "out_b"]
    tower = model.get_layer("tower")
    assert isinstance(tower, Sequential) and [l.units for l in tower.layers] == [6, 3]
    shared = model.get_layer("shared")
    assert len(shared._nodes) == 2  # one layer, called on both inputs
    seq = load("sequential_mlp", ".h5")
    assert isinstance(seq, Sequential)
    assert [type(l).__name__ for l in seq.layers] == ["Dense", "Dropout", "Dense"]


@pytest.mark.parametrize("name", FIXTURES)
def test_format_is_told_by_content_not_extension(name, tmp_path):
    for ext, other in ((".keras", ".bin"), (".h5", ".keras")):
        path = tmp_path / f"{name}{other}"
        shutil.copy(fixture_path(name, ext), path)
        assert_close(predict(load_model(str(path)), fixture_inputs(name)), keras_outputs(name))


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_unsupported_file_lists_every_problem_before_building(ext, monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("a layer was built")

    monkeypatch.setattr(nexec.layers.Layer, "build", no_build)
    with pytest.raises(UnsupportedModelError) as info:
        load("unsupported", ext)
    problems = info.value.problems
    assert len(problems) == 3, problems
    for expected, got in zip(UNSUPPORTED, problems):
        assert got.startswith(expected), got
    text = str(info.value)
    assert "nothing was built" in text and "'unsupported'" in text
    assert all(line in text for line in UNSUPPORTED)


def test_unsupported_json_is_refused_the_same_way():
    with zipfile.ZipFile(fixture_path("unsupported", ".keras")) as zf:
        text = zf.read("config.json").decode()
    with pytest.raises(UnsupportedModelError) as info:
        model_from_json(text)
    assert len(info.value.problems) == 3


@pytest.mark.parametrize("name", ["sequential_mlp", "embedding_lstm", "multi_io"])
def test_loaded_model_fine_tunes(name):
    model = load(name, ".keras")
    xs = fixture_inputs(name)
    targets = keras_outputs(name)
    rng = np.random.default_rng(0)
    ys = [np.clip(t + rng.normal(0, 0.3, t.shape), 0.01, 0.99).astype("float32")
          for t in targets]
    if name != "embedding_lstm":  # softmax targets stay distributions
        ys[0] = ys[0] / ys[0].sum(axis=1, keepdims=True)
    before = [w.copy() for w in model.get_weights()]
    x = xs if len(xs) > 1 else xs[0]
    y = ys if len(ys) > 1 else ys[0]
    first = np.ravel(model.test_on_batch(x, y))[0]
    model.train_on_batch(x, y)
    after = model.get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    for _ in range(4):
        model.train_on_batch(x, y)
    assert np.ravel(model.test_on_batch(x, y))[0] < first


# ----- nexec -> Keras -------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".keras", ".h5"])
@pytest.mark.parametrize("name", FIXTURES)
def test_round_trip_through_keras_files(name, ext, tmp_path):
    model = load(name, ".keras")
    path = str(tmp_path / f"again{ext}")
    model.save(path)
    again = load_model(path)
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert json.loads(again.to_json()) == json.loads(model.to_json())
    assert_close(predict(again, fixture_inputs(name)), keras_outputs(name))
    assert type(again.optimizer).__name__ == OPTIMIZERS[name]


def test_nexec_own_format_still_round_trips_a_keras_model(tmp_path):
    model = load("multi_io", ".h5")
    path = str(tmp_path / "m.nexec")
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        assert "__config__.npy" in zf.namelist()  # nexec's npz, not a Keras archive
    again = load_model(path)
    assert_close(predict(again, fixture_inputs("multi_io")), keras_outputs("multi_io"))


def _written_models():
    for name in FIXTURES:
        yield name, load(name, ".keras")
    for name, build in NATIVE.items():
        yield name, build()[0]


@pytest.mark.parametrize("name,model", list(_written_models()), ids=lambda v: str(v)[:20])
def test_nexec_output_is_what_keras_read(name, model):
    """nexec still writes the config that make_fixtures.py fed to real Keras, and Keras'
    predictions from nexec's archive equal nexec's."""
    with open(os.path.join(WRITTEN, f"{name}.json")) as f:
        assert json.loads(model.to_json()) == json.load(f)
    with open(os.path.join(WRITTEN, f"{name}.keras_info.json")) as f:
        info = json.load(f)
    assert info["compiled"] and info["h5_compiled"] and info["json_and_h5_predict_as_the_archive"]
    written = load_model(os.path.join(WRITTEN, f"{name}.keras"))
    assert_close(predict(written, written_inputs(name)), keras_outputs_of_written(name))
    assert_close(predict(model, written_inputs(name)), keras_outputs_of_written(name))


def test_archive_layout_is_keras():
    with zipfile.ZipFile(os.path.join(WRITTEN, "multi_io.keras")) as zf:
        assert sorted(zf.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        with h5py.File(io.BytesIO(zf.read("model.weights.h5"))) as f:
            assert f["layers/sequential/layers/dense_1/vars/0"].shape == (6, 3)
            assert f["layers/dense/vars/0"].shape == (5, 4)  # 'shared', first Dense met
            assert f["layers/conv1d/vars/0"].shape == (3, 2, 3)
    with zipfile.ZipFile(os.path.join(WRITTEN, "native_nested.keras")) as zf:
        with h5py.File(io.BytesIO(zf.read("model.weights.h5"))) as f:
            assert f["layers/functional/layers/dense/vars/0"].shape == (6, 6)
            assert f["layers/bidirectional/forward_layer/cell/vars/1"].shape == (2, 8)
            assert f["layers/gru/cell/vars/0"].shape == (4, 9)
        config = json.loads(zf.read("config.json"))
    assert config["class_name"] == "Functional"  # the shared nested model: three calls
    inner = next(l for l in config["config"]["layers"] if l["name"] == "inner")
    assert len(inner["inbound_nodes"]) == 3


# ----- refusals and damaged files --------------------------------------------------------------
def test_truncated_archive_is_refused(tmp_path):
    raw = open(fixture_path("sequential_mlp", ".keras"), "rb").read()
    path = tmp_path / "cut.keras"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SavedModelError, match="truncated|not a nexec model file"):
        load_model(str(path))


def test_truncated_h5_is_refused(tmp_path):
    raw = open(fixture_path("sequential_mlp", ".h5"), "rb").read()
    path = tmp_path / "cut.h5"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SavedModelError, match="truncated"):
        load_model(str(path))


def test_weights_only_h5_is_refused(tmp_path):
    path = str(tmp_path / "w.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("kernel", data=np.zeros(3))
    with pytest.raises(SavedModelError, match="without a model config"):
        load_model(path)


def test_archive_with_wrong_weight_shapes_is_refused(tmp_path):
    src = fixture_path("sequential_mlp", ".keras")
    path = str(tmp_path / "bad.keras")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item == "config.json":
                config = json.loads(data)
                config["config"]["layers"][1]["config"]["units"] = 9
                data = json.dumps(config).encode()
            zout.writestr(item, data)
    with pytest.raises(SavedModelError, match=r"weight 0 has shape \(6, 9\)"):
        load_model(path)


def test_zip_that_is_not_a_model_is_refused(tmp_path):
    path = str(tmp_path / "x.keras")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("notes.txt", "hello")
    with pytest.raises(SavedModelError):
        load_model(path)


# ----- configs -------------------------------------------------------------------------------
def test_keras2_style_config_loads():
    """tf.keras 2 configs: inbound_nodes as lists, batch_input_shape, initialisers without a
    module, plain dtype names."""
    glorot = {"class_name": "GlorotUniform", "config": {"seed": None}}
    text = json.dumps({"class_name": "Model", "config": {
        "name": "k2", "layers": [
            {"class_name": "InputLayer", "name": "x", "inbound_nodes": [],
             "config": {"batch_input_shape": [None, 4], "dtype": "float32", "sparse": False,
                        "ragged": False, "name": "x"}},
            {"class_name": "Dense", "name": "d", "inbound_nodes": [[["x", 0, 0, {}]]],
             "config": {"name": "d", "trainable": True, "dtype": "float32", "units": 3,
                        "activation": "relu", "use_bias": True, "kernel_initializer": glorot,
                        "bias_initializer": {"class_name": "Zeros", "config": {}},
                        "kernel_regularizer": None, "bias_regularizer": None,
                        "activity_regularizer": None, "kernel_constraint": None,
                        "bias_constraint": None}},
            {"class_name": "Add", "name": "sum", "inbound_nodes": [[["d", 0, 0, {}],
                                                                     ["d", 0, 0, {}]]],
             "config": {"name": "sum", "trainable": True, "dtype": "float32"}}],
        "input_layers": [["x", 0, 0]], "output_layers": [["sum", 0, 0]]},
        "keras_version": "2.15.0", "backend": "tensorflow"})
    model = model_from_json(text)
    assert [type(l).__name__ for l in model.layers] == ["InputLayer", "Dense", "Add"]
    assert model.get_layer("d").kernel_initializer == "glorot_uniform"
    x = np.random.default_rng(0).normal(size=(2, 4)).astype("float32")
    d = model.get_layer("d")
    np.testing.assert_allclose(model.predict(x), 2 * np.maximum(x @ d.kernel + d.bias, 0),
                               rtol=1e-6)


def test_to_json_is_keras_3_format():
    nexec.clear_session()
    x = Input((4,), name="x")
    y = layers.Dense(2, kernel_initializer="he_normal", name="d")(x)
    config = json.loads(Model(x, y, name="m").to_json())
    assert config["class_name"] == "Functional"
    inp, dense = config["config"]["layers"]
    assert inp["config"]["batch_shape"] == [None, 4] and inp["class_name"] == "InputLayer"
    assert dense["config"]["kernel_initializer"] == {
        "module": "keras.initializers", "class_name": "HeNormal", "config": {"seed": None},
        "registered_name": None}
    assert dense["config"]["dtype"]["class_name"] == "DTypePolicy"
    history = dense["inbound_nodes"][0]["args"][0]["config"]["keras_history"]
    assert history == ["x", 0, 0]
    assert config["config"]["input_layers"] == ["x", 0, 0]


def test_refused_options_are_named():
    glorot = {"module": "keras.initializers", "class_name": "RandomNormal",
              "config": {"mean": 0.0, "stddev": 0.1, "seed": None}}
    policy = {"module": "keras", "class_name": "DTypePolicy",
              "config": {"name": "mixed_float16"}}
    text = json.dumps({"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 3], "name": "i"}},
        {"class_name": "Dense", "config": {"name": "a", "units": 2,
                                           "kernel_initializer": glorot, "dtype": policy}},
        {"class_name": "Conv2D", "config": {"name": "c", "filters": 2, "kernel_size": 1,
                                            "groups": 2}}]}})
    with pytest.raises(UnsupportedModelError) as info:
        model_from_json(text)
    assert info.value.problems == [
        "Dense 'a': kernel_initializer=RandomNormal(mean=0.0, stddev=0.1) (no such "
        "initializer in nexec)",
        "Dense 'a': dtype=DTypePolicy(name='mixed_float16') (nexec computes in float32 or "
        "float64 only)",
        "Conv2D 'c': groups=2 (not supported by nexec)"]


def test_dict_inputs_and_outputs_round_trip():
    nexec.clear_session()
    a, b = Input((3,), name="a"), Input((3,), name="b")
    s = layers.Add(name="s")([a, b])
    model = Model({"a": a, "b": b}, {"sum": s, "dense": layers.Dense(2, name="d")(s)})
    config = model.get_config()
    assert config["input_layers"] == {"a": ["a", 0, 0], "b": ["b", 0, 0]}
    again = model_from_json(model.to_json())
    assert again._input_keys == ["a", "b"] and again._output_keys == ["sum", "dense"]


def test_files_in_nexecs_older_format_still_load(tmp_path):
    """old_nexec_format.nexec was written by nexec before it wrote Keras configs (its
    ``nodes`` format, a nested functional model and a Sequential inside)."""
    path = fixture_path("old_nexec_format", ".nexec")
    model = load_model(path)
    with np.load(fixture_path("old_nexec_format", ".npz")) as data:
        assert_close(predict(model, [data["x0"]]), [data["y0"]])
        assert type(model.optimizer).__name__ == "Adam"
        again = str(tmp_path / "now.keras")  # and it can be written as a Keras file
        model.save(again)
        assert_close(predict(load_model(again), [data["x0"]]), [data["y0"]])


# ----- Keras -> nexec -> ONNX -------------------------------------------------------------------
@pytest.mark.parametrize("name", FIXTURES)
def test_keras_file_exported_to_onnx_predicts_as_keras(name, tmp_path):
    """Issue 16's other round trip: a Keras model loaded in nexec and exported to ONNX gives,
    in onnxruntime, Keras' recorded predictions (and so nexec's)."""
    import onnxruntime as ort  # the test extra installs it
    model = load(name, ".keras")
    path = tmp_path / f"{name}.onnx"
    model.export(str(path), format="onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    xs = fixture_inputs(name)
    feeds = {i.name: x for i, x in zip(session.get_inputs(), xs)}
    got = session.run(None, feeds)
    assert_close([np.asarray(g) for g in got], keras_outputs(name))
    assert_close([np.asarray(g) for g in got], predict(model, xs))
