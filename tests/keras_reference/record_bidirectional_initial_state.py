"""Records Keras 3 ``Bidirectional(...)(x, initial_state=[...])`` models for
tests/layers/test_bidirectional_initial_state.py (not run by CI).

Run with a Keras 3 environment: ``KERAS_BACKEND=jax python
record_bidirectional_initial_state.py``. Each case of ``CASES`` (one definition for Keras and
nexec: the builder takes the library) is float64 with fixed random weights; written to
``bidirectional_initial_state/NAME.npz``: the layers' weights ``w:LAYER:I``, the inputs
``x0``, ``x1``, targets ``t``, Keras' predictions ``y``, the MSE losses of three full-batch
SGD epochs (``losses``) and the predictions after them (``trained``).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

T, F, S, U = 4, 3, 2, 3  # steps, features, state source width, units


def _bidirectional(k: Any, kind: str, merge_mode: str) -> Any:
    """x (T, F) and s (S,) inputs; one Dense(U, tanh) of s per initial state, the forward
    layer's first; a Dense head."""
    x = k.Input((T, F), dtype="float64", name="x")
    s = k.Input((S,), dtype="float64", name="s")
    n = 2 if kind == "LSTM" else 1
    states = [k.layers.Dense(U, activation="tanh", name=f"state{i}")(s) for i in range(2 * n)]
    bi = k.layers.Bidirectional(getattr(k.layers, kind)(U, return_sequences=True),
                                merge_mode=merge_mode, name="bi")
    y = bi(x, initial_state=states)
    return k.Model([x, s], k.layers.Dense(2, name="out")(y))


CASES = {"lstm_concat": lambda k: _bidirectional(k, "LSTM", "concat"),
         "gru_sum": lambda k: _bidirectional(k, "GRU", "sum")}
LR, EPOCHS, BATCH = 0.1, 3, 4

if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("JAX_ENABLE_X64", "1")
    import keras

    keras.config.set_floatx("float64")
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "bidirectional_initial_state")
    os.makedirs(here, exist_ok=True)
    for i, (name, build) in enumerate(CASES.items()):
        keras.utils.clear_session()
        model = build(keras)
        rng = np.random.default_rng(40 + i)
        for w in model.weights:
            w.assign(rng.normal(0.0, 0.5, w.shape))
        xs = [rng.normal(size=(BATCH, T, F)), rng.normal(size=(BATCH, S))]
        y = np.asarray(model.predict(xs, verbose=0))
        t = rng.normal(size=y.shape)
        weights = {f"w:{layer.name}:{j}": w for layer in model.layers
                   for j, w in enumerate(layer.get_weights())}
        model.compile(optimizer=keras.optimizers.SGD(LR), loss="mse")
        hist = model.fit(xs, t, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
        trained = np.asarray(model.predict(xs, verbose=0))
        np.savez(os.path.join(here, f"{name}.npz"), losses=np.array(hist.history["loss"]),
                 t=t, y=y, trained=trained, x0=xs[0], x1=xs[1], **weights)
        print("recorded", name, hist.history["loss"])
