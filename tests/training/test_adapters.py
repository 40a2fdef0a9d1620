"""Data that is not an in-memory array: memory maps, generators, iterables and PyDatasets.

The same data through each source must train bit-identically to arrays (no shuffle); the
epoch, shuffle and run-dry semantics follow Keras 3 (trainers/epoch_iterator.py and
data_adapters/py_dataset_adapter.py); a memory map is never copied whole.
"""
import gc
import tracemalloc
import warnings

import numpy as np
import pytest

import nexec
from nexec import Input, Model, Sequential, layers
from nexec.callbacks import Callback
from nexec.errors import DataError
from nexec.training.adapters import StreamFeed, preparer
from nexec.training.progress import ProgressBar
from nexec.utils import PyDataset, Sequence

N, F, BATCH = 50, 5, 16  # 4 batches, the last one partial (2 rows)
RNG = np.random.default_rng(7)
X = RNG.normal(size=(N, F))  # float64: every source casts to the model's float32
Y = RNG.integers(0, 3, N)


def _model():
    nexec.set_random_seed(0)
    x = Input((F,))
    h = layers.Dense(8, activation="relu")(x)
    m = Model(x, layers.Dense(3, activation="softmax")(h))
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def _gen(x=X, y=Y, batch=BATCH):
    for lo in range(0, len(x), batch):
        yield x[lo:lo + batch], y[lo:lo + batch]


class Batches(PyDataset):
    """Batches of X, Y by index; records the indices asked for and the epoch ends."""

    def __init__(self, x=X, y=Y, batch=BATCH, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch = x, y, batch
        self.asked, self.ends = [], 0

    def __len__(self):
        return -(-len(self.x) // self.batch)

    def __getitem__(self, i):
        self.asked.append(i)
        rows = slice(i * self.batch, (i + 1) * self.batch)
        return self.x[rows], self.y[rows]

    def on_epoch_end(self):
        self.ends += 1


class SeqBatches(Sequence):
    """The Keras 2 name, without calling super().__init__ (Keras then takes the defaults)."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return X[i * BATCH:(i + 1) * BATCH], Y[i * BATCH:(i + 1) * BATCH]


class Reiterable:
    """Not a generator: each iter() starts the batches anew."""

    def __iter__(self):
        return _gen()


def _memmap(tmp_path, a, name="x.npy"):
    path = str(tmp_path / name)
    mm = np.lib.format.open_memmap(path, "w+", a.dtype, a.shape)
    mm[:] = a
    mm.flush()
    del mm
    return np.load(path, mmap_mode="r")


def _train(x, y=None, **kw):
    m = _model()
    kw.setdefault("epochs", 2)
    kw.setdefault("verbose", 0)
    h = m.fit(x, y, **kw)
    return m.get_weights(), h.history


def _same(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_arrays_generator_pydataset_memmap_train_bit_identically(tmp_path):
    ref_w, ref_h = _train(X, Y, batch_size=BATCH, shuffle=False)
    two_epochs = (b for _ in range(2) for b in _gen())
    runs = {
        "generator": _train(two_epochs, steps_per_epoch=4, shuffle=False),
        "iterable": _train(Reiterable(), shuffle=False),
        "PyDataset": _train(Batches(), shuffle=False),
        "Sequence": _train(SeqBatches(), shuffle=False),
        "memmap": _train(_memmap(tmp_path, X), Y, batch_size=BATCH, shuffle=False),
        "memmap x and y": _train(_memmap(tmp_path, X), _memmap(tmp_path, Y, "y.npy"),
                                 batch_size=BATCH, shuffle=False),
    }
    for name, (w, h) in runs.items():
        _same(w, ref_w)
        assert h == ref_h, name


def test_pydataset_workers_threads_and_processes_give_the_same_batches():
    ref_w, ref_h = _train(Batches(), shuffle=False)
    for kw in ({"workers": 3, "max_queue_size": 2}, {"workers": 2, "use_multiprocessing": True}):
        w, h = _train(Batches(**kw), shuffle=False)
        _same(w, ref_w)
        assert h == ref_h


def test_shuffled_memmap_matches_shuffled_arrays(tmp_path):
    ref_w, _ = _train(X, Y, batch_size=BATCH, epochs=3)
    w, _ = _train(_memmap(tmp_path, X), Y, batch_size=BATCH, epochs=3)
    _same(w, ref_w)


def test_pydataset_shuffle_permutes_batch_indices_each_epoch_as_keras():
    """Keras' PyDatasetAdapter: fit(shuffle=True) visits every index once per epoch in a new
    random order (the rows inside a batch stay as __getitem__ gives them); on_epoch_end after
    each epoch; evaluate and predict read in order."""
    ds = Batches(x=np.repeat(X, 4, axis=0), y=np.repeat(Y, 4))  # 13 batches
    m = _model()
    m.fit(ds, epochs=3, verbose=0)
    n = len(ds)
    epochs = [ds.asked[i * n:(i + 1) * n] for i in range(3)]
    assert all(sorted(e) == list(range(n)) for e in epochs)
    assert len({tuple(e) for e in epochs}) == 3 and tuple(range(n)) not in map(tuple, epochs)
    assert ds.ends == 3
    again = Batches(x=np.repeat(X, 4, axis=0), y=np.repeat(Y, 4))
    _model().fit(again, epochs=3, verbose=0)
    assert again.asked == ds.asked  # set_random_seed makes the order reproducible
    ds.asked = []
    m.evaluate(ds, verbose=0)
    m.predict(ds)
    assert ds.asked == list(range(n)) * 2


class _Steps(Callback):
    def __init__(self):
        self.per_epoch = []

    def on_epoch_begin(self, epoch, logs=None):
        self.per_epoch.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.per_epoch[-1] += 1


def test_a_generator_that_runs_dry_ends_the_epoch_with_keras_warning():
    steps = _Steps()
    m = _model()
    with pytest.warns(UserWarning, match="ran out of data") as record:
        h = m.fit(_gen(), epochs=3, steps_per_epoch=3, shuffle=False, verbose=0,
                  callbacks=[steps])
    assert steps.per_epoch == [3, 1, 0]  # 4 batches: 3, then 1 and dry, then none: stop
    assert len(h.history["loss"]) == 2 and len(record) == 2
    steps = _Steps()
    with pytest.warns(UserWarning, match="ran out of data"):
        h = _model().fit(_gen(), epochs=3, shuffle=False, verbose=0, callbacks=[steps])
    assert steps.per_epoch == [4, 0] and len(h.history["loss"]) == 1
    with warnings.catch_warnings():  # a re-iterable gives every epoch its batches
        warnings.simplefilter("error")
        h = _model().fit(Reiterable(), epochs=3, shuffle=False, verbose=0)
    assert len(h.history["loss"]) == 3


def test_steps_per_epoch_on_a_memmap_continues_the_pass_as_arrays_do(tmp_path):
    with pytest.warns(UserWarning, match="ran out of data"):
        ref_w, ref_h = _train(X, Y, batch_size=BATCH, epochs=3, steps_per_epoch=3)
    with pytest.warns(UserWarning, match="ran out of data"):
        w, h = _train(_memmap(tmp_path, X), Y, batch_size=BATCH, epochs=3, steps_per_epoch=3)
    _same(w, ref_w)
    assert h == ref_h


def test_predict_and_evaluate_take_streams(tmp_path):
    m = _model()
    ref = m.predict(X, batch_size=BATCH)
    np.testing.assert_array_equal(m.predict(_gen()), ref)
    np.testing.assert_array_equal(m.predict(Batches()), ref)
    np.testing.assert_array_equal(m.predict(_memmap(tmp_path, X), batch_size=BATCH), ref)
    np.testing.assert_array_equal(m.predict((x for x, _ in _gen())), ref)  # x alone
    np.testing.assert_array_equal(m.predict(Batches(), steps=2), ref[:2 * BATCH])
    want = m.evaluate(X, Y, batch_size=BATCH, verbose=0)
    assert m.evaluate(_gen(), verbose=0) == want
    assert m.evaluate(Batches(), verbose=0) == want
    assert m.evaluate(_memmap(tmp_path, X), Y, batch_size=BATCH, verbose=0) == want


def test_validation_data_as_a_stream(tmp_path):
    ref_w, ref_h = _train(X, Y, batch_size=BATCH, shuffle=False, validation_data=(X, Y))
    for val in (Batches(), (_memmap(tmp_path, X), Y)):
        w, h = _train(X, Y, batch_size=BATCH, shuffle=False, validation_data=val)
        _same(w, ref_w)
        assert h == ref_h
    _, h = _train(X, Y, batch_size=BATCH, validation_data=Batches(), validation_steps=1)
    assert len(h["val_loss"]) == 2
    _, split = _train(X, Y, batch_size=BATCH, shuffle=False, validation_split=0.2)
    _, mm_split = _train(_memmap(tmp_path, X), Y, batch_size=BATCH, shuffle=False,
                         validation_split=0.2)
    assert split == mm_split


def test_streams_with_dicts_and_two_inputs():
    nexec.set_random_seed(0)
    a, b = Input((2,), name="a"), Input((3,), name="b")
    out = layers.Dense(1, name="out")(layers.Concatenate()([a, b]))
    m = Model([a, b], out)
    m.compile("sgd", "mse")
    xa, xb, y = X[:, :2], X[:, 2:], X[:, :1]
    w0 = m.get_weights()
    m.fit([xa, xb], y, batch_size=BATCH, shuffle=False, verbose=0)
    ref = m.get_weights()
    m.set_weights(w0)
    batches = (({"a": xa[i:i + BATCH], "b": xb[i:i + BATCH]}, {"out": y[i:i + BATCH]})
               for i in range(0, N, BATCH))
    m.fit(batches, shuffle=False, verbose=0)
    _same(m.get_weights(), ref)


def test_a_sequential_learns_its_input_shape_from_a_pydataset_not_a_generator():
    nexec.set_random_seed(0)
    m = Sequential([layers.Dense(3, activation="softmax")])
    m.compile("sgd", "sparse_categorical_crossentropy")
    m.fit(Batches(), verbose=0)
    assert m.inputs[0].shape == (None, F)
    m = Sequential([layers.Dense(3, activation="softmax")])
    m.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(DataError, match="input_shape"):
        m.fit(_gen(), verbose=0)


def test_sample_weights_of_a_batch_are_carried_per_batch():
    m = _model()
    prepare = preparer(m, "float32", m._trainer.losses)
    batches = ((x, y, np.arange(len(y)) / 10) for x, y in _gen())
    feed = StreamFeed(batches, None, prepare, BATCH, False, None)
    got = list(feed.epoch())
    assert [b.size for b in got] == [16, 16, 16, 2]
    assert all(b.weighted for b in got)
    weights = got[3].sources[-1]  # after the inputs and targets: the one output's weights
    np.testing.assert_array_equal(weights, np.float32([0, 0.1]))
    assert weights.dtype == np.float32
    unweighted = StreamFeed(iter([(X[:2], Y[:2])]), None, prepare, 2, False, None)
    assert not next(unweighted.epoch()).weighted


def test_weighted_batches_train_as_weighted_arrays(tmp_path):
    """(x, y, sample_weight) batches from a generator or a PyDataset, and sample_weight
    beside a memmap (shuffled too), train to the bits of fit(sample_weight=...) on arrays."""
    w = np.random.default_rng(3).uniform(0, 2, len(X))

    class Weighted(Batches):
        def __getitem__(self, i):
            rows = slice(i * BATCH, (i + 1) * BATCH)
            return X[rows], Y[rows], w[rows]

    def trained(x, y=None, **kwargs):
        m = _model()
        m.fit(x, y, batch_size=BATCH, verbose=0, **kwargs)
        return m.get_weights()

    want = trained(X, Y, shuffle=False, sample_weight=w)
    gen = ((X[i:i + BATCH], Y[i:i + BATCH], w[i:i + BATCH]) for i in range(0, N, BATCH))
    for name, got in [("generator", trained(gen, shuffle=False)),
                      ("PyDataset", trained(Weighted(), shuffle=False)),
                      ("memmap", trained(_memmap(tmp_path, X), Y, shuffle=False,
                                         sample_weight=w))]:
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b, err_msg=name)
    want = trained(X, Y, epochs=2, sample_weight=w)
    got = trained(_memmap(tmp_path, X, "x2.npy"), Y, epochs=2, sample_weight=w)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b, err_msg="shuffled memmap")


def test_the_prefetcher_copies_a_buffer_the_generator_refills():
    def refilling():
        buf = np.empty((BATCH, F))
        for x, y in _gen():
            buf[:len(x)] = x
            yield buf[:len(x)], y
    ref_w, _ = _train(X, Y, batch_size=BATCH, shuffle=False, epochs=1)
    w, _ = _train(refilling(), shuffle=False, epochs=1)
    _same(w, ref_w)


def test_an_error_inside_the_data_source_reaches_fit():
    class Broken(Batches):
        def __getitem__(self, i):
            if i == 2:
                raise KeyError("no batch 2 here")
            return super().__getitem__(i)
    for kw in ({}, {"workers": 2}):
        with pytest.raises(KeyError, match="no batch 2"):
            _model().fit(Broken(**kw), shuffle=False, verbose=0)


def test_a_memmap_is_read_batch_by_batch_not_copied_whole(tmp_path):
    """uint8 rows cast to float32 per batch: a whole cast copy would be 4x the file (64 MB);
    the traced peak while training (a few batches of 1 MB in flight) stays under half the
    file."""
    rows, feats = 16384, 1024
    path = str(tmp_path / "big.npy")
    mm = np.lib.format.open_memmap(path, "w+", np.uint8, (rows, feats))
    for lo in range(0, rows, 2048):
        mm[lo:lo + 2048] = np.arange(lo, lo + 2048)[:, None] % 7
    mm.flush()
    del mm
    x = np.load(path, mmap_mode="r")
    y = np.zeros(rows, np.int64)
    nexec.set_random_seed(0)
    inp = Input((feats,))
    m = Model(inp, layers.Dense(2, activation="softmax")(inp))
    m.compile("sgd", "sparse_categorical_crossentropy")
    m.fit(x[:512], y[:512], batch_size=256, verbose=0)  # compile and bind outside the trace
    gc.collect()
    tracemalloc.start()
    try:
        m.fit(x, y, batch_size=256, epochs=1, verbose=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes / 2, f"peak {peak / 1e6:.1f} MB for a {x.nbytes / 1e6:.0f} MB file"


def test_progress_bar_shows_unknown_totals_and_the_wait_for_data():
    import io
    out = io.StringIO()
    bar = ProgressBar(None, 1, out)
    bar.update(5)
    bar.waited = 1e9  # far more than the elapsed time: a share over 1%
    bar.finish({"loss": 0.5})
    line = out.getvalue()
    assert line.startswith("5/5 [") and "data wait:" in line and "loss: 0.5000" in line
    out = io.StringIO()
    bar = ProgressBar(3, 2, out)
    bar.waited = 0.0
    bar.finish({"loss": 0.5})
    assert "data wait" not in out.getvalue()


def test_mnist_5k_loads_from_the_installed_package():
    from nexec.datasets import mnist_5k
    (x, y), (xt, yt) = mnist_5k.load_data()
    assert x.shape == (4000, 28, 28) and xt.shape == (1000, 28, 28)
    assert x.dtype == np.uint8 and y.dtype == np.uint8 and x.max() == 255
    assert np.bincount(np.concatenate([y, yt])).tolist() == [500] * 10
    (x2, _), _ = mnist_5k.load_data()
    np.testing.assert_array_equal(x, x2)


def test_streams_on_cuda_train_as_arrays_do(tmp_path):
    """The CUDA device stages each streamed batch through its pinned buffer (simulator)."""
    def run(x, y=None):
        nexec.set_random_seed(0)
        i = Input((F,))
        m = Model(i, layers.Dense(3, activation="softmax")(i))
        m.compile("sgd", "sparse_categorical_crossentropy", device="cuda")
        m.fit(x, y, batch_size=BATCH, shuffle=False, verbose=0)
        return m.get_weights(), m.predict(x if y is not None else Batches())
    ref_w, ref_p = run(X, Y)
    for data in ((Batches(),), (_memmap(tmp_path, X), Y)):
        w, p = run(*data)
        _same(w, ref_w)
        np.testing.assert_array_equal(p, ref_p)
