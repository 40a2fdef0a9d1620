"""Records Keras 3 loss curves for every optimizer, clipping, weight decay and schedule.

Run with Keras (JAX backend) installed; writes ``optimizers.json`` next to this file, which
``tests/training/test_optimizers_keras.py`` compares nexec against. CI never runs it::

    KERAS_BACKEND=jax python tests/keras_reference/record_optimizers.py
"""
from __future__ import annotations

import json
import os

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")
import keras  # noqa: E402
from keras import optimizers  # noqa: E402
from keras.optimizers import schedules  # noqa: E402

#: name -> (optimizer class name, config); the config's "learning_rate" may be a schedule
#: given as {"class_name": ..., "config": ...}.
CASES: dict[str, tuple[str, dict]] = {
    "adamw": ("AdamW", {"learning_rate": 0.01}),
    "adamw_wd": ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.3}),
    "nadam": ("Nadam", {"learning_rate": 0.01}),
    "adamax": ("Adamax", {"learning_rate": 0.02}),
    "adagrad": ("Adagrad", {"learning_rate": 0.1}),
    "adadelta": ("Adadelta", {"learning_rate": 1.0}),
    "adadelta_default": ("Adadelta", {}),
    "lion": ("Lion", {"learning_rate": 0.003}),
    "adam_clipnorm": ("Adam", {"learning_rate": 0.01, "clipnorm": 0.1}),
    "sgd_clipnorm": ("SGD", {"learning_rate": 0.1, "clipnorm": 0.2}),
    "sgd_global_clipnorm": ("SGD", {"learning_rate": 0.1, "global_clipnorm": 0.3}),
    "sgd_clipvalue": ("SGD", {"learning_rate": 0.1, "clipvalue": 0.05}),
    "sgd_weight_decay": ("SGD", {"learning_rate": 0.1, "momentum": 0.5, "weight_decay": 0.2}),
    "rmsprop_weight_decay_clipnorm": ("RMSprop", {"learning_rate": 0.01, "weight_decay": 0.1,
                                                  "clipnorm": 0.5}),
    "nadam_global_clipnorm": ("Nadam", {"learning_rate": 0.01, "global_clipnorm": 0.2}),
    "sgd_exponential": ("SGD", {"learning_rate": {"class_name": "ExponentialDecay", "config": {
        "initial_learning_rate": 0.2, "decay_steps": 3, "decay_rate": 0.5}}}),
    "sgd_exponential_staircase": ("SGD", {"learning_rate": {
        "class_name": "ExponentialDecay", "config": {
            "initial_learning_rate": 0.2, "decay_steps": 3, "decay_rate": 0.5,
            "staircase": True}}}),
    "sgd_piecewise": ("SGD", {"learning_rate": {"class_name": "PiecewiseConstantDecay",
                                                "config": {"boundaries": [2, 5],
                                                           "values": [0.2, 0.05, 0.01]}}}),
    "adam_cosine_warmup": ("Adam", {"learning_rate": {"class_name": "CosineDecay", "config": {
        "initial_learning_rate": 0.0, "decay_steps": 8, "alpha": 0.1, "warmup_target": 0.05,
        "warmup_steps": 3}}}),
    "sgd_cosine": ("SGD", {"learning_rate": {"class_name": "CosineDecay", "config": {
        "initial_learning_rate": 0.2, "decay_steps": 6}}}),
    "sgd_inverse_time": ("SGD", {"learning_rate": {"class_name": "InverseTimeDecay",
                                                   "config": {"initial_learning_rate": 0.2,
                                                              "decay_steps": 2,
                                                              "decay_rate": 0.7}}}),
    "adamw_polynomial": ("AdamW", {"learning_rate": {"class_name": "PolynomialDecay",
                                                     "config": {"initial_learning_rate": 0.02,
                                                                "decay_steps": 7,
                                                                "power": 2.0,
                                                                "cycle": True}}}),
}

EPOCHS = 5
BATCH = 8


def data() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Inputs, targets and initial weights (Dense(4, tanh) -> Dense(2)), all float32."""
    rng = np.random.default_rng(15)
    x = rng.standard_normal((24, 3)).astype(np.float32)
    y = rng.standard_normal((24, 2)).astype(np.float32)
    weights = [rng.standard_normal((3, 4)).astype(np.float32) * 0.7,
               rng.standard_normal(4).astype(np.float32) * 0.1,
               rng.standard_normal((4, 2)).astype(np.float32) * 0.7,
               rng.standard_normal(2).astype(np.float32) * 0.1]
    return x, y, weights


def main() -> None:
    x, y, weights = data()
    out = {"epochs": EPOCHS, "batch_size": BATCH, "keras": keras.__version__, "cases": {}}
    for name, (cls, config) in CASES.items():
        config = dict(config)
        lr = config.get("learning_rate")
        if isinstance(lr, dict):
            config["learning_rate"] = getattr(schedules, lr["class_name"])(**lr["config"])
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"),
                                  keras.layers.Dense(2)])
        model.set_weights(weights)
        model.compile(optimizer=getattr(optimizers, cls)(**config), loss="mse")
        hist = model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
        out["cases"][name] = {"loss": [float(v) for v in hist.history["loss"]],
                              "weights": [w.tolist() for w in model.get_weights()]}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optimizers.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
