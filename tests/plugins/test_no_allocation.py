"""Plugin layers keep nexec's promise: a steady-state training step allocates nothing.

As in ``tests/training/test_no_allocation.py``: calling a jitted function wraps each array
argument in one NRT meminfo (no data), so a step's NRT count must equal the number of array
arguments of its bound calls; NumPy must allocate no data at all.
"""
import numpy as np

from nexec import Input, Model, layers
from nexec.testing import array_arguments, count_allocations


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

    steps(2)
    nrt, numpy_blocks = count_allocations(lambda: steps(3))
    per_step = array_arguments(prog)  # the sgd update included
    assert nrt == 3 * per_step, (nrt, per_step)
    assert numpy_blocks == []
    assert np.isfinite(losses[0])
