"""Masked sequence models against numbers recorded from Keras 3 (float64, JAX backend):
``Embedding(mask_zero=True)`` into LSTM, GRU, SimpleRNN, Bidirectional, Dense and
GlobalAveragePooling1D, on padded sequences; predictions, and where the output carries no
mask three SGD epochs' losses, the trained weights and predictions. ``tests/keras_reference/record_masks.py`` made the
fixture."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers
from nexec.testing import assert_close

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "..", "keras_reference", "masks.json")) as f:
    RECORDED = json.load(f)
#: JAX's float64 LSTM differs from PyTorch's float64 (and nexec's) by ~5e-8 here
TOL = 1e-6


def _make(spec: list) -> layers.Layer:
    name, kwargs = spec
    kwargs = dict(kwargs)
    if "layer" in kwargs:
        kwargs["layer"] = _make(kwargs["layer"])
    return getattr(layers, name)(**kwargs)


@pytest.mark.parametrize("case", sorted(RECORDED["cases"]))
def test_masked_model_matches_keras(case):
    rec = RECORDED["cases"][case]
    nexec.clear_session()
    ids = np.array(rec["ids"], dtype=np.int32)
    inp = Input(shape=(ids.shape[1],), dtype="int32")
    h = layers.Embedding(7, 3, mask_zero=True, dtype="float64")(inp)
    for spec in rec["layers"]:
        h = _make(spec)(h)
    model = Model(inp, h)
    model.set_weights([np.array(w) for w in rec["weights"]])
    assert_close(model.predict(ids, verbose=0), np.array(rec["predict"]), rtol=TOL,
                 what="predict")
    if "losses" not in rec:  # the output carries the mask: Keras' loss would be masked
        assert model.outputs[0].mask is not None
        return
    assert model.outputs[0].mask is None
    model.compile(optimizer=nexec.optimizers.SGD(0.5), loss="mse")
    hist = model.fit(ids, np.array(rec["y"]), epochs=3, batch_size=len(ids), shuffle=False,
                     verbose=0)
    assert_close(np.array(hist.history["loss"]), np.array(rec["losses"]), rtol=TOL,
                 what="losses")
    for i, (w, k) in enumerate(zip(model.get_weights(), rec["trained_weights"])):
        assert_close(w, np.array(k), rtol=TOL, what=f"trained weight {i}")
    assert_close(model.predict(ids, verbose=0), np.array(rec["trained_predict"]), rtol=TOL,
                 what="trained predict")
