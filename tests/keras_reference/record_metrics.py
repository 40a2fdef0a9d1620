"""Records Keras 3 metric values for tests/training/test_metrics_keras.py (not run by CI).

Run with Keras 3 (JAX backend) installed:
``KERAS_BACKEND=jax python tests/keras_reference/record_metrics.py``. It builds tiny
models from fixed weights and data (stored in the fixture too), runs ``evaluate`` and
``fit`` (no shuffling) with the metrics nexec implements, and writes ``metrics_keras.json``
next to this file.
"""
from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
from keras import layers

HERE = Path(__file__).parent


def case(name: str, units: int, activation: str, loss: str, metrics: list, y: np.ndarray,
         x: np.ndarray, rng: np.random.Generator, outputs: int = 1) -> dict:
    inp = keras.Input((x.shape[1],))
    outs = [layers.Dense(units, activation=activation, name=f"o{i}")(inp)
            for i in range(outputs)]
    model = keras.Model(inp, outs if outputs > 1 else outs[0])
    weights = [rng.normal(0, 0.8, w.shape).astype("float32") for w in model.get_weights()]
    model.set_weights(weights)
    model.compile(keras.optimizers.SGD(0.5), loss, metrics=metrics)
    ys = [y] * outputs if outputs > 1 else y
    before = model.evaluate(x, ys, batch_size=4, verbose=0, return_dict=True)
    hist = model.fit(x, ys, batch_size=4, epochs=2, shuffle=False, verbose=0).history
    after = model.evaluate(x, ys, batch_size=4, verbose=0, return_dict=True)
    return {"name": name, "units": units, "activation": activation, "loss": loss,
            "outputs": outputs, "x": x.tolist(), "y": y.tolist(),
            "weights": [w.tolist() for w in weights],
            "evaluate_before": {k: float(v) for k, v in before.items()},
            "history": {k: [float(v) for v in vs] for k, vs in hist.items()},
            "evaluate_after": {k: float(v) for k, v in after.items()}}


def main() -> None:
    rng = np.random.default_rng(15)
    x = rng.normal(size=(10, 4)).astype("float32")
    binary = (rng.random((10, 3)) > 0.5).astype("float32")
    labels = rng.integers(0, 6, 10)
    onehot = np.eye(6, dtype="float32")[labels]
    m = keras.metrics
    cases = [
        case("binary", 3, "sigmoid", "binary_crossentropy",
             ["mae", "mse", "root_mean_squared_error", "auc", "precision", "recall",
              m.AUC(num_thresholds=7, name="auc7"), m.Precision(thresholds=0.3, name="p03"),
              m.Recall(thresholds=0.7, name="r07"), m.MeanAbsoluteError(),
              m.RootMeanSquaredError()],
             binary, x, rng),
        case("categorical", 6, "softmax", "categorical_crossentropy",
             ["top_k_categorical_accuracy", m.TopKCategoricalAccuracy(k=2, name="top2"),
              m.AUC(name="auc_cat")],
             onehot, x, rng),
        case("sparse", 6, "softmax", "sparse_categorical_crossentropy",
             ["sparse_top_k_categorical_accuracy",
              m.SparseTopKCategoricalAccuracy(k=2, name="stop2")],
             labels.reshape(-1, 1).astype("float32"), x, rng),
        case("two_outputs", 3, "sigmoid", "mse", [["mae", "auc"], []], binary, x, rng, 2),
    ]
    out = {"keras": keras.__version__, "backend": keras.backend.backend(), "cases": cases}
    (HERE / "metrics_keras.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
