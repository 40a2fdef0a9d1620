"""Keras 3 archives whose recurrent layers return their states (recorded by
tests/keras_reference/record_return_state.py): nexec reads the node references to a layer's
second and third outputs, predicts as Keras, and three SGD epochs (gradients through the
states) give Keras' losses and predictions."""
from __future__ import annotations

import os

import numpy as np
import pytest

import nexec
from nexec.optimizers import SGD
from nexec.testing import assert_close

HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "keras_reference", "return_state")
CASES = ["seq2seq_lstm", "gru_states_out", "gru_state_only", "bidirectional_lstm_states",
         "bidirectional_gru_sequences"]
#: JAX's float64 recurrences differ from PyTorch's float64 (and nexec's) by ~1e-7 (as in
#: test_masking_keras.py); test_return_state.py checks the same layers against PyTorch to 1e-10.
TOL = 1e-6


def _arrays(data, prefix: str) -> list[np.ndarray]:
    n = sum(1 for k in data.files if k.startswith(prefix) and k[len(prefix):].isdigit())
    return [data[f"{prefix}{j}"] for j in range(n)]


@pytest.mark.parametrize("name", CASES)
def test_keras_model_with_states_predicts_and_trains_as_keras(name):
    nexec.clear_session()
    data = np.load(os.path.join(HERE, f"{name}.npz"))
    xs, ts = _arrays(data, "x"), _arrays(data, "t")
    model = nexec.models.load_model(os.path.join(HERE, f"{name}.keras"))
    feed = xs if len(xs) > 1 else xs[0]
    pred = model.predict(feed, verbose=0)
    for p, y in zip(pred if isinstance(pred, list) else [pred], _arrays(data, "y")):
        assert_close(p, y, rtol=TOL, atol=1e-12, what="prediction")
    model.compile(optimizer=SGD(0.1), loss="mse")
    hist = model.fit(feed, ts if len(ts) > 1 else ts[0], batch_size=len(xs[0]), epochs=3,
                     shuffle=False, verbose=0)
    assert_close(np.array(hist.history["loss"]), data["losses"], rtol=TOL, what="losses")
    pred = model.predict(feed, verbose=0)
    for p, y in zip(pred if isinstance(pred, list) else [pred], _arrays(data, "trained")):
        assert_close(p, y, rtol=TOL, atol=1e-12, what="after training")
