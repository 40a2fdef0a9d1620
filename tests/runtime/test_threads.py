"""Intra-op threads: run_shards, the BLAS hold, and sharded convolutions against one thread."""
import os
import random
import signal
import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import nexec
from nexec import Input, Model, layers
from nexec.ops import builtin
from nexec.devices import threads
from nexec.devices.threads import get_num_threads, run_shards, set_num_threads
from nexec.testing import (array_arguments, check_gradients, count_allocations,
                           model_gradients, weights_by_name)


@pytest.fixture(autouse=True)
def restore_threads():
    before, adaptive = get_num_threads(), threads._adaptive
    threads.set_adaptive_threads(False)  # where shards run must not depend on the machine's load
    yield
    set_num_threads(before)
    threads.set_adaptive_threads(adaptive)


@pytest.fixture
def shard_everything(monkeypatch):
    """Every convolution, however small, is split (tests use tiny shapes)."""
    monkeypatch.setattr(builtin, "_MIN_SHARD_FLOPS", 1)


# --------------------------------------------------------------------------- settings


def test_set_num_threads_is_validated_and_exported():
    assert nexec.set_num_threads is set_num_threads and nexec.get_num_threads is get_num_threads
    set_num_threads(3)
    assert get_num_threads() == 3
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="positive int"):
            set_num_threads(bad)


@pytest.mark.parametrize("env,expected", [({"NEXEC_NUM_THREADS": "3"}, 3),
                                          ({"OMP_NUM_THREADS": "5"}, 5),
                                          ({"NEXEC_NUM_THREADS": "2", "OMP_NUM_THREADS": "7"}, 2),
                                          ({"NEXEC_NUM_THREADS": "zero"}, None)])
def test_default_thread_count_comes_from_the_environment(monkeypatch, env, expected):
    monkeypatch.delenv("NEXEC_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(threads, "cpu_quota", lambda: None)
    cores = len(os.sched_getaffinity(0))
    assert threads._default_threads() == (expected or cores)


@pytest.mark.parametrize("files,expected", [
    ({"cpu.max": "150000 100000"}, 1.5),  # cgroup v2: 1.5 CPUs
    ({"cpu.max": "max 100000"}, None),
    ({"cpu.max": "20000 100000"}, 1.0),  # a fifth of a CPU still runs one thread
    ({"cpu/cpu.cfs_quota_us": "300000", "cpu/cpu.cfs_period_us": "100000"}, 3.0),  # v1
    ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
    ({}, None),
])
def test_a_container_cpu_quota_is_read_from_the_cgroup(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text + "\n")
    assert threads.cpu_quota(str(tmp_path)) == expected


def test_the_default_thread_count_respects_a_cpu_quota(monkeypatch):
    monkeypatch.delenv("NEXEC_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setattr(threads, "cpu_quota", lambda: 2.5)
    assert threads._default_threads() == 2
    monkeypatch.setattr(threads, "cpu_quota", lambda: None)
    assert threads._default_threads() == 64


# --------------------------------------------------------------------------- run_shards


def test_shards_run_at_the_same_time_on_different_threads():
    barrier = threading.Barrier(3, timeout=10)  # breaks unless all three wait together
    seen = []

    def shard(i):
        seen.append((i, threading.get_ident()))
        barrier.wait()

    set_num_threads(3)
    run_shards(tuple((shard, (i,)) for i in range(3)))
    assert sorted(i for i, _ in seen) == [0, 1, 2]
    assert len({t for _, t in seen}) == 3
    assert (0, threading.get_ident()) in seen  # the first shard runs in the caller


def test_a_failing_shard_raises_in_the_caller_after_the_others_finish():
    done = []

    def ok(i):
        done.append(i)

    def bad():
        raise ZeroDivisionError("shard 1")

    with pytest.raises(ZeroDivisionError, match="shard 1"):
        run_shards(((ok, (0,)), (bad, ()), (ok, (2,))))
    assert sorted(done) == [0, 2]
    run_shards(((ok, (3,)), (ok, (4,))))  # the workers are still usable
    assert sorted(done) == [0, 2, 3, 4]


def test_shards_run_one_after_the_other_while_another_thread_holds_the_workers():
    order = []
    with threads._busy:  # as if another model were running shards right now
        run_shards(tuple((order.append, (i,)) for i in range(3)))
    assert order == [0, 1, 2]


def _blas_threads():
    return {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


def test_blas_is_held_at_one_thread_inside_and_restored_after():
    import scipy.linalg.cython_blas  # noqa: F401 - load the BLAS Numba uses

    set_num_threads(2)
    before = _blas_threads()
    with threads.single_threaded_blas():
        with threads.single_threaded_blas():  # nested holds are counted
            assert set(_blas_threads().values()) == {1}
        assert set(_blas_threads().values()) == {1}
    assert _blas_threads() == before
    set_num_threads(1)  # nexec single-threaded: BLAS keeps its own threads
    with threads.single_threaded_blas():
        assert _blas_threads() == before


# --------------------------------------------------------------------------- sharded models


def _cnn():
    def conv(f, k, s=1, act="relu"):
        return layers.Conv2D(f, k, strides=s, padding="same", activation=act)

    i = Input(shape=(6, 6, 2), dtype="float64")
    s = conv(4, 3)(i)
    m = layers.Concatenate()([conv(3, 1)(s), conv(2, 3)(conv(2, 1)(s)),
                              conv(2, 5, act="tanh")(conv(1, 1)(s))])   # strided outputs
    d = conv(4, 3, 2)(m)
    r = layers.Conv2D(4, 2, padding="same", use_bias=False)(conv(4, 3)(d))  # no bias
    d = layers.Activation("relu")(layers.Add()([d, r]))
    out = layers.Dense(3, activation="softmax")(layers.Flatten()(d))
    return Model(i, out)


def _data(n=5):
    rng = np.random.default_rng(2)
    return rng.normal(size=(n, 6, 6, 2)), np.eye(3)[rng.integers(0, 3, n)]


def _outputs_and_grads(n_threads):
    nexec.clear_session()
    nexec.set_random_seed(7)
    set_num_threads(n_threads)
    model = _cnn()
    x, y = _data()
    _, grads = model_gradients(model, x, y, "categorical_crossentropy")
    ex = model._trainer.train_executor
    return model.predict(x, batch_size=5), grads, ex.program(5)


def test_sharded_convolutions_match_one_thread(shard_everything):
    p1, g1, prog1 = _outputs_and_grads(1)
    p3, g3, prog3 = _outputs_and_grads(3)  # 5 images: shards of 1, 2 and 2
    assert not prog1.threaded
    assert prog3.threaded
    sharded = [args[0] for fn, args in prog3.forward + prog3.backward if fn is run_shards]
    assert len(sharded) == 2 * 9 and all(len(s) == 3 for s in sharded)  # 9 convs, both ways
    np.testing.assert_allclose(p3, p1, rtol=1e-12, atol=1e-15)
    assert g3.keys() == g1.keys()
    for name in g1:
        np.testing.assert_allclose(g3[name], g1[name], rtol=1e-11, atol=1e-14, err_msg=name)


def test_sharded_gradients_match_finite_differences(shard_everything):
    set_num_threads(2)
    model = _cnn()
    rng = np.random.default_rng(3)
    for layer in model.layers:  # biases off the ReLU kink (see test_gradients.py)
        if getattr(layer, "use_bias", False):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0.0, 0.1, bias.shape)])
    x, y = _data()
    loss_fn, grads = model_gradients(model, x, y, "categorical_crossentropy")
    assert model._trainer.train_executor.program(5).threaded
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def test_sharded_training_is_deterministic(shard_everything):
    def train():
        nexec.clear_session()
        nexec.set_random_seed(11)
        set_num_threads(2)
        model = _cnn()
        model.compile(optimizer="adam", loss="categorical_crossentropy")
        x, y = _data(12)
        model.fit(x, y, epochs=3, batch_size=4, verbose=0)
        return model.get_weights()

    for a, b in zip(train(), train()):
        np.testing.assert_array_equal(a, b)


def test_a_new_thread_count_takes_effect_at_the_next_batch(shard_everything):
    set_num_threads(1)
    model = _cnn()
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    x, y = _data()
    model.fit(x, y, batch_size=5, verbose=0)
    ex = model._trainer.train_executor
    assert not ex.program(5).threaded
    set_num_threads(2)
    model.fit(x, y, batch_size=5, verbose=0)
    assert ex.program(5).threaded


def test_sharded_training_steps_allocate_nothing(shard_everything):
    set_num_threads(2)
    model = _cnn()
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    x, y = _data(8)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    ex = model._trainer.train_executor
    prog = ex.program(4)
    assert prog.threaded
    losses = [0.0]

    def steps(k):
        for i in range(k):
            ex.load(prog, [x, y], 0, 4)
            ex.train_step(prog, losses, [])

    steps(2)
    nrt, numpy_blocks = count_allocations(lambda: steps(3))
    assert nrt == 3 * array_arguments(prog)  # the sgd update included
    assert numpy_blocks == []


def test_shards_work_in_a_forked_child():
    import multiprocessing

    run_shards(((int, ()), (int, ())))  # the parent has started its workers
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        assert pool.apply_async(_shards_in_child).get(timeout=30) == [0, 1]


def _shards_in_child():
    seen = []
    run_shards(((seen.append, (0,)), (seen.append, (1,))))
    return sorted(seen)


# --------------------------------------------------------------------------- interrupts


def _sigint_main():
    """A real SIGINT to the main thread, as Ctrl-C sends: unlike ``_thread.interrupt_main``
    it also interrupts a blocking wait (a lock, a queue) there."""
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)


def _run_interrupted(run, delay):
    """Runs ``run()`` while a timer interrupts the main thread after ``delay`` seconds (as
    Ctrl-C or Jupyter's interrupt button does); True when the interrupt landed inside."""
    timer = threading.Timer(delay, _sigint_main)
    try:
        try:
            timer.start()  # a short delay can land inside start() already
            run()
        finally:
            timer.join()
            for _ in range(1000):  # an interrupt still pending lands here, inside the try
                pass
    except KeyboardInterrupt:
        return True
    return False


def test_an_interrupt_while_waiting_waits_for_the_worker_and_leaves_nothing_stale():
    done = []
    started = threading.Event()

    def slow(i):
        started.set()
        time.sleep(0.3)
        done.append(i)

    def interrupt_soon():
        # Once the worker runs its shard: else, on a busy machine, the caller may take the
        # shard over itself (work stealing), and the interrupt lands in it, not in the wait.
        assert started.wait(10)
        threading.Timer(0.05, _sigint_main).start()

    set_num_threads(2)
    with pytest.raises(KeyboardInterrupt):
        run_shards(((interrupt_soon, ()), (slow, (1,))))  # lands while the caller waits
    assert done == [1]  # re-raised only once the worker had finished
    run_shards(((lambda: None, ()), (slow, (2,))))
    assert done == [1, 2]  # no stale completion: this call waited for its own worker
    assert not threads._busy.locked()


def test_an_interrupt_in_the_callers_shard_is_held_until_every_shard_is_done():
    done = []

    def own():
        _sigint_main()
        time.sleep(0.05)  # the signal arrives here: held, it does not cut this shard short
        done.append("own")

    def other():
        time.sleep(0.1)
        done.append("other")

    set_num_threads(2)
    with pytest.raises(KeyboardInterrupt):
        run_shards(((own, ()), (other, ())))
    assert sorted(done) == ["other", "own"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert not threads._busy.locked()
    assert not any(worker.lock.locked() for worker in threads._workers)


def _conv_net():
    i = Input(shape=(16, 16, 4), dtype="float64")
    h = layers.Conv2D(16, 3, padding="same", activation="relu")(i)
    h = layers.Conv2D(16, 3, padding="same", activation="relu")(h)
    h = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(h)
    return Model(i, layers.Dense(3, activation="softmax")(layers.Flatten()(h)))


def test_interrupts_at_random_moments_leave_later_results_right(shard_everything):
    """A stale completion token once made every later sharded call return early (wrong
    outputs); now each call has its own and waits for its workers even when interrupted."""
    set_num_threads(2)
    model = _conv_net()
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    twin = _conv_net()
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(16, 16, 16, 4)), np.eye(3)[rng.integers(0, 3, 16)]
    model.fit(x, y, batch_size=8, verbose=0, shuffle=False)  # binds (and compiles) first
    twin.predict(x, batch_size=8)
    start = time.perf_counter()
    expected = model.predict(x, batch_size=8)
    took = time.perf_counter() - start
    start = time.perf_counter()
    model.fit(x, y, batch_size=8, verbose=0, shuffle=False)
    took_fit = time.perf_counter() - start
    expected = model.predict(x, batch_size=8)
    pick = random.Random(5)
    landed, trials, deadline = 0, 0, time.monotonic() + 8
    while trials < 400 and time.monotonic() < deadline:
        trials += 1
        if trials % 3 == 0:  # a fit, then a reference from an uninterrupted twin
            landed += _run_interrupted(
                lambda: model.fit(x, y, batch_size=8, verbose=0, shuffle=False),
                pick.uniform(0, 1.5 * took_fit))
            twin.set_weights(model.get_weights())
            expected = twin.predict(x, batch_size=8)
        else:
            landed += _run_interrupted(lambda: model.predict(x, batch_size=8),
                                       pick.uniform(0, 1.5 * took))
        assert not threads._busy.locked()
        np.testing.assert_array_equal(model.predict(x, batch_size=8), expected,
                                      err_msg=f"after trial {trials}")
    assert trials >= 100 and landed >= trials // 4, (trials, landed, took, took_fit)


# --------------------------------------------------------------------------- concurrency


def test_predict_and_evaluate_from_eight_threads_match_serial_bit_for_bit(shard_everything):
    set_num_threads(2)
    model = _conv_net()
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    rng = np.random.default_rng(9)
    xs = [rng.normal(size=(6 + k, 16, 16, 4)) for k in range(8)]  # batches of 4 and a rest
    ys = [np.eye(3)[rng.integers(0, 3, len(x))] for x in xs]
    serial = [model.predict(x, batch_size=4) for x in xs]
    serial_eval = [model.evaluate(x, y, batch_size=4, verbose=0) for x, y in zip(xs, ys)]
    got, got_eval, errors = {}, {}, []
    start = threading.Barrier(8, timeout=30)

    def work(k):
        try:
            start.wait()
            for _ in range(3):
                got.setdefault(k, []).append(model.predict(xs[k], batch_size=4))
                got_eval.setdefault(k, []).append(
                    model.evaluate(xs[k], ys[k], batch_size=4, verbose=0))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    assert not errors and not any(t.is_alive() for t in workers)
    for k in range(8):
        for p, e in zip(got[k], got_eval[k]):
            np.testing.assert_array_equal(p, serial[k], err_msg=f"thread {k}")
            assert e == serial_eval[k]


def test_predict_while_another_thread_fits_sees_whole_steps_and_changes_nothing(
        shard_everything):
    """Every predict sees the weights between two training steps (never half an update),
    and training ends with the same bits as without the concurrent predicts."""
    set_num_threads(2)
    model, twin = _conv_net(), _conv_net()
    twin.set_weights(model.get_weights())
    for m in (model, twin):
        m.compile(optimizer="adam", loss="categorical_crossentropy")
    rng = np.random.default_rng(11)
    x, y = rng.normal(size=(12, 16, 16, 4)), np.eye(3)[rng.integers(0, 3, 12)]
    twin.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0)
    states = [model.get_weights()]  # the weights after each step, recorded between steps
    record = nexec.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: states.append(model.get_weights()))
    seen, errors = [], []
    model.predict(x[:4])  # binds the predict program before the race starts

    def fit():
        try:
            model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0,
                      callbacks=[record])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    trainer = threading.Thread(target=fit)
    trainer.start()
    while trainer.is_alive():
        seen.append(model.predict(x[:4], batch_size=4))
    trainer.join()
    assert not errors and len(seen) > 0
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)
    reference = _conv_net()
    expected = []
    for weights in states:
        reference.set_weights(weights)
        expected.append(reference.predict(x[:4], batch_size=4))
    for k, p in enumerate(seen):
        assert any(np.array_equal(p, e) for e in expected), f"predict {k} saw a torn update"


# --------------------------------------------------------------------------- fork


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_fork_while_another_thread_trains_gives_a_working_child(shard_everything):
    """A fork used to copy BLAS locks held mid-GEMM by the training thread, and the child's
    first predict hung; now the fork waits for the step. Each child checks its predict
    against a fresh model with its weights, and exits; a hang fails after a timeout."""
    set_num_threads(2)
    model = _conv_net()
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    rng = np.random.default_rng(12)
    x, y = rng.normal(size=(16, 16, 16, 4)), np.eye(3)[rng.integers(0, 3, 16)]
    model.fit(x, y, batch_size=8, verbose=0)
    fresh = _conv_net()
    fresh.predict(x[:4])
    stop, errors = threading.Event(), []

    def train():
        try:
            while not stop.is_set():
                model.fit(x, y, batch_size=8, verbose=0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    trainer = threading.Thread(target=train)
    trainer.start()
    codes, pick = [], random.Random(3)
    try:
        for _ in range(8):
            time.sleep(pick.uniform(0, 0.03))
            pid = os.fork()
            if pid == 0:  # the child: never returns into pytest
                code = 1
                try:
                    fresh.set_weights(model.get_weights())
                    same = np.array_equal(model.predict(x[:4]), fresh.predict(x[:4]))
                    code = 0 if same else 2
                finally:
                    os._exit(code)
            codes.append(_wait_child(pid, timeout=60))
    finally:
        stop.set()
        trainer.join()
    assert not errors
    assert codes == [0] * 8, codes


def _wait_child(pid, timeout):
    """The child's exit code, or "hung" (after killing it) when it runs past ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "hung"
