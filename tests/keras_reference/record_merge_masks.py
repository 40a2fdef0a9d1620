"""Records Keras 3 models whose masked branches are merged again, for
tests/layers/test_merge_masks.py (not run by CI).

Run with a Keras 3 environment: ``KERAS_BACKEND=jax python record_merge_masks.py``. Each case
is a model of merge_mask_models.py (float64, fixed random weights) with
``merge_masks/NAME.npz``: each layer's weights ``w:LAYER:I``, the inputs ``x0``, ``x1``...,
targets ``t``, Keras' predictions ``y``, the per-epoch MSE losses of three full-batch SGD
epochs (``losses``) and the predictions after them (``trained``); for a case with
``METRICS``, Keras' ``evaluate`` before training (``eval:loss``, ``eval:NAME``: masked,
whereas the JAX trainer's fit-time metrics lose the mask, see
tests/training/test_output_masks.py). (Keras writes a merge's
mask computation into a saved archive as ops, so the models are rebuilt, not loaded.)
"""
from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_ENABLE_X64", "1")  # float64 Keras: the numbers to ~1e-12
import keras  # noqa: E402
from merge_mask_models import CASES, METRICS, MORE_IDS  # noqa: E402

keras.config.set_floatx("float64")
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "merge_masks")
IDS = np.array([[3, 1, 4, 0, 0], [0, 0, 2, 6, 5], [5, 0, 0, 2, 3], [1, 2, 3, 4, 5]],
               dtype=np.int32)
LR, EPOCHS = 0.1, 3


def record(name: str, seed: int) -> None:
    keras.utils.clear_session()
    model = CASES[name](keras)
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(0.0, 0.5, w.shape))
    more = iter(MORE_IDS)
    xs = [IDS] + [np.array(next(more), dtype=np.int32) if "int" in str(t.dtype) else
                  rng.normal(size=(len(IDS), *t.shape[1:])) for t in model.inputs[1:]]
    feed = xs if len(xs) > 1 else xs[0]
    y = np.asarray(model.predict(feed, verbose=0))
    t = rng.normal(size=y.shape)
    weights = {f"w:{layer.name}:{i}": w for layer in model.layers
               for i, w in enumerate(layer.get_weights())}
    metrics = METRICS.get(name, [])
    model.compile(optimizer=keras.optimizers.SGD(LR), loss="mse", metrics=metrics)
    logs = {} if not metrics else {
        f"eval:{k}": np.array(v) for k, v in model.evaluate(
            feed, t, batch_size=len(IDS), verbose=0, return_dict=True).items()}
    hist = model.fit(feed, t, batch_size=len(IDS), epochs=EPOCHS, shuffle=False, verbose=0)
    trained = np.asarray(model.predict(feed, verbose=0))
    np.savez(os.path.join(HERE, f"{name}.npz"), losses=np.array(hist.history["loss"]), t=t,
             y=y, trained=trained, **{f"x{j}": x for j, x in enumerate(xs)}, **weights,
             **logs)
    print("recorded", name, hist.history["loss"])


if __name__ == "__main__":
    os.makedirs(HERE, exist_ok=True)
    for i, case in enumerate(CASES):
        record(case, seed=20 + i)
