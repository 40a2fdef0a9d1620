"""Optimizer updates split over the intra-op shards (training/optimizers.py ``split_ranges``):
bit-identical to one call for every optimizer kind, float32 and float64; split only in
programs that already run shards; clipping stays one call."""
import numpy as np
import pytest

import nexec
from benchmarks import models as bench
from nexec import Input, Model, layers, optimizers
from nexec.devices.threads import run_shards, set_num_threads
from nexec.kernels.cpu import optimizer as K
from nexec.ops import builtin
from nexec.training import optimizers as opt_module
from nexec.training.optimizers import split_ranges
from tests.runtime.test_elementwise_shards import _cpu, _kernels, _run
from tests.runtime.test_threads import restore_threads  # noqa: F401 - autouse

N = 1003  # divisible by neither 2 nor 3 shards, nor by the 16-element alignment

KINDS = [
    lambda: optimizers.SGD(0.0123),
    lambda: optimizers.SGD(0.0123, momentum=0.9),
    lambda: optimizers.SGD(0.0123, momentum=0.9, nesterov=True),
    lambda: optimizers.RMSprop(0.003),
    lambda: optimizers.Adam(0.003),
    lambda: optimizers.AdamW(0.003),
    lambda: optimizers.Nadam(0.003),
    lambda: optimizers.Adamax(0.003),
    lambda: optimizers.Adagrad(0.01),
    lambda: optimizers.Adadelta(0.5),
    lambda: optimizers.Lion(0.001),
    lambda: optimizers.Adam(0.003, global_clipnorm=1.0),
    lambda: optimizers.SGD(0.01, momentum=0.9, clipnorm=0.5),
]
KIND_IDS = ["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw", "nadam", "adamax",
            "adagrad", "adadelta", "lion", "adam-global-clipnorm", "sgd-clipnorm"]


@pytest.fixture
def split_everything(monkeypatch):
    """Every update, however small, is split where a program runs shards."""
    monkeypatch.setattr(opt_module, "MIN_SPLIT_PARAMS", 1)



def _same(a, b):
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


# --------------------------------------------------------------------------- the ranges


@pytest.mark.parametrize("threads", [2, 3, 4])
def test_ranges_cover_the_buffer_in_order(split_everything, threads):
    for size in (1, 15, 17, N, 4096 + 5):
        ranges = split_ranges(size, threads, True)
        assert ranges[0][0] == 0 and ranges[-1][1] == size
        assert all(hi > lo for lo, hi in ranges)
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        assert all(lo % 16 == 0 for lo, _ in ranges)
        if size >= 32 * threads:
            assert len(ranges) == threads
    assert split_ranges(N, 1, True) == [(0, N)]


def test_thresholds():
    assert split_ranges(opt_module.MIN_SPLIT_PARAMS - 1, 2, True) == \
        [(0, opt_module.MIN_SPLIT_PARAMS - 1)]
    assert len(split_ranges(opt_module.MIN_SPLIT_PARAMS, 2, True)) == 2
    assert opt_module.MIN_SPLIT_PARAMS_ALONE is None  # never split a program without shards
    assert split_ranges(50_000_000, 2, False) == [(0, 50_000_000)]


# --------------------------------------------------------------------------- bit identity


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("make", KINDS, ids=KIND_IDS)
def test_split_update_is_bit_identical(split_everything, make, threads, dtype):
    set_num_threads(threads)
    dev = _cpu()
    rng = np.random.default_rng(5)
    w0 = rng.normal(size=N).astype(dtype)
    grads = [(rng.normal(size=N) * 10.0 ** rng.integers(-4, 2, size=N)).astype(dtype)
             for _ in range(6)]
    results = []
    for threaded in (False, True):
        opt = make()
        opt.build(N, np.dtype(dtype).str, dev)
        w, g = w0.copy(), np.zeros(N, dtype)
        calls = opt.calls(w, g, None, threaded=threaded)
        assert (run_shards in [fn for fn, _ in calls]) == threaded
        if threaded:
            parts = [fn for fn in _kernels(calls) if fn.__name__.endswith("_part")]
            assert len(parts) == threads
            # clipping (a sum over all gradients) is one call before the split
            sharded = _kernels([c for c in calls if c[0] is run_shards])
            assert all(fn.__name__.endswith("_part") for fn in sharded)
        for grad in grads:
            g[:] = grad
            _run(calls)
        results.append((w, [s.copy() for s in opt.state], opt.hyper.copy()))
    (w1, s1, h1), (w2, s2, h2) = results
    assert _same(w1, w2)
    assert all(_same(a, b) for a, b in zip(s1, s2))
    assert _same(h1, h2) and h1[0] == len(grads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_part_kernels_match_the_whole_update_directly(dtype):
    """The ``*_part`` kernels on ranges of odd sizes, after ``advance_step``, against the
    whole kernel: same bits, same hyperparameters (Nadam's ``u_product`` included)."""
    rng = np.random.default_rng(7)
    hypers = {"sgd": [0, 0.01, 0.9, 1.0], "rmsprop": [0, 0.001, 0.9, 1e-7],
              "adam": [0, 0.001, 0.9, 0.999, 1e-7], "nadam": [0, 0.001, 0.9, 0.999, 1e-7, 1.0],
              "adamax": [0, 0.001, 0.9, 0.999, 1e-7], "adagrad": [0, 0.001, 1e-7],
              "adadelta": [0, 0.5, 0.95, 1e-7], "lion": [0, 0.001, 0.9, 0.99]}
    slots = {"sgd": 1, "rmsprop": 1, "adam": 2, "nadam": 2, "adamax": 2, "adagrad": 1,
             "adadelta": 2, "lion": 1}
    bounds = [0, 5, 6, 500, N]
    for kind, h in hypers.items():
        whole, part = getattr(K, f"{kind}_update"), getattr(K, f"{kind}_part")
        w = rng.normal(size=N).astype(dtype)
        st = [rng.uniform(0.0, 1.0, N).astype(dtype) for _ in range(slots[kind])]
        w2, st2 = w.copy(), [s.copy() for s in st]
        h1, h2 = np.array(h, float), np.array(h, float)
        for _ in range(4):
            g = rng.normal(size=N).astype(dtype)
            whole(w, g, *st, h1)
            if kind == "nadam":
                K.nadam_advance_step(h2)
            else:
                K.advance_step(h2, np.int64(len(h)), 1.0)
            for lo, hi in zip(bounds, bounds[1:]):
                part(w2[lo:hi], g[lo:hi], *(s[lo:hi] for s in st2), h2)
        assert _same(w, w2), kind
        assert all(_same(a, b) for a, b in zip(st, st2)), kind
        assert _same(h1, h2), kind


def test_advance_step_refuses_a_short_hyper_or_negative_count():
    with pytest.raises(ValueError, match="too short"):
        K.advance_step(np.zeros(3), np.int64(4), 0.0)
    h = np.array([-1.0, 0.1, 0.9, 0.999, 1e-7])
    with pytest.raises(ValueError, match="negative"):
        K.advance_step(h, np.int64(5), 1.0)
    assert h[0] == -1.0
    K.advance_step(h, np.int64(5), 0.0)  # SGD and RMSprop count on from any value
    assert h[0] == 0.0


# --------------------------------------------------------------------------- whole models


def _cnn():
    i = Input(shape=(6, 6, 2))
    a = layers.Conv2D(4, 3, padding="same", activation="relu")(i)
    b = layers.Conv2D(4, 3, padding="same", activation="relu")(a)
    out = layers.Dense(3, activation="softmax")(layers.Flatten()(layers.Add()([a, b])))
    return Model(i, out)


@pytest.mark.parametrize("optimizer", ["sgd-momentum", "adam"])
def test_cnn_training_with_the_split_forced_matches_the_unsplit_bits(monkeypatch, optimizer):
    monkeypatch.setattr(builtin, "_MIN_SHARD_FLOPS", 1)  # tiny convolutions are split too
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20, 6, 6, 2)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 20)]

    def train(min_split):
        monkeypatch.setattr(opt_module, "MIN_SPLIT_PARAMS", min_split)
        nexec.clear_session()
        nexec.set_random_seed(4)
        set_num_threads(2)
        model = _cnn()
        opt = optimizers.SGD(0.01, momentum=0.9) if optimizer == "sgd-momentum" else \
            optimizers.Adam(0.003)
        model.compile(optimizer=opt, loss="categorical_crossentropy")
        model.fit(x, y, epochs=2, batch_size=5, verbose=0)
        prog = model._trainer.train_executor.program(5)
        assert prog.threaded
        split = any(fn.__name__.endswith("_part") for fn in _kernels(prog.update))
        assert split == (min_split == 1)
        return model.get_weights() + [opt.iterations]

    for a, b in zip(train(10**9), train(1)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["seed_mlp", "wide_mlp"])
def test_mlps_stay_unthreaded(name):
    """Dense models keep both BLAS threads for their GEMMs: no shards, so no split update,
    even though the wide MLP has more parameters than ``MIN_SPLIT_PARAMS``."""
    set_num_threads(2)
    nexec.clear_session()
    model = bench.compile_model(bench.build(name), name)
    spec = bench.spec(name)
    rng = np.random.default_rng(0)
    batch = spec["batch"]
    x = rng.normal(size=(batch, spec["features"])).astype("float32")
    y = np.eye(spec["classes"], dtype="float32")[rng.integers(0, spec["classes"], batch)]
    if name == "wide_mlp":
        assert model.count_params() > opt_module.MIN_SPLIT_PARAMS
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    prog = model._trainer.train_executor.program(batch)
    assert not prog.threaded
    assert run_shards not in [fn for fn, _ in prog.update]
