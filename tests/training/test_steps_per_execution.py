"""Keras 3's execution switches in ``compile``: ``steps_per_execution`` (batch callbacks once
per execution of N batches, which then run as one native call with ``jit_step``),
``jit_compile`` and ``run_eagerly`` (taken as ``jit_step``), ``auto_scale_loss``; checked,
saved and restored."""
import json
import zipfile

import numpy as np
import pytest

import nexec
from nexec import Sequential, callbacks, layers, optimizers
from nexec.checks import ArgumentError, ArgumentTypeError
from nexec.training.callbacks import _BatchCounter
from tests.runtime.test_wholeepoch import _recording
from tests.runtime.test_wholestep import _data, _mlp, step_cache  # noqa: F401 - autouse


class _Calls(callbacks.Callback):
    """Records every batch hook call: ``(hook, batch, logs)``."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def on_train_batch_begin(self, batch, logs=None):
        self.calls.append(("begin", batch, None))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("end", batch, dict(logs)))


def _fit(jit_step, spe, x, y, cbs=(), epochs=2, **compile_args):
    nexec.clear_session()
    nexec.set_random_seed(11)
    model = _mlp()
    model.compile(optimizer=optimizers.RMSprop(0.01), loss="categorical_crossentropy",
                  metrics=["accuracy"], jit_step=jit_step, steps_per_execution=spe,
                  **compile_args)
    hist = model.fit(x, y, epochs=epochs, batch_size=4, verbose=0, callbacks=list(cbs))
    return model, hist.history, [w.copy() for w in model.get_weights()]


@pytest.mark.parametrize("jit_step", [False, True])
def test_batch_callbacks_run_once_per_execution_with_its_first_and_last_batch(jit_step):
    x, y = _data((12,), 4, n=30)  # 7 full batches of 4 and one of 2
    rec = _Calls()
    model, hist, _ = _fit(jit_step, 3, x, y, [rec], epochs=1)
    assert [(h, b) for h, b, _ in rec.calls] == [
        ("begin", 0), ("end", 2), ("begin", 3), ("end", 5), ("begin", 6), ("end", 7)]
    ends = [logs for h, _, logs in rec.calls if h == "end"]
    assert set(ends[-1]) == {"loss", "accuracy"}
    # Keras' batch logs are the epoch's results so far: the last one is the epoch's
    assert ends[-1]["loss"] == hist["loss"][0] and ends[-1]["accuracy"] == hist["accuracy"][0]


def test_executions_are_native_calls_and_train_as_the_loop(monkeypatch):
    x, y = _data((12,), 4, n=30)
    loop_rec, jit_rec = _Calls(), _Calls()
    _, h_loop, w_loop = _fit(False, 3, x, y, [loop_rec])
    _, h_one, w_one = _fit(True, 1, x, y)  # no batch hooks: one native call per epoch

    nexec.clear_session()
    nexec.set_random_seed(11)
    model = _mlp()
    model.compile(optimizer=optimizers.RMSprop(0.01), loss="categorical_crossentropy",
                  metrics=["accuracy"], jit_step=True, steps_per_execution=3)
    calls = _recording(monkeypatch, model)
    hist = model.fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=[jit_rec])
    # each execution one call, the one holding the last, shorter batch (batches 6 and 7)
    # too: its full batch, then the shorter batch's program, in the same call
    assert calls["train"] == [(0, 3), (3, 6), (6, 8)] * 2
    assert hist.history == h_loop == h_one
    for u, v, w in zip(model.get_weights(), w_loop, w_one):
        assert u.tobytes() == v.tobytes() == w.tobytes()
    assert jit_rec.calls == loop_rec.calls


@pytest.mark.parametrize("jit_step", [False, True])
def test_a_batch_callback_stops_training_after_its_execution(jit_step):
    x, y = _data((12,), 4, n=32)

    class Stop(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch >= 3:
                self.model.stop_training = True

    rec = _Calls()
    model, hist, weights = _fit(jit_step, 2, x, y, [rec, Stop()], epochs=3)
    assert [(h, b) for h, b, _ in rec.calls] == [("begin", 0), ("end", 1), ("begin", 2),
                                                 ("end", 3)]
    assert len(hist["loss"]) == 1
    assert model._trainer.optimizer.iterations == 4  # four batches trained, no more


def test_checkpoints_count_batches_not_calls():
    c = _BatchCounter()
    # executions of 3 batches (indices 2, 5, 7 of an 8-batch epoch), then a new epoch
    assert [c.due(b, 4) for b in (2, 5, 7, 2, 5)] == [False, True, False, True, False]
    one = _BatchCounter()
    assert [one.due(b, 2) for b in (0, 1, 2, 3, 0)] == [False, True, False, True, False]


def test_model_checkpoint_saves_by_batches_with_executions(tmp_path):
    x, y = _data((12,), 4, n=32)  # 8 batches: executions end at 2, 5, 7
    ckpt = callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch}-{batch}.weights.npz"),
                                     save_weights_only=True, save_freq=4)
    _fit(False, 3, x, y, [ckpt], epochs=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-1-6.weights.npz"]


def test_keras_execution_switches_map_to_jit_step():
    x_in = _mlp()
    x_in.compile(optimizer="sgd", loss="mse", jit_compile=True)
    assert x_in._trainer.train_executor.jit_step is True
    x_in.compile(optimizer="sgd", loss="mse", jit_compile="auto", jit_step="auto")
    assert x_in._trainer.train_executor.jit_step == "auto"
    x_in.compile(optimizer="sgd", loss="mse", jit_compile=False, auto_scale_loss=False)
    assert x_in._trainer.train_executor.jit_step is False
    with pytest.warns(UserWarning, match="cannot also be True. Disabling `jit_compile`"):
        x_in.compile(optimizer="sgd", loss="mse", run_eagerly=True, jit_compile=True)
    assert x_in._trainer.train_executor.jit_step is False
    assert x_in._trainer.steps_per_execution == 1


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(steps_per_execution=0), ArgumentError, "steps_per_execution"),
    (dict(steps_per_execution=2.5), ArgumentTypeError, "steps_per_execution"),
    (dict(steps_per_execution=True), ArgumentTypeError, "steps_per_execution"),
    (dict(jit_compile="yes"), ArgumentTypeError, "jit_compile must be True, False or 'auto'"),
    (dict(run_eagerly="no"), ArgumentTypeError, "run_eagerly must be True or False"),
    (dict(auto_scale_loss=None), ArgumentTypeError, "auto_scale_loss must be True or False"),
    (dict(jit_compile=False, jit_step=True), ArgumentError, "disagree"),
    (dict(run_eagerly=True, jit_step="auto"), ArgumentError, "run_eagerly=True runs the"),
])
def test_bad_execution_switches_are_refused(kwargs, error, match):
    model = _mlp()
    with pytest.raises(error, match=match):
        model.compile(optimizer="sgd", loss="mse", **kwargs)
    assert model._trainer is None


def test_steps_per_execution_is_saved_and_restored(tmp_path):
    model = _mlp()
    model.compile(optimizer="adam", loss="categorical_crossentropy", steps_per_execution=3,
                  jit_step=True)
    for name in ("m.keras", "m.h5", "m.npz"):
        model.save(str(tmp_path / name))
        loaded = nexec.models.load_model(str(tmp_path / name))
        assert loaded._trainer.steps_per_execution == 3
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        config = json.loads(z.read("config.json"))["compile_config"]
    assert config["steps_per_execution"] == 3 and config["jit_compile"] is True
    # the nexec format keeps jit_step; Keras files leave it at nexec's default
    assert nexec.models.load_model(str(tmp_path / "m.npz"))._trainer.train_executor.jit_step
    assert nexec.models.load_model(str(tmp_path / "m.keras"))._trainer.train_executor \
        .jit_step is False


def test_a_sequential_built_at_fit_keeps_its_compile_arguments():
    x, y = _data((12,), 4, n=16)
    model = Sequential([layers.Dense(8, activation="relu"), layers.Dense(4,
                                                                         activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy", steps_per_execution=2,
                  jit_compile=False)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert model._trainer.steps_per_execution == 2
    assert np.isfinite(model.evaluate(x, y, verbose=0))
