"""Callbacks behave as Keras 3's: arguments, defaults, log keys, files and messages.

Numbers that matter (the learning-rate sequence of ReduceLROnPlateau, EarlyStopping's stop
epoch and best epoch) were computed by hand and agree with Keras 3.15 on the same inputs.
"""
import csv
import json
import os

import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers
from nexec.callbacks import (
    BackupAndRestore,
    Callback,
    CSVLogger,
    EarlyStopping,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TerminateOnNaN,
)


def tiny(lr=0.1):
    x = Input(shape=(3,))
    model = Model(x, layers.Dense(2)(x))
    model.compile(optimizer=nexec.optimizers.SGD(lr), loss="mse")
    return model


def data(n=16):
    rng = np.random.default_rng(0)
    return rng.random((n, 3)), rng.random((n, 2))


def optimizer(model):
    return model._trainer.optimizer


# ----- ReduceLROnPlateau ------------------------------------------------------------------
def test_reduce_lr_on_plateau_follows_keras_sequence():
    model = tiny(lr=0.1)
    cb = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, cooldown=1, min_lr=0.01)
    cb.set_model(model)
    cb.on_train_begin()
    losses = [1.0, 0.9, 0.95, 0.92, 0.91, 0.91, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6]
    logged, after = [], []
    for epoch, loss in enumerate(losses):
        logs = {"loss": loss}
        cb.on_epoch_end(epoch, logs)
        logged.append(logs["learning_rate"])
        after.append(optimizer(model).learning_rate)
    # By hand (Keras 3.15 gives the same, in float32): reduce when 2 epochs did not beat the
    # best by min_delta=1e-4, then one cooldown epoch; never below min_lr.
    expected_after = [.1, .1, .1, .05, .05, .025, .025, .025, .0125, .0125, .01, .01]
    assert after == pytest.approx(expected_after, rel=1e-12)
    assert logged == pytest.approx([.1] + expected_after[:-1], rel=1e-12)


def test_reduce_lr_on_plateau_in_fit_logs_learning_rate_and_prints(capsys):
    model = tiny(lr=0.2)
    x, y = data()
    # min_delta larger than any change: every epoch after the first is a plateau
    cb = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, verbose=1, min_delta=10)
    h = model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[cb])
    assert h.history["learning_rate"] == pytest.approx([0.2, 0.2, 0.1])
    assert "Epoch 2: ReduceLROnPlateau reducing learning rate to 0.1." in capsys.readouterr().out
    with pytest.raises(ValueError, match="factor >= 1.0"):
        ReduceLROnPlateau(factor=1.0)


# ----- EarlyStopping ----------------------------------------------------------------------
def test_early_stopping_keras_counting_and_best_epoch():
    model = tiny()
    es = EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)
    es.set_model(model)
    es.on_train_begin()
    seen = []
    for epoch, loss in enumerate([1.0, 0.5, 0.7, 0.8, 0.4]):
        model.stop_training = False
        es.on_epoch_end(epoch, {"loss": loss})
        seen.append((model.stop_training, es.best_epoch, es.wait))
    # Keras 3.15 gives exactly this sequence.
    assert seen == [(False, 0, 0), (False, 1, 0), (True, 1, 1), (True, 1, 2), (False, 4, 0)]


def test_early_stopping_restores_best_weights_when_training_ends_before_patience(capsys):
    model = tiny(lr=0.5)
    x, y = data()
    best = {}

    class Spoil(Callback):
        """Records the weights of epoch 2 (index 1), then makes later epochs look worse."""

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                best["w"] = self.model.get_weights()
            if epoch >= 2:
                logs["loss"] = 10.0 + epoch

    es = EarlyStopping(monitor="loss", patience=10, restore_best_weights=True, verbose=1)
    model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[Spoil(), es])
    assert es.stopped_epoch == 0 and es.best_epoch == 1
    for a, b in zip(model.get_weights(), best["w"]):
        np.testing.assert_array_equal(a, b)
    assert "Restoring model weights from the end of the best epoch: 2." in capsys.readouterr().out


def test_early_stopping_mode_auto_and_unknown_metric():
    model = tiny()
    es = EarlyStopping(monitor="val_accuracy")
    es.set_model(model)
    es.on_train_begin()
    es.on_epoch_end(0, {"val_accuracy": 0.5})
    es.on_epoch_end(1, {"val_accuracy": 0.6})
    assert es.best == 0.6  # accuracies go up
    odd = EarlyStopping(monitor="val_something")
    odd.set_model(model)
    odd.on_train_begin()
    with pytest.raises(ValueError, match="mode='max'"):
        odd.on_epoch_end(0, {"val_something": 1.0})
    with pytest.warns(UserWarning, match="not available"):
        EarlyStopping(monitor="nope").on_epoch_end(0, {"loss": 1.0})


# ----- ModelCheckpoint --------------------------------------------------------------------
def test_model_checkpoint_formats_names_and_saves_best_only(tmp_path, capsys):
    model = tiny()
    x, y = data()
    path = str(tmp_path / "ckpt-{epoch:02d}-{loss:.2f}.weights.npz")
    logs_seen = []

    class FakeLoss(Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["loss"] = [0.5, 0.7, 0.25][epoch]
            logs_seen.append(dict(logs))

    cb = ModelCheckpoint(path, monitor="loss", save_best_only=True, save_weights_only=True,
                         verbose=1)
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[FakeLoss(), cb])
    assert sorted(os.listdir(tmp_path)) == ["ckpt-01-0.50.weights.npz",
                                             "ckpt-03-0.25.weights.npz"]
    out = capsys.readouterr().out
    assert "Epoch 1: loss improved from None to 0.50000, saving model to" in out
    assert "Epoch 2: loss did not improve from 0.50000" in out
    with np.load(tmp_path / "ckpt-03-0.25.weights.npz") as saved:
        for a, b in zip([saved[k] for k in saved.files], model.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_model_checkpoint_saves_whole_model_every_epoch(tmp_path):
    model = tiny()
    x, y = data()
    cb = ModelCheckpoint(str(tmp_path / "sub" / "m{epoch}.npz"))
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[cb])
    assert sorted(os.listdir(tmp_path / "sub")) == ["m1.npz", "m2.npz"]  # no temporaries left
    loaded = nexec.load_model(str(tmp_path / "sub" / "m2.npz"))
    np.testing.assert_allclose(loaded.predict(x), model.predict(x))
    with pytest.raises(KeyError, match="Failed to format"):
        ModelCheckpoint(str(tmp_path / "{val_loss}.npz"))._path(0, None, {"loss": 1.0})
    with pytest.raises(ValueError, match="save_freq"):
        ModelCheckpoint(str(tmp_path / "a.npz"), save_freq="batch")


# ----- CSVLogger --------------------------------------------------------------------------
def test_csv_logger_writes_keras_columns_and_appends(tmp_path):
    model = tiny()
    x, y = data()
    path = tmp_path / "log.csv"
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[CSVLogger(str(path))])
    rows = list(csv.reader(open(path)))
    # Keras adds the val_ columns (as NA) when there is no validation.
    assert rows[0] == ["epoch", "loss", "val_loss"]
    assert [r[0] for r in rows[1:]] == ["0", "1"] and rows[1][2] == "NA"
    assert float(rows[2][1]) == pytest.approx(model.history.history["loss"][1])
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, validation_data=(x, y),
              callbacks=[CSVLogger(str(path), separator=";", append=True)])
    lines = open(path).read().splitlines()
    assert len(lines) == 4 and lines[3].startswith("0;")  # no second header


# ----- LearningRateScheduler, LambdaCallback ----------------------------------------------
def test_learning_rate_scheduler_both_forms(capsys):
    model = tiny(lr=0.1)
    x, y = data()
    h = model.fit(x, y, epochs=3, batch_size=16, verbose=0,
                  callbacks=[LearningRateScheduler(lambda epoch, lr: lr * 0.5, verbose=1)])
    assert h.history["learning_rate"] == pytest.approx([0.05, 0.025, 0.0125])
    assert "Epoch 3: LearningRateScheduler setting learning rate to 0.0125." in \
        capsys.readouterr().out
    h = model.fit(x, y, epochs=2, verbose=0,
                  callbacks=[LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1))])
    assert h.history["learning_rate"] == pytest.approx([0.01, 0.02])
    with pytest.raises(ValueError, match="should be a float"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda e: "x")])


def test_learning_rate_takes_effect_in_the_update():
    model = tiny(lr=0.1)
    x, y = data()
    before = model.get_weights()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False,
              callbacks=[LearningRateScheduler(lambda e: 0.0)])
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_lambda_callback_calls_every_hook():
    model = tiny()
    x, y = data()
    calls = []
    cb = LambdaCallback(on_train_begin=lambda logs: calls.append("tb"),
                        on_epoch_begin=lambda e, logs: calls.append(f"eb{e}"),
                        on_train_batch_begin=lambda b, logs=None: calls.append(f"bb{b}"),
                        on_train_batch_end=lambda b, logs: calls.append(f"be{b}"),
                        on_epoch_end=lambda e, logs: calls.append(f"ee{e}:{sorted(logs)}"),
                        on_train_end=lambda logs: calls.append("te"))
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[cb])
    assert calls == ["tb", "eb0", "bb0", "be0", "bb1", "be1", "ee0:['loss']", "te"]
    with pytest.raises(TypeError, match="on_epoch_end"):
        LambdaCallback(on_epoch_end=3)


# ----- NaN --------------------------------------------------------------------------------
def diverging():
    x = Input(shape=(3,))
    model = Model(x, layers.Dense(2)(x))
    model.compile(optimizer=nexec.optimizers.SGD(1e6), loss="mse")
    rng = np.random.default_rng(0)
    return model, rng.random((64, 3)) * 100, rng.random((64, 2)) * 100


def test_terminate_on_nan_stops_at_the_first_bad_batch(capsys):
    model, x, y = diverging()
    seen = []
    with pytest.warns(RuntimeWarning, match="diverged"):  # fit's own warning, once
        h = model.fit(x, y, epochs=50, batch_size=4, verbose=0,
                      callbacks=[TerminateOnNaN(),
                                 LambdaCallback(on_train_batch_end=lambda b, logs:
                                                seen.append(logs["loss"]))])
    assert len(h.history["loss"]) == 1  # stopped in the first epoch
    assert not np.isfinite(seen[-1]) and np.isfinite(seen[:-1]).all()
    assert f"Batch {len(seen) - 1}: Invalid loss, terminating training" in capsys.readouterr().out
    model, x, y = diverging()
    with pytest.raises(RuntimeError, match="NaN or Inf loss"):
        model.fit(x, y, epochs=50, batch_size=4, verbose=0,
                  callbacks=[TerminateOnNaN(raise_error=True)])


def test_fit_warns_once_when_the_loss_diverges():
    model, x, y = diverging()
    with pytest.warns(RuntimeWarning, match="diverged") as record:
        model.fit(x, y, epochs=4, batch_size=4, verbose=0)
    assert len([w for w in record if "diverged" in str(w.message)]) == 1


# ----- BackupAndRestore -------------------------------------------------------------------
class Crash(Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)
        if epoch == self.at_epoch:
            raise RuntimeError("interrupted")


def test_backup_and_restore_resumes_where_it_stopped(tmp_path):
    x, y = data(24)

    def model():
        nexec.random.set_random_seed(3)
        m = tiny()
        m.compile(optimizer=nexec.optimizers.Adam(0.05), loss="mse")
        return m

    reference = model()
    ref = reference.fit(x, y, epochs=5, batch_size=8, shuffle=False, verbose=0)

    backup = str(tmp_path / "backup")
    m = model()
    crash = Crash(at_epoch=3)
    with pytest.raises(RuntimeError, match="interrupted"):
        m.fit(x, y, epochs=5, batch_size=8, shuffle=False, verbose=0,
              callbacks=[BackupAndRestore(backup), crash])
    assert json.load(open(os.path.join(backup, "training_metadata.json"))) == {"epoch": 3}
    assert sorted(os.listdir(backup)) == ["latest.npz", "training_metadata.json"]

    resumed = model()  # a fresh process would rebuild the model: other weights, no state
    seen = Crash(at_epoch=-1)
    h = resumed.fit(x, y, epochs=5, batch_size=8, shuffle=False, verbose=0,
                    callbacks=[BackupAndRestore(backup), seen])
    assert seen.epochs == [3, 4] and h.epoch == [3, 4]
    assert optimizer(resumed).iterations == 5 * 3
    # The same weights and Adam state as the uninterrupted run: the same losses.
    np.testing.assert_allclose(h.history["loss"], ref.history["loss"][3:], rtol=1e-6)
    for a, b in zip(resumed.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    assert not os.path.exists(backup)  # deleted once training completed


def test_callbacks_must_be_callbacks():
    model = tiny()
    x, y = data()
    with pytest.raises(TypeError, match="Callback"):
        model.fit(x, y, verbose=0, callbacks=[lambda: None])
    with pytest.raises(ValueError, match="backup_dir"):
        BackupAndRestore("")
