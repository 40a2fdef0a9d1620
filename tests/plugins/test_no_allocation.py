"""Plugin layers keep nexec's promise: a steady-state training step allocates nothing.

As in ``tests/training/test_no_allocation.py``: calling a jitted function wraps each array
argument in one NRT meminfo (no data), so a step's NRT count must equal the number of array
arguments of its bound calls; NumPy must allocate no data at all.
"""
import tracemalloc

import numpy as np
from numba.core.runtime import _nrt_python, rtsys

from nexec import Input, Model, layers


NUMPY_DOMAIN = np.lib.tracemalloc_domain


def test_training_steps_with_plugin_layers_allocate_nothing():
    x_in = Input(shape=(6, 6, 2))
    h = layers.Conv2D(4, 3, padding="same", activation="relu")(x_in)
    h = layers.BatchNormalization()(layers.MaxPooling2D()(h))
    a = layers.GlobalAveragePooling2D()(layers.AveragePooling2D(padding="same")(h))
    b = layers.Dropout(0.3, seed=1)(layers.Flatten()(h))
    out = layers.Dense(3, activation="softmax")(layers.Concatenate()([a, b]))
    model = Model(x_in, out)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((40, 6, 6, 2)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 40)]
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # compile and bind
    ex = model._trainer.train_executor
    prog = ex.program(8)
    losses, counts = [0.0], []

    def steps(k):
        for i in range(k):
            np.copyto(prog.inputs[0], x[i * 8:(i + 1) * 8])
            np.copyto(prog.targets[0], y[i * 8:(i + 1) * 8])
            ex.train_step(prog, losses, counts)

    def array_args(calls):
        return sum(isinstance(a, np.ndarray) for _, args in calls for a in args)

    per_step = (array_args(prog.forward) + array_args(prog.backward)
                + sum(isinstance(a, np.ndarray) for *_, args in prog.loss_values for a in args)
                + 3)  # sgd_update(w, g, velocity)
    steps(2)
    _nrt_python.memsys_enable_stats()
    nrt_before = rtsys.get_allocation_stats()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    steps(3)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    nrt_after = rtsys.get_allocation_stats()
    _nrt_python.memsys_disable_stats()
    assert nrt_after.alloc - nrt_before.alloc == 3 * per_step, (nrt_before, nrt_after, per_step)
    only_numpy = [tracemalloc.DomainFilter(True, NUMPY_DOMAIN)]
    grown = [s for s in after.filter_traces(only_numpy).compare_to(
        before.filter_traces(only_numpy), "lineno") if s.count_diff > 0]
    assert grown == []
    assert np.isfinite(losses[0])
