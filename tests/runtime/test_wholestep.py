"""The whole-step compiler: a step compiled into one native call trains, evaluates and
predicts bit for bit as the executor's Python loop, allocates nothing, is cached on disk, and
is refused (with the reason) for steps it cannot compile."""
import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers, optimizers
from nexec.checks import ArgumentError
from nexec.runtime import wholestep
from nexec.testing import count_allocations
from tests.plugins.conftest import plugin_dir, reload_registry, write_plugin  # noqa: F401
# autouse: BLAS's thread count must not follow the machine's load between the two runs (its
# AVX2 kernels give other last bits at another thread count; tests/blas_bits.py)
from tests.runtime.test_threads import restore_threads  # noqa: F401


@pytest.fixture(autouse=True)
def step_cache(tmp_path_factory, monkeypatch):
    """Generated modules in one folder for the session (not the user's cache)."""
    monkeypatch.setenv("NEXEC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "nexec-cache"))


def _mlp():
    x_in = Input(shape=(12,))
    h = layers.Dense(16, activation="relu")(x_in)
    h = layers.Dense(16, activation="tanh")(h)
    return Model(x_in, layers.Dense(4, activation="softmax")(h))


def _cnn():
    """Inception-like branches, a residual add, Flatten, Dense: small enough for no shards."""
    x_in = Input(shape=(8, 8, 3))
    a = layers.Conv2D(4, 3, padding="same", activation="relu")(x_in)
    b = layers.Conv2D(4, 1, activation="relu")(x_in)
    c = layers.Concatenate()([a, b])
    d = layers.Conv2D(8, 3, padding="same")(c)
    r = layers.Activation("relu")(layers.Add()([c, d]))
    return Model(x_in, layers.Dense(3, activation="softmax")(layers.Flatten()(r)))


def _data(shape, classes, n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    return x, np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]


def _run(build, jit_step, optimizer, x, y, metrics=("accuracy",), loss="categorical_crossentropy",
         epochs=2, batch=16):
    """Weights, history, evaluation and predictions of a fresh model trained one way (every
    batch of 16 rows: one program, so one compile, per mode)."""
    nexec.clear_session()
    nexec.set_random_seed(7)
    model = build()
    model.compile(optimizer=optimizer(), loss=loss, metrics=list(metrics), jit_step=jit_step)
    hist = model.fit(x, y, epochs=epochs, batch_size=batch, verbose=0,
                     validation_data=(x[::-1][:batch], y[::-1][:batch]))
    ev = model.evaluate(x, y, batch_size=batch, verbose=0)
    pred = model.predict(x, batch_size=batch, verbose=0)
    return model, [w.copy() for w in model.get_weights()], hist.history, ev, pred


def _same(a, b):
    _, wa, ha, ea, pa = a
    _, wb, hb, eb, pb = b
    assert len(wa) == len(wb)
    for u, v in zip(wa, wb):
        assert u.tobytes() == v.tobytes()
    assert ha == hb  # losses and metrics, every epoch, exactly
    assert ea == eb
    assert pa.tobytes() == pb.tobytes()


def _compiled_modes(model):
    t = model._trainer
    progs = [(t.train_executor, "train"), (t.eval_executor, "evaluate"),
             (t.predictor.executor, "forward")]
    done = {mode: isinstance(ex.program(16).compiled.get(mode), wholestep.CompiledStep)
            for ex, mode in progs}
    # predict runs full batches of arrays as one pass (tests/runtime/test_wholepass.py), fit
    # and evaluate as one epoch (tests/runtime/test_wholeepoch.py)
    done["forward"] |= isinstance(t.predictor.executor.program(16).compiled.get("forward pass"),
                                  wholestep.CompiledPass)
    for ex, mode in progs[:2]:
        done[mode] |= isinstance(ex.program(16).compiled.get(f"{mode} epoch"),
                                 wholestep.CompiledEpoch)
    return done


@pytest.mark.parametrize("optimizer", [
    lambda: optimizers.Adam(0.01),
    lambda: optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    lambda: optimizers.RMSprop(0.01),
    lambda: optimizers.Adagrad(0.1, clipnorm=1.0),
])
def test_compiled_mlp_training_is_bit_identical_to_the_loop(optimizer):
    x, y = _data((12,), 4)
    loop = _run(_mlp, False, optimizer, x, y, metrics=("accuracy", "mae"))
    jit = _run(_mlp, True, optimizer, x, y, metrics=("accuracy", "mae"))
    _same(loop, jit)
    assert _compiled_modes(jit[0]) == {"train": True, "evaluate": True, "forward": True}
    assert _compiled_modes(loop[0]) == {"train": False, "evaluate": False, "forward": False}
    assert np.isfinite(jit[2]["loss"]).all() and jit[2]["loss"][-1] < jit[2]["loss"][0]


def test_compiled_cnn_with_branches_and_residual_is_bit_identical():
    x, y = _data((8, 8, 3), 3)
    loop = _run(_cnn, False, lambda: optimizers.Adam(0.01), x, y)
    jit = _run(_cnn, True, lambda: optimizers.Adam(0.01), x, y)
    _same(loop, jit)
    prog = jit[0]._trainer.train_executor.program(16)
    assert not prog.threaded and isinstance(prog.compiled["train epoch"], wholestep.CompiledEpoch)


def test_sparse_targets_and_vector_metrics_compile_bit_identically():
    x, y = _data((12,), 4)
    labels = y.argmax(1)
    metrics = ("accuracy", nexec.metrics.AUC(num_thresholds=20))
    for sparse in (False, True):
        loss = "sparse_categorical_crossentropy" if sparse else "categorical_crossentropy"
        yy = labels if sparse else y
        m = ("sparse_categorical_accuracy",) if sparse else metrics
        _same(_run(_mlp, False, lambda: optimizers.Nadam(0.01), x, yy, metrics=m, loss=loss),
              _run(_mlp, True, lambda: optimizers.Nadam(0.01), x, yy, metrics=m, loss=loss))


PLUGIN = """
from nexec.plugin import Activation, Loss, Metric, hookimpl

NEXEC_API_VERSION = "1.1"


def softsign(z):
    return z / (1.0 + abs(z))


def softsign_derivative(y):
    return (1.0 - abs(y)) ** 2


def absolute_error(p, t):
    return abs(p - t)


def absolute_error_derivative(p, t):
    return 1.0 if p > t else (-1.0 if p < t else 0.0)


def within_half(p, t):
    return 1.0 if abs(p - t) < 0.5 else 0.0


@hookimpl
def nexec_activations():
    return [Activation("softsign_jit", forward=softsign, derivative=softsign_derivative)]


@hookimpl
def nexec_losses():
    return [Loss("mae_jit", elementwise=(absolute_error, absolute_error_derivative))]


@hookimpl
def nexec_metrics():
    return [Metric("within_half_jit", elementwise=within_half)]
"""


def test_plugin_elementwise_kernels_compile_bit_identically(plugin_dir):  # noqa: F811
    write_plugin(plugin_dir, "nexec_jit_demo", PLUGIN)
    assert reload_registry() == []

    def build():
        x_in = Input(shape=(6,))
        h = layers.Dense(8, activation="softsign_jit")(x_in)
        h = layers.Add()([layers.Dense(8)(h), h])
        return Model(x_in, layers.Dense(3, activation="softsign_jit")(h))

    x, y = _data((6,), 3)
    args = dict(metrics=("within_half_jit",), loss="mae_jit")
    loop = _run(build, False, lambda: optimizers.Adam(0.01), x, y, **args)
    jit = _run(build, True, lambda: optimizers.Adam(0.01), x, y, **args)
    _same(loop, jit)
    step = jit[0]._trainer.train_executor.program(16).compiled["train epoch"]
    assert not step.cached  # generated kernels are not importable by name: compiled in memory


def test_steps_that_cannot_compile_keep_the_loop_or_raise_naming_why():
    x, y = _data((12,), 4)
    schedule = nexec.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    nexec.set_random_seed(7)
    model = _mlp()
    model.compile(optimizer=optimizers.SGD(schedule), loss="categorical_crossentropy",
                  jit_step=True)
    with pytest.raises(wholestep.StepCompileError, match="_schedule_step"):
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    model.compile(optimizer=optimizers.SGD(schedule), loss="categorical_crossentropy",
                  jit_step="auto")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)  # "auto": the loop
    assert model._trainer.train_executor.program(16).compiled["train"] is False
    with pytest.raises(ArgumentError, match="jit_step"):
        model.compile(optimizer="sgd", loss="mse", jit_step="yes")


def test_auto_compiles_after_enough_small_loop_steps_and_then_loads_from_disk():
    x, y = _data((12,), 4)
    nexec.set_random_seed(7)
    model = _mlp()
    model.compile(optimizer=optimizers.Adamax(0.01), loss="categorical_crossentropy",
                  jit_step="auto")
    ex = model._trainer.train_executor
    ex.AUTO_AFTER_STEPS, ex.AUTO_MAX_STEP_S = 3, 1.0  # the rule, not this machine's speed
    model.fit(x[:32], y[:32], epochs=1, batch_size=16, verbose=0)
    assert model._trainer.train_executor.program(16).compiled.get("train") is None  # 2 steps
    model.fit(x[:32], y[:32], epochs=2, batch_size=16, verbose=0)
    step = ex.program(16).compiled["train"]
    assert isinstance(step, wholestep.CompiledStep) and step.cached
    # A second model of the same structure (another process would be the same): on disk,
    # so "auto" takes the compiled step from its first batch.
    assert wholestep.generate(ex.program(16), "train").on_disk()
    nexec.set_random_seed(7)
    again = _mlp()
    again.compile(optimizer=optimizers.Adamax(0.01), loss="categorical_crossentropy",
                  jit_step="auto")
    again.fit(x[:32], y[:32], epochs=1, batch_size=16, verbose=0)
    compiled = again._trainer.train_executor.program(16).compiled  # the epoch is on disk too
    assert isinstance(compiled.get("train"), wholestep.CompiledStep) \
        or isinstance(compiled.get("train epoch"), wholestep.CompiledEpoch)


def test_auto_keeps_the_loop_for_slow_steps():
    x, y = _data((12,), 4)
    model = _mlp()
    model.compile(optimizer="sgd", loss="categorical_crossentropy",
                  jit_step="auto")
    ex = model._trainer.train_executor
    ex.AUTO_AFTER_STEPS, ex.AUTO_MAX_STEP_S = 2, 1e-9  # every step counts as slow
    model.fit(x[:32], y[:32], epochs=2, batch_size=16, verbose=0)
    assert ex.program(16).compiled["train"] is False


def test_a_compiled_step_allocates_only_its_argument_wrappers():
    x, y = _data((12,), 4, n=64)
    model = _mlp()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"],
                  jit_step=True)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    ex = model._trainer.train_executor
    prog = ex.program(16)
    losses, counts = [0.0], [0]

    def steps(k):
        for _ in range(k):
            ex.train_step(prog, losses, counts)

    steps(2)  # fit ran one native epoch: the step compiles here
    step = prog.compiled["train"]
    nrt, numpy_blocks = count_allocations(lambda: steps(5))
    arrays = sum(isinstance(a, np.ndarray) for a in step.args)
    assert nrt == 5 * arrays, (nrt, arrays)  # one wrapper per argument: the views are free
    assert numpy_blocks == []
    assert arrays < sum(isinstance(a, np.ndarray) for ph in prog.calls.values()
                        for _, args in ph for a in args)


def test_generated_source_views_memories_and_inlines_numbers():
    x, y = _data((12,), 4)
    model = _mlp()
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", jit_step=True)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    prog = model._trainer.train_executor.program(16)
    g = wholestep.generate(prog, "train")
    assert g.cacheable and "np.int64(" in g.source and ".view(np.float32)" in g.source
    assert g.path.name.startswith("step_") and g.path.parent == wholestep.cache_dir()
    assert g.source.count("\n    k") == len(prog.instructions)
    assert wholestep.uncompilable(prog, "train") == []
