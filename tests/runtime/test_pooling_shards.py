"""Pooling split over the intra-op shards by whole images (ops/pooling.py): bit-identical to
one call, and really split where ``elementwise.shard_count`` says so."""
import numpy as np

from nexec import Input, Model, layers
from nexec.devices.threads import run_shards
from tests.runtime.test_elementwise_shards import _cpu, _kernels, _train
from tests.runtime.test_threads import restore_threads  # noqa: F401 - autouse


def _pools():
    i = Input(shape=(6, 5, 2))
    c = layers.Conv2D(4, 3, padding="same", activation="relu")(i)
    p = layers.MaxPooling2D(3, strides=2, padding="same")(c)
    a = layers.AveragePooling2D(2, padding="same")(c)
    g = layers.Concatenate()([layers.GlobalMaxPooling2D()(p),
                              layers.GlobalAveragePooling2D()(a)])
    return Model(i, layers.Dense(3, activation="softmax")(g))


def test_split_pooling_trains_and_predicts_bit_identically(monkeypatch):
    w1, p1, prog1 = _train(monkeypatch, 10**12, _pools)
    wn, pn, progn = _train(monkeypatch, 1, _pools)
    k = _cpu().kernels
    split = [fn for fn, args in progn.forward + progn.backward if fn is run_shards
             for fn in _kernels(args[0])]
    whole = [fn for fn, _ in prog1.forward + prog1.backward]
    for fn in (k.max_pool_forward, k.max_pool_backward, k.avg_pool_forward,
               k.avg_pool_backward):
        assert fn in split and fn in whole, fn
        assert fn not in [f for f, _ in progn.forward + progn.backward]  # never one call
    np.testing.assert_array_equal(pn, p1)
    for a, b in zip(wn, w1):
        np.testing.assert_array_equal(a, b)
