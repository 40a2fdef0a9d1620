"""The Keras fixture files and the models built in nexec that tests/keras_files share."""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

import nexec
from nexec import Input, Model, layers
from nexec.models import load_model

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
WRITTEN = os.path.join(HERE, "nexec_written")
#: Fixtures made by make_fixtures.py that nexec supports (``unsupported`` is refused).
FIXTURES = ("sequential_mlp", "inception_residual", "embedding_lstm", "multi_io")


def fixture_path(name: str, ext: str) -> str:
    return os.path.join(HERE, f"{name}{ext}")


def load(name: str, ext: str) -> Any:
    return load_model(fixture_path(name, ext))


def _arrays(path: str, prefix: str) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[f"{prefix}{j}"] for j in range(sum(k.startswith(prefix) for k in data.files))]


def fixture_inputs(name: str) -> list[np.ndarray]:
    return _arrays(fixture_path(name, ".npz"), "x")


def keras_outputs(name: str) -> list[np.ndarray]:
    """Keras' predictions on :func:`fixture_inputs`, recorded by make_fixtures.py."""
    return _arrays(fixture_path(name, ".npz"), "y")


def written_inputs(name: str) -> list[np.ndarray]:
    return _arrays(os.path.join(WRITTEN, f"{name}.inputs.npz"), "x")


def keras_outputs_of_written(name: str) -> list[np.ndarray]:
    """Keras' predictions from the archive nexec wrote (make_fixtures.py --check-only)."""
    return _arrays(os.path.join(WRITTEN, f"{name}.keras_pred.npz"), "y")


def predict(model: Any, xs: list[np.ndarray]) -> list[np.ndarray]:
    out = model.predict(xs if len(xs) > 1 else xs[0])
    return list(out) if isinstance(out, list) else [out]


def randomise(model: Any, seed: int) -> None:
    """Fixed, non-trivial weights (variances kept positive)."""
    rng = np.random.default_rng(seed)
    for layer in model._leaves():
        layer.set_weights([(np.abs(v) + 0.5 if "variance" in n else v).astype(p.dtype)
                           for (n, p), v in zip(layer._params.items(),
                                                (rng.normal(0, 0.4, p.shape)
                                                 for p in layer._params.values()))])


def native_nested() -> tuple[Any, list[np.ndarray]]:
    """Built in nexec: a nested functional model called twice (shared), batch norm, GRU on a
    Reshape, a Bidirectional LSTM, a compiled model with two outputs."""
    nexec.clear_session()
    inner_in = Input((6,), name="inner_in")
    inner = Model(inner_in, layers.Dense(6, activation="tanh", name="inner_dense")(inner_in),
                  name="inner")
    a = Input((6,), name="a")
    b = Input((6,), name="b")
    ha, hb = inner(a), inner(inner(b))
    h = layers.Concatenate(name="cat")([ha, hb])
    h = layers.BatchNormalization(name="bn")(h)
    seq = layers.Reshape((4, 3), name="as_seq")(h)
    r = layers.Bidirectional(layers.LSTM(2, return_sequences=True), name="bi")(seq)
    r = layers.GRU(3, name="gru")(r)
    out1 = layers.Dense(2, activation="softmax", name="cls")(r)
    out2 = layers.Dense(1, name="reg")(h)
    model = Model([a, b], [out1, out2], name="native_nested")
    randomise(model, 7)
    model.compile(optimizer="adam", loss=["categorical_crossentropy", "mse"],
                  metrics=[["accuracy"], ["mae"]])
    rng = np.random.default_rng(8)
    return model, [rng.normal(0, 1, (3, 6)).astype("float32") for _ in range(2)]


NATIVE: dict[str, Callable[[], tuple[Any, list[np.ndarray]]]] = {"native_nested": native_nested}
