"""A training step through every merge and activation layer of this family allocates
nothing (see tests/training/test_no_allocation.py for the counting rule)."""
from __future__ import annotations

import numpy as np

from nexec import Input, Model, layers
from nexec.testing import array_arguments, count_allocations


def test_steps_allocate_nothing_after_warm_up():
    x_in = Input(shape=(3, 6))
    norm = layers.Normalization(name="n")
    a = layers.Dense(5, activation="gelu")(norm(x_in))
    b = layers.PReLU(shared_axes=[1])(layers.Dense(5, activation="elu")(x_in))
    m = layers.concatenate([layers.multiply([a, b]), layers.maximum([a, b]), layers.average([a, b]),
                            layers.subtract([a, b]), layers.minimum([a, b])])
    h = layers.ReLU(max_value=2.0, negative_slope=0.1)(layers.LeakyReLU()(layers.ELU()(m)))
    h = layers.Flatten()(layers.Rescaling(0.5)(layers.Dense(4, activation="silu")(h)))
    d = layers.dot([layers.Dense(4)(h), layers.Dense(4)(h)], axes=1, normalize=True)
    out = layers.Softmax()(layers.Dense(3)(layers.concatenate([h, d])))
    model = Model(x_in, out)
    rng = np.random.default_rng(0)
    x = rng.random((40, 3, 6)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 40)]
    norm.adapt(x)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    ex = model._trainer.train_executor
    prog = ex.program(8)
    losses, counts = [0.0], [0] * len(prog.metrics)

    def steps(k):
        for i in range(k):
            for dst, src in zip(prog.inputs + prog.targets, [x, y]):
                dst[...] = src[i * 8:(i + 1) * 8]
            ex.train_step(prog, losses, counts)

    steps(2)
    nrt, numpy_blocks = count_allocations(lambda: steps(3))
    assert nrt == 3 * array_arguments(prog)
    assert numpy_blocks == []
    assert np.isfinite(losses[0])
