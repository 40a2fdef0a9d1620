"""Masked branches merged again, and tensors masked by different Embedding(mask_zero=True)
layers merged, written once for Keras and nexec: each builder takes the library (``keras``
or ``nexec``: both give ``Input``, ``Model`` and ``layers``). Keras 3 joins the masks with an
OR (``Merge.compute_mask``: none if an input is unmasked; Concatenate along the features:
``any`` over the joined masks, an unmasked input counting as valid everywhere). Recorded by
record_merge_masks.py, checked by tests/layers/test_merge_masks.py. The extra integer
inputs of the two-source models get the ids ``MORE_IDS`` (the first input gets the
recorder's ``IDS``)."""
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


#: Ids of the second and third id inputs: steps valid in one source only, in both, in none.
MORE_IDS = [[[0, 2, 0, 0, 1], [0, 0, 0, 3, 0], [0, 4, 0, 0, 0], [0, 0, 0, 0, 0]],
            [[0, 0, 0, 1, 0], [1, 0, 0, 0, 0], [0, 0, 2, 0, 0], [0, 0, 0, 0, 0]]]


def _two_sources(k: Any, n: int = 2) -> tuple:
    """``n`` id inputs, each with its own Embedding(mask_zero=True): ``n`` mask sources."""
    ids, e = _embedded(k)
    more = [k.Input((T,), dtype="int32", name=f"ids_{i}") for i in range(1, n)]
    embs = [k.layers.Embedding(V, F, mask_zero=True, dtype="float64", name=f"emb_{i}")(x)
            for i, x in enumerate(more, 1)]
    return [ids, *more], [e, *embs]


def add_two_sources(k: Any) -> Any:
    """Two differently masked tensors added: the OR of their masks drives the LSTM."""
    ids, (a, b) = _two_sources(k)
    s = k.layers.Add(name="add")([a, k.layers.Dense(F, activation="tanh", name="dense_b")(b)])
    return k.Model(ids, k.layers.Dense(2, name="out")(k.layers.LSTM(3, name="lstm")(s)))


def concat_two_sources(k: Any) -> Any:
    """Two differently masked tensors concatenated along the features, averaged over the
    steps valid in either."""
    ids, (a, b) = _two_sources(k)
    c = k.layers.Concatenate(name="cat")([k.layers.GRU(4, return_sequences=True, name="gru")(a),
                                          b])
    return k.Model(ids, k.layers.Dense(2, name="out")(
        k.layers.GlobalAveragePooling1D(name="avg")(c)))


def add_two_sources_masked_loss(k: Any) -> Any:
    """A sequence output masked by the OR of two sources: Keras' masked loss and metric."""
    ids, (a, b) = _two_sources(k)
    s = k.layers.Add(name="add")([a, b])
    seq = k.layers.LSTM(3, return_sequences=True, name="lstm")(s)
    return k.Model(ids, k.layers.TimeDistributed(k.layers.Dense(2), name="out")(seq))


def average_three_sources(k: Any) -> Any:
    """Three mask sources averaged: the OR of three masks, into an LSTM over sequences."""
    ids, embs = _two_sources(k, 3)
    s = k.layers.Average(name="avg3")(embs)
    seq = k.layers.LSTM(3, return_sequences=True, name="lstm")(s)
    return k.Model(ids, k.layers.Dense(2, name="out")(k.layers.LSTM(2, name="lstm2")(seq)))


CASES = {"add_branches": add_branches, "multiply_then_average": multiply_then_average,
         "concat_branches": concat_branches, "concat_with_unmasked": concat_with_unmasked,
         "add_two_sources": add_two_sources, "concat_two_sources": concat_two_sources,
         "add_two_sources_masked_loss": add_two_sources_masked_loss,
         "average_three_sources": average_three_sources}

#: Metrics compiled (and recorded per epoch) besides the MSE loss.
METRICS = {"add_two_sources_masked_loss": ["mae"]}
