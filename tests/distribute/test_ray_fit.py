"""Data-parallel ``fit`` on a local Ray with 2 CPUs: same weights as one process, a killed
worker fails the step clearly with the weights intact, and BackupAndRestore resumes."""
import os

import numpy as np
import pytest
import ray

import nexec
from nexec import Input, Model, callbacks, layers, optimizers
from nexec.distribute import RayDataParallel, WorkerError

# With pytest-xdist, one worker runs this module: one local Ray, not one per worker.
pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield
    ray.shutdown()


def _model():
    nexec.set_random_seed(11)
    x = Input(shape=(5,))
    h = layers.Dense(8, activation="relu")(x)
    return Model(x, layers.Dense(3, activation="softmax")(h))


def _data(n=37):
    rng = np.random.default_rng(0)
    return (rng.normal(size=(n, 5)).astype("float32"),
            np.eye(3, dtype="float32")[rng.integers(0, 3, n)])


def _fit(distribute, x, y, epochs=2, cbs=None, shuffle=True):
    m = _model()
    m.compile(optimizers.Adam(0.01), "categorical_crossentropy", ["accuracy"],
              distribute=distribute)
    nexec.set_random_seed(5)  # the same shuffles for both runs
    h = m.fit(x, y, batch_size=8, epochs=epochs, shuffle=shuffle, verbose=0,
              callbacks=cbs)
    return m, h


def _max_diff(a, b):
    return max(float(np.abs(p - q).max()) for p, q in zip(a.get_weights(), b.get_weights()))


def test_two_workers_train_to_the_weights_of_one_process(tmp_path):
    x, y = _data()  # 37 rows, batches of 8: the last batch (5 rows) splits 3 + 2
    path = tmp_path / "x.dat"
    xm = np.memmap(path, dtype="float32", mode="w+", shape=x.shape)
    xm[:] = x
    xm.flush()
    one, h1 = _fit(None, x, y)
    strategy = RayDataParallel(num_workers=2)
    two, h2 = _fit(strategy, np.memmap(path, dtype="float32", mode="r", shape=x.shape), y)
    assert _max_diff(one, two) < 1e-6
    np.testing.assert_allclose(h2.history["loss"], h1.history["loss"], rtol=1e-6)
    assert h2.history["accuracy"] == h1.history["accuracy"]  # global counts, not means
    assert two.optimizer.iterations == one.optimizer.iterations == 2 * 5
    # The workers opened the file themselves: x travelled as a path, y as an object.
    specs = strategy._attached.sources.specs
    assert specs[0][0] == "memmap" and specs[0][1] == str(path) and specs[1][0] == "object"
    strategy.shutdown()  # frees its 2 CPUs for the next workers
    # Deterministic: the same distributed run again gives the same bits.
    strategy = RayDataParallel(num_workers=2)
    again, _ = _fit(strategy, x, y)
    assert all(np.array_equal(p, q) for p, q in zip(two.get_weights(), again.get_weights()))
    strategy.shutdown()


class _Kill(callbacks.Callback):
    """Kills worker ``rank`` (for good) after batch ``batch`` of epoch ``epoch``."""

    def __init__(self, strategy, epoch, batch, rank=1):
        super().__init__()
        self.strategy, self.at, self.rank = strategy, (epoch, batch), rank
        self.epoch, self.weights = 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            self.weights = self.model.get_weights()
            ray.kill(self.strategy.workers[self.rank], no_restart=True)


def test_a_killed_worker_fails_the_step_by_name_and_weights_stay(tmp_path):
    x, y = _data()
    strategy = RayDataParallel(num_workers=2)
    kill = _Kill(strategy, epoch=0, batch=1)
    with pytest.raises(WorkerError) as info:
        _fit(strategy, x, y, cbs=[kill])
    err = info.value
    actor = strategy.worker_info[1]
    assert actor["rank"] == 1 and actor["pid"] > 0
    assert err.rank == 1 and err.actor_id == actor["actor_id"]
    assert err.node_id == actor["node_id"]
    message = str(err)
    assert "worker rank 1 of 2" in message and actor["actor_id"] in message
    assert "died during step 3" in message and "last completed step" in message
    model = strategy._attached.trainer.model
    assert all(np.array_equal(p, q) for p, q in zip(model.get_weights(), kill.weights))
    strategy.shutdown()


def test_too_many_workers_for_the_cluster_is_a_clear_error():
    m = _model()
    strategy = RayDataParallel(num_workers=3, start_timeout=3)  # 3 CPUs on a 2-CPU Ray
    m.compile("sgd", "mse", distribute=strategy)
    x, y = _data(12)
    with pytest.raises(WorkerError, match="did not start within 3 s: 3 workers x 1 CPU"):
        m.fit(x, y, batch_size=6, verbose=0)
    strategy.shutdown()


def test_fit_resumes_from_backup_after_a_dead_worker(tmp_path):
    x, y = _data()
    backup = str(tmp_path / "backup")
    strategy = RayDataParallel(num_workers=2)
    whole, _ = _fit(strategy, x, y, epochs=3, shuffle=False)
    strategy.shutdown()
    strategy = RayDataParallel(num_workers=2)
    m = _model()
    m.compile(optimizers.Adam(0.01), "categorical_crossentropy", ["accuracy"],
              distribute=strategy)
    kill = _Kill(strategy, epoch=1, batch=2)
    with pytest.raises(WorkerError, match="worker rank 1"):
        m.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0,
              callbacks=[callbacks.BackupAndRestore(backup), kill])
    assert os.path.exists(os.path.join(backup, "latest.npz"))  # epoch 1 was written
    with pytest.warns(RuntimeWarning, match="worker rank 1 is dead; starting a new one"):
        h = m.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0,
                  callbacks=[callbacks.BackupAndRestore(backup)])
    assert h.epoch == [1, 2]  # resumed after the backed-up epoch
    assert m.optimizer.iterations == whole.optimizer.iterations == 3 * 5
    assert all(np.array_equal(p, q) for p, q in zip(m.get_weights(), whole.get_weights()))
    assert not os.path.exists(backup)  # deleted once training completed
    strategy.shutdown()
