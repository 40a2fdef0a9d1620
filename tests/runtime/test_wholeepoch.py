"""One native call per training epoch: ``fit`` (and ``evaluate``, and fit's validation) on
in-memory arrays run their full batches through one generated function
(``wholestep.CompiledEpoch``) that gathers each batch through the epoch's shuffled order,
and the weights and History are bit for bit the Python loop's; batch callbacks and streamed
sources keep the per-step path."""
import io
import sys

import numpy as np
import pytest

import nexec
from nexec import Input, Model, callbacks, layers, optimizers
from nexec.runtime import wholestep
from tests.runtime.test_wholepass import _embedding, _Terminal, _two_outputs
from tests.runtime.test_wholestep import _data, _mlp, step_cache  # noqa: F401 - autouse


def _fit(build, jit_step, x, y, loss="categorical_crossentropy", metrics=("accuracy",),
         epochs=3, batch=16, shuffle=True, **kwargs):
    """A fresh model trained one way: the model, its History and its weights."""
    nexec.clear_session()
    nexec.set_random_seed(5)
    model = build()
    model.compile(optimizer=optimizers.RMSprop(0.01), loss=loss, metrics=list(metrics),
                  jit_step=jit_step)
    hist = model.fit(x, y, epochs=epochs, batch_size=batch, verbose=0, shuffle=shuffle, **kwargs)
    return model, hist.history, [w.copy() for w in model.get_weights()]


def _same(loop, jit):
    _, ha, wa = loop
    _, hb, wb = jit
    assert ha == hb  # every loss and metric of every epoch, exactly
    assert len(wa) == len(wb) and all(u.tobytes() == v.tobytes() for u, v in zip(wa, wb))
    losses = ha["loss"]
    assert np.isfinite(losses).all() and (len(losses) == 1 or losses[-1] < losses[0])


def _epoch_of(model, batch, weighted=False, mode="train", tail=None):
    """The compiled epoch of the ``batch``-row program (with the ``tail``-row program's)."""
    t = model._trainer
    ex = t.train_executor if mode == "train" else t.eval_executor
    key = f"{mode} epoch" + ("" if tail is None else f" + {tail}")
    return ex.program(batch, weighted).compiled.get(key)


def _recorded_mlp(monkeypatch):
    """A fresh MLP compiled with ``jit_step=True`` (as :func:`_fit` builds them) and its
    :func:`_recording` of native epoch calls."""
    nexec.clear_session()
    nexec.set_random_seed(5)
    model = _mlp()
    model.compile(optimizer=optimizers.RMSprop(0.01), loss="categorical_crossentropy",
                  metrics=["accuracy"], jit_step=True)
    return model, _recording(monkeypatch, model)


def _recording(monkeypatch, model):
    """Records the batches every native epoch call ran, ``(first, first + ran)``, per mode
    (a call that left its batches to the loop records an empty range)."""
    calls = {"train": [], "evaluate": []}
    for ex in (model._trainer.train_executor, model._trainer.eval_executor):
        run = ex.run_epoch

        def recording(prog, mode, sources, order, first, last, tail=None, with_tail=True,
                      run=run):
            result = run(prog, mode, sources, order, first, last, tail, with_tail)
            calls[mode].append((first, first + result[0]))
            return result

        monkeypatch.setattr(ex, "run_epoch", recording)
    return calls


@pytest.mark.parametrize("n", [48, 40])  # 3 full batches; 2 full and a partial one of 8
def test_a_native_epoch_trains_bit_identically_to_the_loop(n):
    x, y = _data((12,), 4, n=n)
    vx, vy = _data((12,), 4, n=24, seed=1)
    args = dict(metrics=("accuracy", "mae"), validation_data=(vx, vy))
    loop = _fit(_mlp, False, x, y, **args)
    jit = _fit(_mlp, True, x, y, **args)
    _same(loop, jit)
    assert set(loop[1]) == {"loss", "accuracy", "mae", "val_loss", "val_accuracy", "val_mae"}
    tail = n % 16 or None  # the last, shorter batch runs in the same function
    assert isinstance(_epoch_of(jit[0], 16, tail=tail), wholestep.CompiledEpoch)
    assert _epoch_of(jit[0], 16, tail=tail).tail is \
        (tail and jit[0]._trainer.train_executor.program(tail))
    assert isinstance(_epoch_of(jit[0], 16, mode="evaluate", tail=8), wholestep.CompiledEpoch)
    assert "train epoch" not in loop[0]._trainer.train_executor.program(16).compiled
    assert jit[0].evaluate(x, y, batch_size=16, verbose=0) == \
        loop[0].evaluate(x, y, batch_size=16, verbose=0)


def test_one_native_call_per_epoch_and_per_evaluation(monkeypatch):
    x, y = _data((12,), 4, n=72)
    loop = _fit(_mlp, False, x, y, epochs=2, validation_split=0.25)
    model, calls = _recorded_mlp(monkeypatch)
    hist = model.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_split=0.25)
    # 54 training rows: 3 full batches per epoch and 6 rows; 18 validation rows: 1 and 2,
    # each the last batch of its call
    assert calls == {"train": [(0, 4), (0, 4)], "evaluate": [(0, 2), (0, 2)]}
    assert hist.history == loop[1]
    calls["train"].clear()
    calls["evaluate"].clear()
    model.evaluate(x, y, batch_size=16, verbose=0)  # the last 8 rows in the same call
    assert calls == {"train": [], "evaluate": [(0, 5)]}


def test_steps_per_epoch_continues_the_pass_natively(monkeypatch):
    x, y = _data((12,), 4, n=64)
    loop = _fit(_mlp, False, x, y, epochs=4, steps_per_epoch=2)
    model, calls = _recorded_mlp(monkeypatch)
    hist = model.fit(x, y, epochs=4, batch_size=16, verbose=0, steps_per_epoch=2)
    assert calls["train"] == [(0, 2), (2, 4), (0, 2), (2, 4)]
    _same(loop, (model, hist.history, model.get_weights()))


def test_sample_and_class_weights_run_natively_bit_identically():
    x, y = _data((12,), 4, n=48)
    sw = np.random.default_rng(3).uniform(0.1, 2.0, 48).astype(np.float32)
    for kwargs in ({"sample_weight": sw}, {"class_weight": {0: 1.0, 1: 3.0, 2: 0.5, 3: 1.5}}):
        loop = _fit(_mlp, False, x, y, **kwargs)
        jit = _fit(_mlp, True, x, y, **kwargs)
        _same(loop, jit)
        assert isinstance(_epoch_of(jit[0], 16, weighted=True), wholestep.CompiledEpoch)
    unweighted = _fit(_mlp, False, x, y)
    assert unweighted[1]["loss"] != loop[1]["loss"]  # the weights count


def test_a_multi_output_model_runs_natively_bit_identically():
    x = np.random.default_rng(2).normal(size=(48, 6)).astype(np.float32)
    y = [np.tanh(x[:, :2]), (x[:, 2:5] > 0).astype(np.float32)]
    args = dict(loss=["mse", "binary_crossentropy"], metrics=[["mae"], ["accuracy"]])
    loop = _fit(_two_outputs, False, x, y, **args)
    jit = _fit(_two_outputs, True, x, y, **args)
    _same(loop, jit)
    assert list(loop[1]) == ["loss", "dense_1_loss", "dense_2_loss", "dense_1_mae",
                             "dense_2_accuracy"]
    assert isinstance(_epoch_of(jit[0], 16), wholestep.CompiledEpoch)


def test_kernels_typed_by_running_them_run_one_checked_step_first(monkeypatch):
    """The Embedding kernels are typed by running them once (``runtime/checking.py``): the
    first native call runs its first batch through the checking loop, then the rest."""
    ids = np.random.default_rng(4).integers(0, 20, (48, 5)).astype(np.int32)
    y = np.random.default_rng(5).normal(size=(48, 3)).astype(np.float32)
    loop = _fit(_embedding, False, ids, y, loss="mse", metrics=("mae",), epochs=2)
    nexec.clear_session()
    nexec.set_random_seed(5)
    model = _embedding()
    model.compile(optimizer=optimizers.RMSprop(0.01), loss="mse", metrics=["mae"],
                  jit_step=True)
    calls = _recording(monkeypatch, model)
    hist = model.fit(ids, y, epochs=2, batch_size=16, verbose=0, shuffle=True)
    assert calls["train"] == [(0, 3), (0, 3)]
    _same(loop, (model, hist.history, model.get_weights()))


class _Counting(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append((batch, logs["loss"]))


def test_a_batch_callback_keeps_the_per_step_path_and_is_called_per_batch(monkeypatch):
    x, y = _data((12,), 4, n=40)
    plain = _fit(_mlp, False, x, y, epochs=2)
    seen = _Counting()
    loop = _fit(_mlp, False, x, y, epochs=2, callbacks=[seen])
    counted = _Counting()
    model, calls = _recorded_mlp(monkeypatch)
    hist = model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[counted])
    assert calls["train"] == []  # never native: each step is its own (compiled) call
    assert isinstance(model._trainer.train_executor.program(16).compiled["train"],
                      wholestep.CompiledStep)
    assert [b for b, _ in counted.batches] == [0, 1, 2, 0, 1, 2]
    assert counted.batches == seen.batches
    _same(loop, (model, hist.history, model.get_weights()))
    assert hist.history == plain[1]


def test_terminate_on_nan_keeps_the_per_step_path_and_stops_at_the_batch(monkeypatch):
    x, y = _data((12,), 4, n=96)
    nexec.clear_session()
    nexec.set_random_seed(5)
    x_in = Input(shape=(12,))
    model = Model(x_in, layers.Dense(4)(x_in))
    model.compile(optimizer=optimizers.SGD(1e10), loss="mse",
                  jit_step=True)  # the weights overflow within the first epoch
    calls = _recording(monkeypatch, model)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    with pytest.warns(RuntimeWarning, match="diverged"):
        hist = model.fit(x, y, epochs=3, batch_size=16, verbose=0, shuffle=False,
                         callbacks=[callbacks.TerminateOnNaN()])
    assert calls["train"] == [] and model.stop_training
    assert len(hist.history["loss"]) == 1 and not np.isfinite(hist.history["loss"][0])
    assert "Invalid loss, terminating training" in sys.stdout.getvalue()


def test_a_generator_source_keeps_the_per_step_path(monkeypatch):
    x, y = _data((12,), 4, n=48)

    def batches():
        while True:
            for lo in range(0, 48, 16):
                yield x[lo:lo + 16], y[lo:lo + 16]

    loop = _fit(_mlp, False, x, y, epochs=2, shuffle=False)
    model, calls = _recorded_mlp(monkeypatch)
    hist = model.fit(batches(), epochs=2, steps_per_epoch=3, verbose=0, shuffle=False)
    assert calls["train"] == []
    assert isinstance(model._trainer.train_executor.program(16).compiled["train"],
                      wholestep.CompiledStep)
    _same(loop, (model, hist.history, model.get_weights()))  # the same batches in order


def test_a_live_bar_advances_between_growing_native_epoch_calls(monkeypatch):
    x, y = _data((12,), 4, n=16 * 7 + 5)
    loop = _fit(_mlp, False, x, y, epochs=1)
    model, calls = _recorded_mlp(monkeypatch)
    monkeypatch.setattr(model._trainer, "BAR_SECONDS", 1e9)  # every call short: chunks double
    out = _Terminal()
    monkeypatch.setattr(sys, "stdout", out)
    hist = model.fit(x, y, epochs=1, batch_size=16, verbose=1, shuffle=True)
    assert calls["train"] == [(0, 1), (1, 3), (3, 8)]  # the last call: and the 5-row batch
    assert "8/8 [" in out.getvalue()
    _same(loop, (model, hist.history, model.get_weights()))


def test_the_generated_epoch_gathers_through_the_order_and_copies_the_slots_out():
    x, y = _data((12,), 4, n=32)
    model = _fit(_mlp, True, x, y, epochs=1)[0]
    prog = model._trainer.train_executor.program(16)
    g = wholestep.generate_epoch(prog, "train")
    assert g.path.name.startswith("epoch_") and wholestep.epoch_refusal(prog) == []
    assert "at = order[lo + t] * 12" in g.source and "at = order[lo + t] * 4" in g.source
    assert "rl[o, 0] = " in g.source and "q0[o, j] = " in g.source
    assert g.source.count("\n        k") == len(prog.instructions)
    with pytest.raises(ValueError, match="'forward'"):
        wholestep.generate_epoch(prog, "forward")


def test_epoch_level_callbacks_keep_the_native_epoch(monkeypatch, tmp_path):
    x, y = _data((12,), 4, n=32)
    nexec.clear_session()
    nexec.set_random_seed(5)
    model = _mlp()
    model.compile(optimizer=optimizers.RMSprop(0.01), loss="categorical_crossentropy",
                  jit_step=True)
    calls = _recording(monkeypatch, model)
    saving = [callbacks.ModelCheckpoint(tmp_path / "ckpt-{epoch}.npz", monitor="loss"),
              callbacks.BackupAndRestore(tmp_path / "backup"), callbacks.EarlyStopping("loss")]
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=saving)
    assert calls["train"] == [(0, 2), (0, 2)]
    assert (tmp_path / "ckpt-2.npz").exists()
    calls["train"].clear()  # saving every 2 batches: a batch hook that does something
    model.fit(x, y, epochs=1, batch_size=16, verbose=0,
              callbacks=[callbacks.ModelCheckpoint(tmp_path / "b.npz", save_freq=2)])
    assert calls["train"] == [] and (tmp_path / "b.npz").exists()


def test_auto_runs_native_epochs_once_the_step_compiled(monkeypatch, tmp_path):
    monkeypatch.setenv("NEXEC_CACHE_DIR", str(tmp_path))  # nothing on disk yet
    x, y = _data((12,), 4, n=48)
    loop = _fit(_mlp, False, x, y, epochs=4)
    nexec.clear_session()
    nexec.set_random_seed(5)
    model = _mlp()
    model.compile(optimizer=optimizers.RMSprop(0.01), loss="categorical_crossentropy",
                  metrics=["accuracy"], jit_step="auto")
    ex = model._trainer.train_executor
    ex.AUTO_AFTER_STEPS, ex.AUTO_MAX_STEP_S = 3, 1.0  # the rule, not this machine's speed
    ran = []
    run = ex.run_epoch

    def counting(*args):
        result = run(*args)
        ran.append(result[0])
        return result

    monkeypatch.setattr(ex, "run_epoch", counting)
    hist = model.fit(x, y, epochs=4, batch_size=16, verbose=0, shuffle=True)
    # epochs 1-2 undecided: the loop runs and measures (the first step is not counted), and
    # the step compiles at the 5th step, in epoch 2; epochs 3 and 4: one native call each
    assert ran == [0, 0, 3, 3]
    assert isinstance(ex.program(16).compiled["train"], wholestep.CompiledStep)
    assert isinstance(_epoch_of(model, 16), wholestep.CompiledEpoch)
    _same(loop, (model, hist.history, model.get_weights()))


# ----- the last, shorter batch inside the same native call ------------------------------------
@pytest.mark.parametrize("n, batch, kwargs", [
    (1000, 128, {}),  # 7 full batches and 104 rows, shuffled
    (1000, 128, {"shuffle": False}),
    (45, 16, {"sample_weight": "uniform"}),
    (45, 16, {"class_weight": {0: 1.0, 1: 3.0, 2: 0.5, 3: 1.5}}),
    (10, 16, {}),  # fewer rows than the batch: one batch of 10
])
def test_the_tail_batch_runs_in_the_same_call_bit_identically(monkeypatch, n, batch, kwargs):
    x, y = _data((12,), 4, n=n)
    if kwargs.get("sample_weight") == "uniform":
        kwargs = {"sample_weight": np.random.default_rng(3).uniform(0.1, 2.0, n)
                  .astype(np.float32)}
    args = dict(metrics=("accuracy", "mae"), batch=batch, **kwargs)
    loop = _fit(_mlp, False, x, y, **args)
    nexec.clear_session()
    nexec.set_random_seed(5)
    model = _mlp()
    model.compile(optimizer=optimizers.RMSprop(0.01), loss="categorical_crossentropy",
                  metrics=["accuracy", "mae"], jit_step=True)
    calls = _recording(monkeypatch, model)
    fit_args = {k: v for k, v in args.items() if k not in ("metrics", "batch")}
    hist = model.fit(x, y, epochs=3, batch_size=batch, verbose=0,
                     **{"shuffle": True, **fit_args})
    steps = -(-n // batch)
    assert calls["train"] == [(0, steps)] * 3  # one call per epoch, the tail included
    _same(loop, (model, hist.history, model.get_weights()))
    weighted = "sample_weight" in kwargs or "class_weight" in kwargs
    tail = n % batch if n > batch else None
    compiled = _epoch_of(model, min(n, batch), weighted, tail=tail)
    assert isinstance(compiled, wholestep.CompiledEpoch)
    ex = model._trainer.train_executor
    assert compiled.tail is (tail and ex.program(tail, weighted))
    if tail:  # the tail program has no epoch or step of its own
        assert ex.program(tail, weighted).compiled == {}
    sw = kwargs.get("sample_weight")
    evaluated = model.evaluate(x, y, batch_size=batch, verbose=0, sample_weight=sw)
    assert calls["evaluate"] == [(0, steps)]
    loop_model = loop[0]
    assert evaluated == loop_model.evaluate(x, y, batch_size=batch, verbose=0, sample_weight=sw)


def test_a_validation_set_smaller_than_the_batch_runs_as_a_tail_alone(monkeypatch):
    x, y = _data((12,), 4, n=40)  # 30 training rows (1 batch of 16, 14), 10 validation rows
    loop = _fit(_mlp, False, x, y, epochs=2, validation_split=0.25)
    model, calls = _recorded_mlp(monkeypatch)
    hist = model.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_split=0.25)
    assert calls == {"train": [(0, 2)] * 2, "evaluate": [(0, 1)] * 2}
    assert isinstance(_epoch_of(model, 16, mode="evaluate", tail=10), wholestep.CompiledEpoch)
    _same(loop, (model, hist.history, model.get_weights()))


def test_a_tail_that_cannot_be_compiled_in_runs_as_the_loops_step(monkeypatch):
    x, y = _data((12,), 4, n=40)
    loop = _fit(_mlp, False, x, y, epochs=2)
    refusal = wholestep.epoch_refusal

    def refusing(prog, mode="train", tail=None):
        return ["tail: refused by the test"] if tail is not None else refusal(prog, mode)

    monkeypatch.setattr(wholestep, "epoch_refusal", refusing)
    model, calls = _recorded_mlp(monkeypatch)
    hist = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert calls["train"] == [(0, 2)] * 2  # the full batches; the 8 rows: a step
    assert _epoch_of(model, 16, tail=8) is False
    assert _epoch_of(model, 16).tail is None
    assert isinstance(model._trainer.train_executor.program(8).compiled["train"],
                      wholestep.CompiledStep)
    _same(loop, (model, hist.history, model.get_weights()))


def test_the_generated_epoch_runs_the_tail_after_the_full_batches():
    x, y = _data((12,), 4, n=40)
    model = _fit(_mlp, True, x, y, epochs=1)[0]
    ex = model._trainer.train_executor
    prog, tail = ex.program(16), ex.program(8)
    alone = wholestep.generate_epoch(prog, "train")
    both = wholestep.generate_epoch(prog, "train", tail=tail)
    assert both.path != alone.path and both.tail is tail and alone.tail is None
    assert "def step(s0, s1, order, rl, q0, first, last, tail, m0" in both.source
    assert "    if tail:\n        lo = last * 16\n        o = last - first\n" in both.source
    assert "for t in range(8):" in both.source and "if tail" not in alone.source
    assert both.source.count("\n        k") == len(prog.instructions) + len(tail.instructions)
    # the memories both programs share (arena, parameters, slots) are one parameter each
    assert both.source.count(", m") == alone.source.count(", m")
    assert wholestep.generate_epoch(prog, "train", tail=ex.program(4)).path != both.path
