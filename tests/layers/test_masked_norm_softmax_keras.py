"""Masked BatchNormalization and Softmax against Keras 3.15: the models of
tests/keras_reference/masked_norm_models.py, built in nexec with the weights Keras had
(record_masked_norm.py), predict (moving statistics), take one SGD step (the loss, and the
moving statistics updated from the masked moments) and two more epochs as in Keras; the
masked Softmax models, on which Keras raises, are refused when built."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import nexec
from nexec.errors import GraphError
from nexec.optimizers import SGD
from nexec.testing import assert_close
from tests.keras_reference.masked_norm_models import CASES, SOFTMAX_CASES

HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "keras_reference", "masked_norm")
TOL = 1e-6  # JAX's float64 recurrences differ by ~1e-7 (as in test_masking_keras.py)


def _weights(model, data, prefix: str) -> dict:
    return {layer.name: [data[f"{prefix}:{layer.name}:{i}"]
                         for i in range(len(layer.get_weights()))] for layer in model.layers}


@pytest.mark.parametrize("name", sorted(CASES))
def test_masked_batchnorm_predicts_and_trains_as_keras(name):
    nexec.clear_session()
    data = np.load(os.path.join(HERE, f"{name}.npz"))
    model = CASES[name](nexec)
    for layer in model.layers:
        if layer.get_weights():
            layer.set_weights(_weights(model, data, "w")[layer.name])
    x, t = data["x"], data["t"]
    assert_close(model.predict(x, verbose=0), data["y"], rtol=TOL, atol=1e-12,
                 what="prediction")
    model.compile(optimizer=SGD(0.1), loss="mse")
    first = model.fit(x, t, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    assert_close(np.array(first.history["loss"]), data["loss1"], rtol=TOL, what="first loss")
    expected = _weights(model, data, "w1")
    for layer in model.layers:
        for i, (got, want) in enumerate(zip(layer.get_weights(), expected[layer.name])):
            assert_close(got, want, rtol=TOL, atol=1e-12, what=f"{layer.name} weight {i}")
    hist = model.fit(x, t, batch_size=len(x), epochs=2, shuffle=False, verbose=0)
    assert_close(np.array(hist.history["loss"]), data["losses"], rtol=TOL, what="losses")
    assert_close(model.predict(x, verbose=0), data["trained"], rtol=TOL, atol=1e-12,
                 what="after training")


def test_the_recorded_moving_statistics_come_from_the_masked_moments():
    """The fixture itself: Keras' updated moving mean is the masked one, not the plain one
    (so the test above would fail for an unmasked BatchNormalization)."""
    data = np.load(os.path.join(HERE, "bn_lstm.npz"))
    emb = data["w:emb:0"][data["x"]]  # (batch, steps, F): the BN's input
    keep = data["x"] != 0
    masked = emb[keep].sum(0) / (keep.sum() + 1e-7)
    mm0 = data["w:bn:1"]  # scale=False: beta, moving_mean, moving_variance
    assert_close(data["w1:bn:1"], 0.5 * mm0 + 0.5 * masked, rtol=TOL, what="moving mean")
    plain = emb.reshape(-1, emb.shape[-1]).mean(0)
    assert not np.allclose(data["w1:bn:1"], 0.5 * mm0 + 0.5 * plain, rtol=1e-3)


@pytest.mark.parametrize("name", sorted(SOFTMAX_CASES))
def test_masked_softmax_is_refused_where_keras_raises(name):
    with open(os.path.join(HERE, "softmax_errors.json")) as f:
        keras_error = json.load(f)[name]
    assert keras_error is not None and "must be broadcastable" in keras_error
    nexec.clear_session()
    with pytest.raises(GraphError, match=r"Softmax.*must be broadcastable"):
        SOFTMAX_CASES[name](nexec)
