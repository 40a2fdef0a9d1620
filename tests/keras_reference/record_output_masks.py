"""Records Keras 3 numbers for model outputs that carry a mask, for
tests/training/test_output_masks.py (not run by CI).

Run with a Keras 3 environment: ``KERAS_BACKEND=jax python record_output_masks.py``. Each
case is ``Input(int32 ids) -> Embedding(mask_zero=True) -> ...`` in float64 with fixed
weights, fed padded sequences (one batch of padding only). For outputs that carry the mask
(a sequence output), Keras weights the loss and the function metrics by it: ``evaluate``
with no, per-sample and per-step sample weights, then two epochs of SGD with and without
per-step sample weights (histories and trained weights). For models whose layers drop the
mask (Conv1D, MaxPooling1D, GlobalMaxPooling1D, Flatten: Keras warns), the predictions, the
warnings and two epochs of SGD. Everything goes to ``output_masks.json`` next to this file.
"""
from __future__ import annotations

import json
import os
import warnings

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_ENABLE_X64", "1")  # float64 Keras: the numbers to ~1e-12
import keras  # noqa: E402

keras.config.set_floatx("float64")
HERE = os.path.dirname(os.path.abspath(__file__))
T, V, F = 5, 7, 3
IDS = [[3, 1, 4, 0, 0],
       [0, 0, 2, 6, 5],
       [5, 0, 0, 2, 3],
       [1, 2, 3, 4, 5],
       [0, 0, 0, 0, 0]]  # alone in the last batch of 2: no valid step (divide_no_nan)
BATCH = 2

#: name -> (layers after the Embedding as (class name, arguments), loss, metrics, targets)
CASES = {
    "scce_lstm_dense": ([("LSTM", {"units": 4, "return_sequences": True}),
                         ("Dense", {"units": 3, "activation": "softmax"})],
                        "sparse_categorical_crossentropy",
                        ["accuracy", ("SparseTopKCategoricalAccuracy", {"k": 2})], "sparse"),
    "mse_gru_time_distributed": ([("GRU", {"units": 4, "return_sequences": True}),
                                  ("TimeDistributed", {"layer": ("Dense", {"units": 2})})],
                                 "mse", ["mae", "mse", ("RootMeanSquaredError", {})], "reg"),
    "bce_lstm_dense1": ([("LSTM", {"units": 3, "return_sequences": True}),
                         ("Dense", {"units": 1, "activation": "sigmoid"})],
                        "binary_crossentropy",
                        ["accuracy", ("Precision", {}), ("Recall", {}), ("AUC", {})],
                        "binary"),
    "cce_simple_rnn": ([("SimpleRNN", {"units": 4, "return_sequences": True}),
                        ("Dense", {"units": 3, "activation": "softmax"})],
                       "categorical_crossentropy",
                       ["categorical_accuracy", ("TopKCategoricalAccuracy", {"k": 2}),
                        ("BinaryAccuracy", {"threshold": 0.4})], "onehot"),
    "mse_through_elementwise": ([("Rescaling", {"scale": 0.5}),
                                 ("LSTM", {"units": 3, "return_sequences": True}),
                                 ("LayerNormalization", {}),
                                 ("LeakyReLU", {"negative_slope": 0.2}),
                                 ("Dense", {"units": 2}), ("ELU", {})],
                                "mse", ["mae"], "reg"),
}

#: name -> layers after the Embedding: each drops the mask with Keras' warning
DROPPED = {
    "conv_pool_global_max": [("Conv1D", {"filters": 2, "kernel_size": 2}),
                             ("MaxPooling1D", {"pool_size": 2}),
                             ("GlobalMaxPooling1D", {}), ("Dense", {"units": 2})],
    "global_max": [("GlobalMaxPooling1D", {}), ("Dense", {"units": 2})],
    "flatten": [("Flatten", {}), ("Dense", {"units": 2})],
    "reshape": [("Reshape", {"target_shape": (T * F,)}), ("Dense", {"units": 2})],
}


def make(spec: tuple) -> keras.layers.Layer:
    name, kwargs = spec
    kwargs = dict(kwargs)
    if "layer" in kwargs:
        kwargs["layer"] = make(kwargs["layer"])
    return getattr(keras.layers, name)(**kwargs)


def metric(spec: object) -> object:
    if isinstance(spec, str):
        return spec
    name, kwargs = spec
    return getattr(keras.metrics, name)(**kwargs)


def targets(kind: str, rng: np.random.Generator) -> np.ndarray:
    n = len(IDS)
    return {"sparse": lambda: rng.integers(0, 3, (n, T)),
            "reg": lambda: rng.normal(size=(n, T, 2)),
            "binary": lambda: (rng.random((n, T, 1)) > 0.5) * 1.0,
            "onehot": lambda: np.eye(3)[rng.integers(0, 3, (n, T))]}[kind]()


def build(specs: list, weights: list | None, seed: int) -> tuple[keras.Model, list]:
    keras.utils.clear_session()
    inp = keras.Input((T,), dtype="int32")
    h = keras.layers.Embedding(V, F, mask_zero=True)(inp)
    for spec in specs:
        h = make(spec)(h)
    model = keras.Model(inp, h)
    if weights is None:
        rng = np.random.default_rng(seed)
        weights = [rng.normal(0.0, 0.5, w.shape) for w in model.get_weights()]
    model.set_weights(weights)
    return model, weights


def masked_case(specs: list, loss: str, metrics: list, kind: str, seed: int) -> dict:
    ids = np.array(IDS, dtype=np.int32)
    rng = np.random.default_rng(100 + seed)
    y = targets(kind, rng)
    sw_sample = rng.uniform(0.0, 2.0, (len(IDS), 1))
    sw_step = rng.uniform(0.0, 2.0, (len(IDS), T))
    model, weights = build(specs, None, seed)
    model.compile(optimizer=keras.optimizers.SGD(0.3), loss=loss,
                  metrics=[metric(m) for m in metrics])
    out = {"layers": specs, "loss": loss, "metrics": metrics, "ids": ids.tolist(),
           "y": y.tolist(), "sw_sample": sw_sample.tolist(), "sw_step": sw_step.tolist(),
           "weights": [w.tolist() for w in weights],
           "predict": model.predict(ids, verbose=0).tolist(),
           "evaluate": {name: model.evaluate(ids, y, batch_size=BATCH, verbose=0,
                                             return_dict=True, sample_weight=sw)
                        for name, sw in (("none", None), ("sample", sw_sample),
                                         ("step", sw_step))}}
    for name, sw in (("fit", None), ("fit_step_weights", sw_step)):
        model, _ = build(specs, weights, seed)
        model.compile(optimizer=keras.optimizers.SGD(0.3), loss=loss,
                      metrics=[metric(m) for m in metrics])
        hist = model.fit(ids, y, epochs=2, batch_size=BATCH, shuffle=False, verbose=0,
                         sample_weight=sw)
        out[name] = {"history": hist.history,
                     "trained_weights": [w.tolist() for w in model.get_weights()]}
    return out


def dropped_case(specs: list, seed: int) -> dict:
    ids = np.array(IDS, dtype=np.int32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, weights = build(specs, None, seed)
    y = np.random.default_rng(200 + seed).normal(size=(len(IDS), 2))
    model.compile(optimizer=keras.optimizers.SGD(0.3), loss="mse")
    out = {"layers": specs, "ids": ids.tolist(), "y": y.tolist(),
           "weights": [w.tolist() for w in weights],
           "warnings": sorted({str(w.message) for w in caught if "mask" in str(w.message)}),
           "predict": model.predict(ids, verbose=0).tolist()}
    hist = model.fit(ids, y, epochs=2, batch_size=BATCH, shuffle=False, verbose=0)
    out.update({"losses": hist.history["loss"],
                "trained_weights": [w.tolist() for w in model.get_weights()]})
    return out


def main() -> None:
    out = {"keras": keras.__version__, "backend": keras.backend.backend(),
           "masked": {name: masked_case(*case, seed)
                      for seed, (name, case) in enumerate(CASES.items())},
           "dropped": {name: dropped_case(specs, seed)
                       for seed, (name, specs) in enumerate(DROPPED.items())}}
    with open(os.path.join(HERE, "output_masks.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
