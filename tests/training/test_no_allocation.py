"""A steady-state training step allocates nothing: no Numba NRT arrays, no NumPy data.

Calling a jitted function from Python wraps each array argument in one NRT "meminfo" (an
NRT allocation of a few bytes, no data). So the exact NRT count of a step is the number of
array arguments of its bound calls; anything above that is a kernel allocating.
"""
import numpy as np
from numba import njit

from nexec import Input, Model, layers
from nexec.testing import array_arguments, count_allocations


def _model():
    x_in = Input(shape=(64,))
    a = layers.Dense(32, activation="relu")(x_in)
    b = layers.Dense(16, activation="relu")(a)
    c = layers.Dense(16, activation="tanh")(a)
    m = layers.Concatenate()([b, c])
    r = layers.Activation("relu")(layers.Add()([m, layers.Dense(32)(x_in)]))
    return Model(x_in, layers.Dense(10, activation="softmax")(r))


def test_training_steps_allocate_nothing_after_warm_up():
    model = _model()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.random((300, 64)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 300)]
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)  # compile and bind every batch size
    trainer = model._trainer
    ex = trainer.train_executor
    prog = ex.program(64)
    losses, counts = [0.0], [0] * len(prog.metrics)
    order = np.arange(300)

    def steps(k):
        for i in range(k):
            for dst, src in zip(prog.inputs + prog.targets, [x, y]):
                np.take(src, order[i * 64:(i + 1) * 64], axis=0, out=dst, mode="clip")
            ex.train_step(prog, losses, counts)

    steps(3)
    nrt, numpy_blocks = count_allocations(lambda: steps(4))
    per_step = array_arguments(prog)  # the adam update included
    assert nrt == 4 * per_step, (nrt, per_step)
    assert numpy_blocks == []
    assert np.isfinite(losses[0])


@njit
def _allocating_kernel(a):
    tmp = np.empty_like(a)
    tmp[:] = a
    a[:] = tmp * 2


def test_the_counters_see_a_kernel_that_allocates():
    a = np.ones(4)
    _allocating_kernel(a)
    nrt, _ = count_allocations(lambda: _allocating_kernel(a))
    assert nrt > 1  # one for the argument, more for the temporaries
    kept = []
    _, numpy_blocks = count_allocations(lambda: kept.append(np.ones(1000)))
    assert numpy_blocks != []
