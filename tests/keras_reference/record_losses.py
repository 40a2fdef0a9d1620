"""Records Keras 3 loss curves for tests/training/test_keras_losses.py (not run by CI).

Run with a Keras 3 environment: ``KERAS_BACKEND=jax python record_losses.py``. A tiny
Dense model (fixed initial weights, float64 data) trains a few SGD steps per loss; the
per-epoch losses and the final "accuracy" go to ``losses.json`` next to this file.
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

CASES = {  # name -> (loss expression, units, activation, targets)
    "mae": ("'mae'", 3, "linear", "reg"),
    "mape": ("'mape'", 3, "linear", "reg"),
    "msle": ("'msle'", 3, "linear", "reg"),
    "huber": ("keras.losses.Huber(delta=0.5)", 3, "linear", "reg"),
    "log_cosh": ("'log_cosh'", 3, "linear", "reg"),
    "poisson": ("'poisson'", 3, "sigmoid", "reg"),
    "kld": ("'kld'", 3, "softmax", "onehot"),
    "hinge": ("'hinge'", 3, "tanh", "onehot"),
    "squared_hinge": ("'squared_hinge'", 3, "tanh", "onehot"),
    "categorical_hinge": ("'categorical_hinge'", 3, "linear", "onehot"),
    "cosine_similarity": ("'cosine_similarity'", 3, "linear", "reg"),
    "cce_logits_smooth": ("keras.losses.CategoricalCrossentropy(from_logits=True, "
                          "label_smoothing=0.1)", 3, "linear", "onehot"),
    "cce_smooth": ("keras.losses.CategoricalCrossentropy(label_smoothing=0.2)", 3, "softmax",
                   "onehot"),
    "scce_logits": ("keras.losses.SparseCategoricalCrossentropy(from_logits=True)", 3,
                    "linear", "sparse"),
    "bce_logits_smooth": ("keras.losses.BinaryCrossentropy(from_logits=True, "
                          "label_smoothing=0.1)", 3, "linear", "onehot"),
    "bce_smooth": ("keras.losses.BinaryCrossentropy(label_smoothing=0.2)", 3, "sigmoid",
                   "onehot"),
    "mse_one_unit": ("'mse'", 1, "linear", "binary"),
    "bce_multi_sigmoid": ("'binary_crossentropy'", 3, "sigmoid", "onehot"),
}


def data(kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4))
    w1 = rng.normal(scale=0.5, size=(4, 5))
    labels = rng.integers(0, 3, 16)
    y = {"reg": rng.uniform(0.1, 2.0, (16, 3)), "onehot": np.eye(3)[labels],
         "sparse": labels, "binary": (rng.random((16, 1)) > 0.5) * 1.0}[kind]
    return x, y, w1


def main() -> None:
    out = {}
    for name, (loss, units, act, kind) in CASES.items():
        x, y, w1 = data(kind)
        rng = np.random.default_rng(1)
        w2 = rng.normal(scale=0.5, size=(5, units))
        inp = keras.Input((4,))
        h = keras.layers.Dense(5, activation="tanh")(inp)
        model = keras.Model(inp, keras.layers.Dense(units, activation=act)(h))
        model.set_weights([w1, np.zeros(5), w2, np.zeros(units)])
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss=eval(loss),
                      metrics=["accuracy"])
        hist = model.fit(x, y, epochs=4, batch_size=8, shuffle=False, verbose=0)
        out[name] = {"loss": loss, "units": units, "activation": act, "targets": kind,
                     "curve": hist.history["loss"], "accuracy": hist.history["accuracy"]}
    with open(os.path.join(HERE, "losses.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
