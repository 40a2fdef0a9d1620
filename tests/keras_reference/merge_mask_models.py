"""Masked branches merged again, written once for Keras and nexec: each builder takes the
library (``keras`` or ``nexec``: both give ``Input``, ``Model`` and ``layers``). Keras 3 joins
the masks with an AND for Add and the other elementwise merges, and, for Concatenate along
the features, an OR in which an unmasked input counts as valid everywhere. Recorded by
record_merge_masks.py, checked by tests/layers/test_merge_masks.py."""
from __future__ import annotations

from typing import Any

T, V, F = 5, 7, 3


def _embedded(k: Any) -> tuple:
    ids = k.Input((T,), dtype="int32", name="ids")
    return ids, k.layers.Embedding(V, F, mask_zero=True, dtype="float64", name="emb")(ids)


def add_branches(k: Any) -> Any:
    """Two masked branches added and read by an LSTM."""
    ids, e = _embedded(k)
    a = k.layers.LSTM(4, return_sequences=True, name="lstm_a")(e)
    b = k.layers.Dense(4, activation="tanh", name="dense_b")(e)
    s = k.layers.Add(name="add")([a, b])
    return k.Model(ids, k.layers.Dense(2, name="out")(k.layers.LSTM(3, name="lstm")(s)))


def multiply_then_average(k: Any) -> Any:
    """An elementwise product of masked branches, averaged over the valid steps."""
    ids, e = _embedded(k)
    a = k.layers.GRU(3, return_sequences=True, name="gru")(e)
    m = k.layers.Multiply(name="mul")([a, k.layers.Dense(3, name="dense_b")(e)])
    return k.Model(ids, k.layers.Dense(2, name="out")(
        k.layers.GlobalAveragePooling1D(name="avg")(m)))


def concat_branches(k: Any) -> Any:
    """Masked branches concatenated along the features: the same mask goes on."""
    ids, e = _embedded(k)
    c = k.layers.Concatenate(name="cat")([k.layers.GRU(4, return_sequences=True, name="gru")(e),
                                          k.layers.Dense(2, name="dense_b")(e)])
    return k.Model(ids, k.layers.Dense(2, name="out")(k.layers.LSTM(3, name="lstm")(c)))


def concat_with_unmasked(k: Any) -> Any:
    """A masked and an unmasked tensor concatenated: every step is valid after it, so the
    LSTM reads the padded steps too."""
    ids, e = _embedded(k)
    x = k.Input((T, 2), dtype="float64", name="x")
    c = k.layers.Concatenate(name="cat")([e, x])
    return k.Model([ids, x], k.layers.Dense(2, name="out")(k.layers.LSTM(3, name="lstm")(c)))


CASES = {"add_branches": add_branches, "multiply_then_average": multiply_then_average,
         "concat_branches": concat_branches, "concat_with_unmasked": concat_with_unmasked}
