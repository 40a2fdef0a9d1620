"""nexec under load: the free cores measured from /proc, and the threads that follow them."""
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import nexec
from nexec import Input, Model, layers
from nexec.devices import load, threads
from nexec.devices.threads import get_num_threads, run_shards, set_num_threads
from nexec.ops import builtin
from tests.blas_bits import assert_same_bits_where_blas_keeps_them

STAT = """cpu  300 0 100 500 10 0 0 0 0 0
cpu0 100 0 50 250 5 0 0 0 0 0
cpu1 200 0 50 250 5 0 0 0 0 0
cpu2 0 0 0 400 0 0 0 0 0 0
intr 1 2 3
"""
SELF = "4242 (a (weird) name) R 1 2 3 4 5 6 7 8 9 10 40 2 0 0 20 0 3 0"


class FakeLoad:
    """Stands in for the /proc measurement: reports ``free`` cores."""

    def __init__(self, free):
        self.free = free

    def update(self):
        return self.free


@pytest.fixture(autouse=True)
def restore():
    before, adaptive, availability = get_num_threads(), threads._adaptive, threads._availability
    yield
    set_num_threads(before)
    threads.set_adaptive_threads(adaptive)
    threads._availability = availability
    threads.adapt_blas_to_load()  # gives BLAS back whatever a test's fake load took


def fake_load(free, n=2):
    set_num_threads(n)
    threads.set_adaptive_threads(True)
    threads._availability = FakeLoad(free)


# --------------------------------------------------------------------------- measuring


def test_ticks_are_read_for_the_allowed_cpus_only():
    assert load.cpu_ticks(STAT, {0, 1}) == (400, 910)  # busy = all but idle and iowait
    assert load.cpu_ticks(STAT, {2}) == (0, 400)
    assert load.cpu_ticks(STAT, {7}) is None
    assert load.own_ticks(SELF) == 42  # utime 40 + stime 2, after a name with ")" and spaces


@pytest.mark.parametrize("others, ncpus, free", [
    (0.0, 2, 2), (0.05, 2, 2), (0.67, 2, 1), (1.0, 2, 1), (2.0, 2, 1),
    (0.3, 4, 4), (1.0, 4, 3), (1.6, 4, 2), (3.9, 4, 1)])
def test_free_cores_round_a_shared_core_down(others, ncpus, free):
    assert load.free_cpus(ncpus, others) == free


def test_others_are_the_busy_time_less_this_process():
    # 2 CPUs, 100 ticks each: 150 busy, of which 50 ours -> others used 100 of 200 = 1 CPU
    assert load.others_busy_cpus((0, 0, 0), (150, 200, 50), 2) == pytest.approx(1.0)
    assert load.others_busy_cpus((0, 0, 0), (50, 200, 60), 2) == 0.0  # never negative
    assert load.others_busy_cpus((5, 9, 1), (5, 9, 1), 2) == 0.0  # no time passed


def test_availability_samples_at_most_once_per_interval():
    now = [0.0]
    stats = iter([("cpu0 0 0 0 100 0 0 0 0\ncpu1 0 0 0 100 0 0 0 0\n", 0),
                  ("cpu0 100 0 0 100 0 0 0 0\ncpu1 10 0 0 190 0 0 0 0\n", 10),  # others: 1.0
                  ("cpu0 110 0 0 190 0 0 0 0\ncpu1 20 0 0 280 0 0 0 0\n", 20)])  # others: 0
    current = {}

    def read(path):
        if path == "/proc/stat":
            current["stat"], current["own"] = next(stats)
            return current["stat"]
        return f"1 (x) R {' '.join(['0'] * 10)} {current['own']} 0"

    a = load.CpuAvailability(interval=0.25, clock=lambda: now[0], read=read)
    a.cpus = {0, 1}
    assert a.update() is None  # one sample: nothing to compare yet
    now[0] = 0.1
    assert a.update() is None  # within the interval: no new sample
    now[0] = 0.3
    assert a.update() == 1
    now[0] = 0.4
    assert a.update() == 1
    now[0] = 0.6
    assert a.update() == 2  # the load went away


def test_without_proc_nothing_is_measured_and_nothing_changes():
    a = load.CpuAvailability(read=lambda path: None)
    assert a.update() is None
    assert not a.usable


def test_a_busy_process_is_seen():
    a = load.CpuAvailability(interval=0.0)
    before = a.sample()
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.8)
        after = a.sample()
    finally:
        spin.kill()
        spin.wait()
    # the spinning process had a whole core (or its share of a loaded machine's)
    assert load.others_busy_cpus(before, after, len(a.cpus)) > 0.5


# --------------------------------------------------------------------------- threads follow


def test_usable_threads_follow_the_free_cores_up_to_the_set_count():
    fake_load(1, n=2)
    assert threads.usable_threads() == 1
    fake_load(4, n=2)
    assert threads.usable_threads() == 2
    fake_load(None, n=3)  # not measured: the set count
    assert threads.usable_threads() == 3
    fake_load(1, n=2)
    nexec.set_adaptive_threads(False)  # exported as torch.set_num_threads' neighbour
    assert threads.usable_threads() == 2
    with pytest.raises(TypeError, match="True or False"):
        threads.set_adaptive_threads("no")


def test_shards_are_grouped_onto_the_free_cores():
    seen = []

    def shard(i):
        seen.append((i, threading.get_ident()))

    fake_load(1, n=3)
    run_shards(tuple((shard, (i,)) for i in range(3)))
    assert sorted(seen) == [(i, threading.get_ident()) for i in range(3)]  # all in the caller
    seen.clear()
    fake_load(2, n=3)
    run_shards(tuple((shard, (i,)) for i in range(3)))
    by_thread = {}
    for i, t in seen:
        by_thread.setdefault(t, []).append(i)
    assert len(by_thread) <= 2  # two threads at most (the caller may run shard 1 too, when
    assert {0, 2} <= set(by_thread[threading.get_ident()])  # its worker has not started it)
    assert sorted(i for i, _ in seen) == [0, 1, 2]


def _blas_threads():
    return {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


def test_blas_is_held_below_its_count_while_the_load_lasts_and_given_back_after():
    import scipy.linalg.cython_blas  # noqa: F401 - load the BLAS Numba uses

    fake_load(None, n=2)
    threads.adapt_blas_to_load()
    before = _blas_threads()
    fake_load(1, n=2)
    threads.adapt_blas_to_load()
    assert set(_blas_threads().values()) == {1}
    with threads.single_threaded_blas():  # a sharded step meanwhile changes nothing after
        pass
    assert set(_blas_threads().values()) == {1}
    fake_load(2, n=2)
    threads.adapt_blas_to_load()
    assert _blas_threads() == before


def test_a_thread_count_below_blas_own_holds_blas_there_and_gives_it_back():
    """``set_num_threads(1)`` (a Ray replica with one CPU) runs one-thread GEMMs, not BLAS's
    own count beside other processes; a count at BLAS's own gives it back."""
    import scipy.linalg.cython_blas  # noqa: F401 - load the BLAS Numba uses

    own = threads._blas_own_threads()
    if own < 2 or (os.cpu_count() or 1) < 2:
        pytest.skip("BLAS runs one thread on this machine: there is nothing to hold")
    threads.set_adaptive_threads(False)  # no load: only the thread count decides
    set_num_threads(own)
    threads.adapt_blas_to_load()
    before = _blas_threads()
    assert max(before.values()) == own
    set_num_threads(1)
    threads.adapt_blas_to_load()
    assert set(_blas_threads().values()) == {1}
    set_num_threads(own)
    threads.adapt_blas_to_load()
    assert _blas_threads() == before


# --------------------------------------------------------------------------- same results


def _cnn():
    i = Input(shape=(6, 6, 2))
    a = layers.Conv2D(4, 3, padding="same", activation="relu")(i)
    b = layers.Conv2D(4, 3, padding="same", activation="relu")(a)
    out = layers.Dense(3, activation="softmax")(layers.Flatten()(layers.Add()([a, b])))
    return Model(i, out)


def _mlp():
    i = Input(shape=(64,))
    h = layers.Dense(256, activation="relu")(i)
    return Model(i, layers.Dense(3, activation="softmax")(layers.Dense(256)(h)))


@pytest.mark.parametrize("build", [_cnn, _mlp])
def test_results_do_not_depend_on_the_load(build, monkeypatch):
    """Shards regrouped onto fewer threads and BLAS at fewer threads: the same bits."""
    monkeypatch.setattr(builtin, "_MIN_SHARD_FLOPS", 1)  # tiny convolutions are split too
    rng = np.random.default_rng(0)
    shape = (6, 6, 2) if build is _cnn else (64,)
    x = rng.normal(size=(64, *shape)).astype("float32")  # GEMMs big enough for BLAS threads
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 64)]

    def train(free):
        fake_load(free, n=2)
        nexec.clear_session()
        nexec.set_random_seed(3)
        model = build()
        model.compile(optimizer="adam", loss="categorical_crossentropy")
        model.fit(x, y, epochs=2, batch_size=32, verbose=0)
        assert model._trainer.train_executor.program(32).threaded == (build is _cnn)
        return model.get_weights() + [model.predict(x, batch_size=32, verbose=0)]

    for a, b in zip(train(2), train(1)):
        if build is _cnn:  # nexec's shards regrouped onto fewer threads
            np.testing.assert_array_equal(a, b)
        else:  # BLAS at two threads, then one (tests/blas_bits.py)
            assert_same_bits_where_blas_keeps_them(a, b, rtol=1e-4, atol=1e-6)


def test_the_blas_probe_answers_for_this_machine():
    """The probe runs (one and two BLAS threads, a column block) and gives a bool; where it
    says the bits are kept, a split product is bitwise the whole one."""
    from tests.blas_bits import _product, blas_splits_keep_bits

    keeps = blas_splits_keep_bits()
    assert isinstance(keeps, bool)
    rng = np.random.default_rng(2)
    a = rng.standard_normal((96, 288)).astype(np.float32)
    b = rng.standard_normal((288, 48)).astype(np.float32)
    whole, part = np.empty((96, 48), np.float32), np.empty((96, 32), np.float32)
    _product(a, b, whole)
    _product(a, np.ascontiguousarray(b[:, 16:]), part)
    if keeps:
        np.testing.assert_array_equal(part, whole[:, 16:])
    np.testing.assert_allclose(part, whole[:, 16:], rtol=1e-4, atol=1e-4)
