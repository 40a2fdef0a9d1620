"""GaussianDropout and AlphaDropout export to ONNX as the identity (their inference form),
through the plugin's ``nexec_onnx_exporters``."""
import numpy as np
import onnxruntime as ort

import nexec
from nexec import Input, Model, layers


def test_noise_layers_export_as_identity(tmp_path):
    (info,) = [p for p in nexec.plugins_info() if p["name"].startswith("nexec-regularization")]
    assert sorted(info["provides"]["onnx_exporters"]) == ["AlphaDropout", "GaussianDropout"]
    x = Input(shape=(5,), name="x")
    h = layers.GaussianDropout(0.4)(layers.Dense(4, activation="selu")(x))
    model = Model(x, layers.Dense(2)(layers.AlphaDropout(0.3)(h)))
    path = tmp_path / "m.onnx"
    model.export(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    data = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    got = session.run(None, {"x": data})[0]
    np.testing.assert_allclose(got, model.predict(data), rtol=1e-5, atol=1e-6)
