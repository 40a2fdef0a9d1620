"""A replica (the Ray actor's class, built here in-process) compiles within its CPUs."""
import os

from nexec import Input, Model, layers
from nexec.distribute.worker import Replica


def test_a_replica_keeps_compile_helpers_within_its_cpus(monkeypatch):
    i = Input(shape=(4,))
    model = Model(i, layers.Dense(2, activation="softmax")(i))
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    t = model._trainer
    sizes = (t.store.size, t.store.trainable_size)
    monkeypatch.delenv("NEXEC_COMPILE_PROCESSES")
    Replica(0, model.to_json(), t.config, sizes, 3, False)
    assert os.environ["NEXEC_COMPILE_PROCESSES"] == "2"
    monkeypatch.setenv("NEXEC_COMPILE_PROCESSES", "0")  # set by the user: kept
    Replica(1, model.to_json(), t.config, sizes, 3, False)
    assert os.environ["NEXEC_COMPILE_PROCESSES"] == "0"
