"""Records Keras 3 numbers for ``sample_weight=`` and ``class_weight=`` (not run by CI).

Run with a Keras 3 environment: ``KERAS_BACKEND=jax python record_sample_weights.py``.
Tiny Dense models (fixed initial weights, float64 data, SGD, no shuffling) train and
evaluate with sample and class weights; the loss curves, per-output losses, metrics,
validation losses and ``evaluate``/``train_on_batch``/``test_on_batch`` values go to
``sample_weights.json`` next to this file, which ``tests/training/test_sample_weights.py``
compares nexec against.
"""
from __future__ import annotations

import json
import os

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_ENABLE_X64", "1")  # float64 Keras: the curves to ~1e-12
import keras  # noqa: E402

keras.config.set_floatx("float64")
HERE = os.path.dirname(os.path.abspath(__file__))
N = 16

#: name -> (loss expression, units, activation, targets, weights). ``weights`` is
#: "sw" (sample weights (N,)), "sw2d" ((N, 1)), or a class_weight dict as a string.
CASES = {
    "cce_sw": ("'categorical_crossentropy'", 3, "softmax", "onehot", "sw"),
    "cce_sw_column": ("'categorical_crossentropy'", 3, "softmax", "onehot", "sw2d"),
    "scce_sw": ("'sparse_categorical_crossentropy'", 3, "softmax", "sparse", "sw"),
    "bce_sw": ("'binary_crossentropy'", 1, "sigmoid", "binary", "sw"),
    "mse_sw": ("'mse'", 3, "linear", "reg", "sw"),
    "mae_sw": ("'mae'", 3, "linear", "reg", "sw"),
    "huber_sw": ("keras.losses.Huber(delta=0.5)", 3, "linear", "reg", "sw"),
    "cce_logits_sw": ("keras.losses.CategoricalCrossentropy(from_logits=True)", 3, "linear",
                      "onehot", "sw"),
    "scce_logits_sw": ("keras.losses.SparseCategoricalCrossentropy(from_logits=True)", 3,
                       "linear", "sparse", "sw"),
    "cce_cw": ("'categorical_crossentropy'", 3, "softmax", "onehot", "{0: 0.5, 1: 2.0, 2: 1.5}"),
    "scce_cw_partial": ("'sparse_categorical_crossentropy'", 3, "softmax", "sparse",
                        "{1: 3.0}"),
    "bce_cw": ("'binary_crossentropy'", 1, "sigmoid", "binary", "{0: 1.0, 1: 4.0}"),
}


def data(kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inputs, targets, first-layer weights and sample weights (the same in the test)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 4))
    w1 = rng.normal(scale=0.5, size=(4, 5))
    labels = rng.integers(0, 3, N)
    y = {"reg": rng.uniform(0.1, 2.0, (N, 3)), "onehot": np.eye(3)[labels],
         "sparse": labels, "binary": (rng.random((N, 1)) > 0.5) * 1.0}[kind]
    sw = np.random.default_rng(5).uniform(0.0, 2.0, N)
    return x, y, w1, sw


def build(units: int, activation: str, w1: np.ndarray) -> keras.Model:
    inp = keras.Input((4,))
    h = keras.layers.Dense(5, activation="tanh")(inp)
    model = keras.Model(inp, keras.layers.Dense(units, activation=activation)(h))
    w2 = np.random.default_rng(1).normal(scale=0.5, size=(5, units))
    model.set_weights([w1, np.zeros(5), w2, np.zeros(units)])
    return model


def weight_kwargs(weights: str, sw: np.ndarray) -> dict:
    if weights == "sw":
        return {"sample_weight": sw}
    if weights == "sw2d":
        return {"sample_weight": sw[:, None]}
    return {"class_weight": eval(weights)}


def single_output_cases() -> dict:
    out = {}
    for name, (loss, units, act, kind, weights) in CASES.items():
        x, y, w1, sw = data(kind)
        model = build(units, act, w1)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss=eval(loss),
                      metrics=["accuracy"])
        kw = weight_kwargs(weights, sw)
        before = {"evaluate": model.evaluate(x, y, batch_size=5, verbose=0,
                                             sample_weight=sw),
                  "test_on_batch": model.test_on_batch(x[:7], y[:7], sample_weight=sw[:7])}
        hist = model.fit(x, y, epochs=4, batch_size=8, shuffle=False, verbose=0, **kw)
        steps = [model.train_on_batch(x[:6], y[:6], **{k: (v[:6] if k == "sample_weight"
                                                            else v) for k, v in kw.items()})
                 for _ in range(2)]
        out[name] = {"loss": loss, "units": units, "activation": act, "targets": kind,
                     "weights": weights, "curve": hist.history["loss"],
                     "accuracy": hist.history["accuracy"], "before": before,
                     "train_on_batch": steps}
    return out


def validation_cases() -> dict:
    x, y, w1, sw = data("onehot")
    out = {}
    for name, kw in {
        "validation_data_3_tuple": {"validation_data": (x[:6], y[:6], sw[:6])},
        "validation_split_sw": {"validation_split": 0.25, "sample_weight": sw},
        "validation_split_cw": {"validation_split": 0.25,
                                "class_weight": {0: 0.5, 1: 2.0, 2: 1.5}},
    }.items():
        model = build(3, "softmax", w1)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="categorical_crossentropy")
        hist = model.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0, **kw)
        out[name] = {"curve": hist.history["loss"], "val_curve": hist.history["val_loss"]}
    return out


def multi_output_cases() -> dict:
    x, y, w1, sw = data("onehot")
    reg = np.random.default_rng(3).uniform(0.1, 2.0, (N, 2))
    sw_b = np.random.default_rng(6).uniform(0.0, 3.0, N)
    out = {}
    for name, kw in {"per_output_list": {"sample_weight": [sw, sw_b]},
                     "one_array_for_all": {"sample_weight": sw}}.items():
        inp = keras.Input((4,))
        h = keras.layers.Dense(5, activation="tanh")(inp)
        a = keras.layers.Dense(3, activation="softmax", name="cls")(h)
        b = keras.layers.Dense(2, name="reg")(h)
        model = keras.Model(inp, [a, b])
        rng = np.random.default_rng(1)
        model.set_weights([w1, np.zeros(5), rng.normal(scale=0.5, size=(5, 3)), np.zeros(3),
                           rng.normal(scale=0.5, size=(5, 2)), np.zeros(2)])
        model.compile(optimizer=keras.optimizers.SGD(0.05),
                      loss=["categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5])
        hist = model.fit(x, [y, reg], epochs=3, batch_size=8, shuffle=False, verbose=0, **kw)
        ev = model.evaluate(x, [y, reg], batch_size=5, verbose=0, return_dict=True, **kw)
        out[name] = {"history": hist.history, "evaluate": ev}
    return out


def temporal_case() -> dict:
    """An output with a time axis ``(N, 3, 2)``, weights per sample and per time step."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(N, 3, 4))
    y = rng.normal(size=(N, 3, 2))
    sw_t = rng.uniform(0.0, 2.0, (N, 3))
    w = rng.normal(scale=0.5, size=(4, 2))
    out = {}
    for name, sw in {"per_step": sw_t}.items():
        inp = keras.Input((3, 4))
        model = keras.Model(inp, keras.layers.Dense(2)(inp))
        model.set_weights([w, np.zeros(2)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        hist = model.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0,
                         sample_weight=sw)
        out[name] = {"curve": hist.history["loss"],
                     "evaluate": model.evaluate(x, y, verbose=0, sample_weight=sw)}
    return out


def main() -> None:
    out = {"single": single_output_cases(), "validation": validation_cases(),
           "multi": multi_output_cases(), "temporal": temporal_case()}
    with open(os.path.join(HERE, "sample_weights.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
