"""The 3-D poolings exported to ONNX through the plugin's exporters (``nexec_onnx_exporters``),
run by onnxruntime against nexec's predict."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest

import nexec
from nexec import Input, Model, layers


def _roundtrip(model, x, path):
    model.export(path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_the_plugin_registers_its_exporters():
    (info,) = [p for p in nexec.plugins_info() if p["name"].startswith("nexec-pooling")]
    assert sorted(info["provides"]["onnx_exporters"]) == sorted(
        ["MaxPooling3D", "AveragePooling3D", "GlobalMaxPooling3D", "GlobalAveragePooling3D"])


@pytest.mark.parametrize("make", [
    lambda: layers.MaxPooling3D(),
    lambda: layers.MaxPooling3D(3, strides=2, padding="same"),
    lambda: layers.AveragePooling3D((2, 3, 2), strides=(1, 2, 2), padding="same"),
    lambda: layers.AveragePooling3D(2),
    lambda: layers.GlobalMaxPooling3D(keepdims=True),
    lambda: layers.GlobalAveragePooling3D(),
])
def test_export_matches_predict(make, tmp_path):
    x = Input(shape=(5, 6, 7, 2), name="volume")
    model = Model(x, make()(layers.Dense(3)(x)))
    data = np.random.default_rng(0).normal(size=(3, 5, 6, 7, 2)).astype("float32")
    got = _roundtrip(model, data, tmp_path / "m.onnx")
    np.testing.assert_allclose(got, model.predict(data), rtol=1e-5, atol=1e-6)


def test_pooling_between_dense_layers_with_two_batch_sizes(tmp_path):
    x = Input(shape=(4, 4, 4, 3), name="volume")
    h = layers.Dense(4, activation="relu")(x)
    h = layers.MaxPooling3D(padding="same")(h)
    y = layers.Dense(2)(layers.GlobalAveragePooling3D()(layers.AveragePooling3D(1)(h)))
    model = Model(x, y)
    path = tmp_path / "m.onnx"
    for batch in (1, 6):
        data = np.random.default_rng(batch).normal(size=(batch, 4, 4, 4, 3)).astype("float32")
        np.testing.assert_allclose(_roundtrip(model, data, path), model.predict(data),
                                   rtol=1e-5, atol=1e-6)
