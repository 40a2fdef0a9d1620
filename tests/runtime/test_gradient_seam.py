"""``Executor.gradients`` then ``apply_update`` is ``train_step`` cut in two, bit for bit."""
import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers, optimizers


def _model():
    x = Input(shape=(6,))
    h = layers.Dense(7, activation="tanh")(x)
    h = layers.BatchNormalization()(h)
    return Model(x, layers.Dense(3, activation="softmax")(h))


def _data(n=20):
    rng = np.random.default_rng(3)
    return (rng.normal(size=(n, 6)).astype("float32"),
            np.eye(3, dtype="float32")[rng.integers(0, 3, n)])


@pytest.mark.parametrize("jit_step", [False, True])
def test_gradients_then_update_equals_train_step(jit_step):
    x, y = _data()
    runs = []
    for split in (False, True):
        nexec.set_random_seed(7)
        m = _model()
        m.compile(optimizers.Adam(0.01), "categorical_crossentropy", ["accuracy"],
                  jit_step=jit_step)
        tr = m._trainer
        ex, store = tr.train_executor, tr.store
        logs = []
        for lo in (0, 8, 16):  # the last batch is smaller: a second program
            hi = min(lo + 8, len(x))
            prog = ex.program(hi - lo)
            ex.load(prog, [x, y], lo, hi)
            losses, counts = [0.0], [0]
            if split:
                before = store.values.copy()
                total = ex.gradients(prog, losses, counts)
                t = store.trainable_size
                # nothing trainable moved; the gradient is there for the caller
                assert np.array_equal(store.values[:t], before[:t])
                grads = store.grads.copy()
                ex.apply_update(prog)
                assert np.array_equal(store.grads, grads)
            else:
                total = ex.train_step(prog, losses, counts)
            logs.append((total, losses[0], counts[0]))
        runs.append((store.values.copy(), store.grads.copy(), logs, tr.optimizer.iterations))
    (v1, g1, l1, i1), (v2, g2, l2, i2) = runs
    assert np.array_equal(v1, v2)
    assert np.array_equal(g1, g2)
    assert l1 == l2
    assert i1 == i2 == 3


def test_update_applies_a_gradient_written_by_the_caller():
    """What a distributed driver does: write the (reduced) gradient, then update."""
    nexec.set_random_seed(7)
    m = _model()
    m.compile(optimizers.SGD(0.5), "categorical_crossentropy")
    tr = m._trainer
    store, t = tr.store, tr.store.trainable_size
    g = np.linspace(-1, 1, t).astype(store.grads.dtype)
    before = store.values.copy()
    store.grads[:t] = g
    tr.train_executor.apply_update(tr.train_executor.program(1))
    np.testing.assert_allclose(store.values[:t], before[:t] - 0.5 * g, rtol=1e-6, atol=1e-7)
    assert np.array_equal(store.values[t:], before[t:])
