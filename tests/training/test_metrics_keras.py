"""End-to-end metric values against numbers recorded from Keras 3.15 (JAX backend).

``tests/keras_reference/record_metrics.py`` built the same tiny models from the same
weights and data in Keras and recorded ``evaluate`` before and after ``fit`` and the
``fit`` history (2 epochs, batches of 4 over 10 rows, no shuffling); here nexec runs the
same script and must give the same logs, names included, to 1e-5 relative.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from nexec import Input, Model, layers, metrics, optimizers

FIXTURE = json.loads((Path(__file__).parents[1] / "keras_reference" / "metrics_keras.json")
                     .read_text())
CASES = {c["name"]: c for c in FIXTURE["cases"]}

METRICS = {
    "binary": lambda: ["mae", "mse", "root_mean_squared_error", "auc", "precision", "recall",
                       metrics.AUC(num_thresholds=7, name="auc7"),
                       metrics.Precision(thresholds=0.3, name="p03"),
                       metrics.Recall(thresholds=0.7, name="r07"), metrics.MeanAbsoluteError(),
                       metrics.RootMeanSquaredError()],
    "categorical": lambda: ["top_k_categorical_accuracy",
                            metrics.TopKCategoricalAccuracy(k=2, name="top2"),
                            metrics.AUC(name="auc_cat")],
    "sparse": lambda: ["sparse_top_k_categorical_accuracy",
                       metrics.SparseTopKCategoricalAccuracy(k=2, name="stop2")],
    "two_outputs": lambda: [["mae", "auc"], []],
}


def _run(case: dict) -> tuple[dict, dict, dict]:
    x = np.asarray(case["x"], np.float32)
    y = np.asarray(case["y"], np.float32)
    if case["loss"].startswith("sparse"):
        y = y.reshape(-1).astype(np.int64)
    inp = Input(shape=(x.shape[1],))
    outs = [layers.Dense(case["units"], activation=case["activation"], name=f"o{i}")(inp)
            for i in range(case["outputs"])]
    model = Model(inp, outs if len(outs) > 1 else outs[0])
    model.set_weights([np.asarray(w, np.float32) for w in case["weights"]])
    model.compile(optimizers.SGD(0.5), case["loss"], metrics=METRICS[case["name"]]())
    ys = [y] * case["outputs"] if case["outputs"] > 1 else y
    before = model.evaluate(x, ys, batch_size=4, verbose=0, return_dict=True)
    hist = model.fit(x, ys, batch_size=4, epochs=2, shuffle=False, verbose=0).history
    after = model.evaluate(x, ys, batch_size=4, verbose=0, return_dict=True)
    return before, hist, after


def _close(ours: dict, keras: dict, what: str) -> None:
    assert sorted(ours) == sorted(keras), what
    for k, v in keras.items():
        np.testing.assert_allclose(ours[k], v, rtol=1e-5, atol=1e-7, err_msg=f"{what}: {k}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_logs_match_keras(name):
    case = CASES[name]
    before, hist, after = _run(case)
    _close(before, case["evaluate_before"], "evaluate before fit")
    _close(hist, case["history"], "fit history")
    _close(after, case["evaluate_after"], "evaluate after fit")
