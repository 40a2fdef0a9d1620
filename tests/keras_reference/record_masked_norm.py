"""Records Keras 3 models with a masked BatchNormalization, and Keras' errors for a masked
Softmax, for tests/layers/test_masked_norm_softmax_keras.py (not run by CI).

Run with a Keras 3 environment: ``KERAS_BACKEND=jax python record_masked_norm.py``. Each
case of masked_norm_models.CASES (float64, fixed random weights) gets
``masked_norm/NAME.npz``: each layer's weights ``w:LAYER:I``, the ids ``x``, targets ``t``,
Keras' predictions ``y``, the loss of one full-batch SGD step (``loss1``) and the weights
after it (``w1:LAYER:I``: the moving statistics updated from the masked moments), the
per-epoch MSE losses of two more epochs (``losses``) and the predictions after them
(``trained``). ``masked_norm/softmax_errors.json`` has, for each SOFTMAX_CASES model, the
error Keras raises when it is built and run on the ids.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_ENABLE_X64", "1")  # float64 Keras: the numbers to ~1e-12
import keras  # noqa: E402
from masked_norm_models import CASES, SOFTMAX_CASES  # noqa: E402

keras.config.set_floatx("float64")
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "masked_norm")
IDS = np.array([[3, 1, 4, 0, 0], [0, 0, 2, 6, 5], [5, 0, 0, 2, 3], [1, 2, 3, 4, 5]],
               dtype=np.int32)
LR = 0.1


def _weights(model: keras.Model, prefix: str) -> dict:
    return {f"{prefix}:{layer.name}:{i}": w for layer in model.layers
            for i, w in enumerate(layer.get_weights())}


def record(name: str, seed: int) -> None:
    keras.utils.clear_session()
    model = CASES[name](keras)
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shift = 1.0 if "moving_variance" in w.path else 0.0
        w.assign(rng.normal(0.0, 0.5, w.shape) + shift)
    y = np.asarray(model.predict(IDS, verbose=0))
    t = rng.normal(size=y.shape)
    weights = _weights(model, "w")
    model.compile(optimizer=keras.optimizers.SGD(LR), loss="mse")
    first = model.fit(IDS, t, batch_size=len(IDS), epochs=1, shuffle=False, verbose=0)
    after_one = _weights(model, "w1")
    hist = model.fit(IDS, t, batch_size=len(IDS), epochs=2, shuffle=False, verbose=0)
    trained = np.asarray(model.predict(IDS, verbose=0))
    np.savez(os.path.join(HERE, f"{name}.npz"), x=IDS, t=t, y=y, trained=trained,
             loss1=np.array(first.history["loss"]), losses=np.array(hist.history["loss"]),
             **weights, **after_one)
    print("recorded", name, first.history["loss"], hist.history["loss"])


def record_softmax_errors() -> None:
    errors = {}
    for name, build in SOFTMAX_CASES.items():
        keras.utils.clear_session()
        try:
            build(keras).predict(IDS, verbose=0)
            errors[name] = None
        except ValueError as e:
            text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # Keras' terminal bold
            errors[name] = next(line for line in text.splitlines() if "mask" in line)
        print(name, errors[name])
    with open(os.path.join(HERE, "softmax_errors.json"), "w") as f:
        json.dump(errors, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    os.makedirs(HERE, exist_ok=True)
    for i, case in enumerate(CASES):
        record(case, seed=40 + i)
    record_softmax_errors()
