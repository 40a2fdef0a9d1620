"""Records Keras 3 numbers for masked sequence models, for tests/layers/test_masking_keras.py
(not run by CI).

Run with a Keras 3 environment: ``KERAS_BACKEND=jax python record_masks.py``. Each case is
``Input(int32 ids) -> Embedding(mask_zero=True) -> ...`` in float64 with fixed weights, fed
padded sequences (right and left padding, holes, one sample of padding only where the model
allows it). Keras' predictions before training and (where the output carries no mask) the
per-epoch MSE losses of three full-batch SGD epochs, the weights after them and the
predictions after them go to ``masks.json`` next to this file, with the case's layers, ids,
targets and initial weights.
"""
from __future__ import annotations

import json
import os

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_ENABLE_X64", "1")  # float64 Keras: the numbers to ~1e-12
import keras  # noqa: E402

keras.config.set_floatx("float64")
HERE = os.path.dirname(os.path.abspath(__file__))
T, V, F = 6, 7, 3
IDS = [[3, 1, 4, 0, 0, 0],
       [0, 0, 2, 6, 5, 1],
       [5, 0, 0, 2, 0, 3],
       [1, 2, 3, 4, 5, 6],
       [2, 2, 0, 1, 0, 0]]
ALL_PADDING = [0, 0, 0, 0, 0, 0]

#: name -> (layers after the Embedding as (class name, arguments), whether the sample of
#: padding only is fed too (not to an average, which is 0 / 0 there), whether to train: not
#: a model whose output carries the mask, since Keras weights its loss by the mask and
#: nexec does not)
CASES = {
    "lstm_last": ([("LSTM", {"units": 4})], True, True),
    "lstm_sequences_backwards": ([("LSTM", {"units": 4, "return_sequences": True,
                                            "go_backwards": True})], True, False),
    "gru_sequences": ([("GRU", {"units": 4, "return_sequences": True})], True, False),
    "simple_rnn_backwards": ([("SimpleRNN", {"units": 4, "go_backwards": True})], True, True),
    "bidirectional_lstm": ([("Bidirectional", {"layer": ("LSTM", {"units": 3,
                                                                   "return_sequences": True})})],
                           True, False),
    "bidirectional_gru_last": ([("Bidirectional", {"layer": ("GRU", {"units": 3}),
                                                    "merge_mode": "sum"})], True, True),
    "dense_then_lstm": ([("Dense", {"units": 3, "activation": "tanh"}),
                         ("LSTM", {"units": 4})], True, True),
    "global_average_pooling": ([("GlobalAveragePooling1D", {}),
                                ("Dense", {"units": 2})], False, True),
    "lstm_then_average": ([("LSTM", {"units": 4, "return_sequences": True}),
                           ("GlobalAveragePooling1D", {})], False, True),
    "backwards_gru_then_average": ([("GRU", {"units": 4, "return_sequences": True,
                                             "go_backwards": True}),
                                    ("GlobalAveragePooling1D", {})], False, True),
    "bidirectional_lstm_then_average": ([("Bidirectional", {"layer": (
        "LSTM", {"units": 3, "return_sequences": True})}), ("GlobalAveragePooling1D", {})],
        False, True),
}


def make(spec: tuple) -> keras.layers.Layer:
    name, kwargs = spec
    kwargs = dict(kwargs)
    if "layer" in kwargs:
        kwargs["layer"] = make(kwargs["layer"])
    return getattr(keras.layers, name)(**kwargs)


def record(name: str, specs: list, with_padding_only: bool, train: bool, seed: int) -> dict:
    keras.utils.clear_session()
    ids = np.array(IDS + ([ALL_PADDING] if with_padding_only else []), dtype=np.int32)
    inp = keras.Input((T,), dtype="int32")
    h = keras.layers.Embedding(V, F, mask_zero=True)(inp)
    for spec in specs:
        h = make(spec)(h)
    model = keras.Model(inp, h)
    rng = np.random.default_rng(seed)
    weights = [rng.normal(0.0, 0.5, w.shape) for w in model.get_weights()]
    model.set_weights(weights)
    y = rng.normal(size=(len(ids), *model.output.shape[1:]))
    before = model.predict(ids, verbose=0)
    out = {"layers": specs, "ids": ids.tolist(), "y": y.tolist(),
           "weights": [w.tolist() for w in weights], "predict": before.tolist()}
    if train:
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
        hist = model.fit(ids, y, epochs=3, batch_size=len(ids), shuffle=False, verbose=0)
        out.update({"losses": hist.history["loss"],
                    "trained_weights": [w.tolist() for w in model.get_weights()],
                    "trained_predict": model.predict(ids, verbose=0).tolist()})
    return out


def main() -> None:
    out = {"keras": keras.__version__, "backend": keras.backend.backend(),
           "cases": {name: record(name, specs, pad, train, seed)
                     for seed, (name, (specs, pad, train)) in enumerate(CASES.items())}}
    with open(os.path.join(HERE, "masks.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
