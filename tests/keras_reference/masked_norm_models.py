"""Masked inputs into BatchNormalization and Softmax, written once for Keras and nexec: each
builder takes the library (``keras`` or ``nexec``: both give ``Input``, ``Model`` and
``layers``). Keras 3 weights BatchNormalization's batch moments by the mask in training;
its Softmax broadcasts the mask against the input's trailing axes, which an Embedding mask
does not fit (``SOFTMAX_CASES``: Keras raises). Recorded by record_masked_norm.py, checked
by tests/layers/test_masked_norm_softmax_keras.py."""
from __future__ import annotations

from typing import Any

T, V, F = 5, 7, 3


def _embedded(k: Any) -> tuple:
    ids = k.Input((T,), dtype="int32", name="ids")
    return ids, k.layers.Embedding(V, F, mask_zero=True, dtype="float64", name="emb")(ids)


def bn_average(k: Any) -> Any:
    """Masked moments, then the mask read again by an average over the real steps."""
    ids, e = _embedded(k)
    h = k.layers.Dense(4, activation="tanh", name="dense")(e)
    n = k.layers.BatchNormalization(momentum=0.8, name="bn")(h)
    return k.Model(ids, k.layers.Dense(2, name="out")(
        k.layers.GlobalAveragePooling1D(name="avg")(n)))


def bn_lstm(k: Any) -> Any:
    """The embedding normalised with masked moments (no scale), its mask on to an LSTM."""
    ids, e = _embedded(k)
    n = k.layers.BatchNormalization(momentum=0.5, epsilon=1e-2, scale=False, name="bn")(e)
    return k.Model(ids, k.layers.Dense(2, name="out")(k.layers.LSTM(3, name="lstm")(n)))


def bn_per_step(k: Any) -> Any:
    """A masked per-step output: padded steps are normalised too, the loss masks them."""
    ids, e = _embedded(k)
    n = k.layers.BatchNormalization(momentum=0.9, center=False, name="bn")(
        k.layers.Dense(3, name="dense")(e))
    return k.Model(ids, k.layers.Dense(2, name="out")(n))


def softmax_features(k: Any) -> Any:
    """Softmax over the features of a masked sequence: Keras raises."""
    ids, e = _embedded(k)
    return k.Model(ids, k.layers.Softmax(name="sm")(k.layers.Dense(4, name="dense")(e)))


def softmax_steps(k: Any) -> Any:
    """Softmax over the steps of a masked (batch, steps, 1) score (Keras' ``axis=1``; nexec
    has the last axis only): Keras raises."""
    ids, e = _embedded(k)
    return k.Model(ids, k.layers.Softmax(axis=1, name="sm")(k.layers.Dense(1, name="dense")(e)))


CASES = {"bn_average": bn_average, "bn_lstm": bn_lstm, "bn_per_step": bn_per_step}
SOFTMAX_CASES = {"softmax_features": softmax_features, "softmax_steps": softmax_steps}
