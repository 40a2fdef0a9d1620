"""Pooling split over the intra-op shards by whole images (ops/pooling.py): bit-identical to
one call, and really split where ``elementwise.shard_count`` says so."""
import numpy as np

import nexec
from nexec import Input, Model, layers
from nexec.devices.threads import run_shards, set_num_threads
from nexec.ops import elementwise
from tests.runtime.test_elementwise_shards import _cpu, _kernels
from tests.runtime.test_threads import restore_threads  # noqa: F401 - autouse


def _train(monkeypatch, threshold):
    monkeypatch.setattr(elementwise, "MIN_SHARD_BYTES", threshold)
    nexec.clear_session()
    nexec.set_random_seed(5)
    set_num_threads(3)
    i = Input(shape=(6, 5, 2))
    c = layers.Conv2D(4, 3, padding="same", activation="relu")(i)
    p = layers.MaxPooling2D(3, strides=2, padding="same")(c)
    a = layers.AveragePooling2D(2, padding="same")(c)
    g = layers.Concatenate()([layers.GlobalMaxPooling2D()(p),
                              layers.GlobalAveragePooling2D()(a)])
    model = Model(i, layers.Dense(3, activation="softmax")(g))
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    rng = np.random.default_rng(6)
    x = rng.normal(size=(7, 6, 5, 2))
    y = np.eye(3)[rng.integers(0, 3, 7)]
    model.fit(x, y, epochs=2, batch_size=5, verbose=0)  # batches of 5 and 2 images
    pred = model.predict(x, batch_size=5)
    return model.get_weights(), pred, model._trainer.train_executor.program(5)


def test_split_pooling_trains_and_predicts_bit_identically(monkeypatch):
    w1, p1, prog1 = _train(monkeypatch, 10**12)
    wn, pn, progn = _train(monkeypatch, 1)
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
