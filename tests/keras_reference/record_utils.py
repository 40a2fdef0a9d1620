"""Records Keras 3's ``keras.utils`` results and model shape properties for
tests/training/test_keras_utils.py (not run by CI).

Run with a Keras 3 environment: ``python record_utils.py``; writes ``utils.json`` next to
this file. Each case is the call's arguments as JSON and what Keras returned.
"""
from __future__ import annotations

import json
import os

import numpy as np
import keras

HERE = os.path.dirname(os.path.abspath(__file__))

SEQUENCES = [[1, 2, 3], [4], [], [5, 6, 7, 8, 9]]
PAD_CASES = [
    {},
    {"maxlen": 3},
    {"maxlen": 3, "padding": "post"},
    {"maxlen": 3, "truncating": "post"},
    {"maxlen": 6, "padding": "post", "truncating": "post", "value": -1},
    {"dtype": "float32", "value": 0.5},
]
NORMALIZE_CASES = [
    {"x": [[3.0, 4.0], [0.0, 0.0], [1.0, -1.0]]},
    {"x": [[3.0, 4.0], [0.0, 0.0], [1.0, -1.0]], "axis": 1},
    {"x": [[3.0, 4.0], [1.0, -2.0]], "order": 1},
    {"x": [1.0, 2.0, 2.0]},
]


def shapes(value):
    """A shape structure as JSON (tuples as lists, None kept)."""
    if isinstance(value, dict):
        return {k: shapes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shapes(v) for v in value]
    return list(value)


def models():
    i = keras.Input((8,), name="a")
    j = keras.Input((2, 5), name="b")
    d = keras.layers.Dense(3)
    out = {
        "one": keras.Model(i, d(i)),
        "list": keras.Model([i, j], [d(i), keras.layers.Flatten()(j)]),
        "dict": keras.Model({"a": i, "b": j}, {"y": d(i), "z": keras.layers.Flatten()(j)}),
        "sequential": keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(2, 3)]),
    }
    return {k: {"input_shape": shapes(m.input_shape), "output_shape": shapes(m.output_shape)}
            for k, m in out.items()}


def main():
    record = {
        "keras": keras.__version__,
        "pad_sequences": [
            {"kwargs": kw, "result": keras.utils.pad_sequences(SEQUENCES, **kw).tolist(),
             "dtype": str(keras.utils.pad_sequences(SEQUENCES, **kw).dtype)}
            for kw in PAD_CASES],
        "sequences": SEQUENCES,
        "normalize": [
            {"kwargs": kw, "result": keras.utils.normalize(
                np.array(kw["x"]), **{k: v for k, v in kw.items() if k != "x"}).tolist()}
            for kw in NORMALIZE_CASES],
        "models": models(),
    }
    opt = keras.optimizers.Adam(0.01)
    opt.learning_rate.assign(0.25)
    record["learning_rate_after_assign"] = float(opt.learning_rate)
    with open(os.path.join(HERE, "utils.json"), "w") as f:
        json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
