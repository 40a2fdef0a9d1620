"""Outputs that carry a Keras mask: loss and metrics weighted by it as in Keras 3, against
numbers recorded from Keras 3.15 (float64, JAX backend) by
``tests/keras_reference/record_output_masks.py``; and the layers that drop a mask with
Keras' warning."""
from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers
from nexec.checks import ArgumentError
from nexec.errors import GraphError
from nexec.testing import assert_close

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "..", "keras_reference", "output_masks.json")) as f:
    RECORDED = json.load(f)
#: JAX's float64 recurrences differ from nexec's by ~1e-8 (tests/layers/test_masking_keras.py)
TOL = 1e-6
#: Keras accumulates metrics (and the loss tracker) in float32 variables
METRIC_TOL = 1e-6
BATCH = 2


def _make(spec: list) -> layers.Layer:
    name, kwargs = spec
    kwargs = dict(kwargs)
    if "layer" in kwargs:
        kwargs["layer"] = _make(kwargs["layer"])
    if "target_shape" in kwargs:
        kwargs["target_shape"] = tuple(kwargs["target_shape"])
    return getattr(layers, name)(**kwargs)


def _metric(spec: object) -> object:
    if isinstance(spec, str):
        return spec
    name, kwargs = spec
    return getattr(nexec.metrics, name)(**kwargs)


def _model(rec: dict) -> Model:
    nexec.clear_session()
    inp = Input(shape=(len(rec["ids"][0]),), dtype="int32")
    h = layers.Embedding(7, 3, mask_zero=True, dtype="float64")(inp)
    for spec in rec["layers"]:
        h = _make(spec)(h)
    model = Model(inp, h)
    model.set_weights([np.array(w) for w in rec["weights"]])
    return model


def _compiled(rec: dict) -> Model:
    model = _model(rec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the mask is honoured: no warning at compile
        model.compile(optimizer=nexec.optimizers.SGD(0.3), loss=rec["loss"],
                      metrics=[_metric(m) for m in rec["metrics"]])
    return model


def _same_logs(got: dict, want: dict, what: str) -> None:
    assert sorted(got) == sorted(want), what
    for key, value in want.items():
        tol = TOL if key == "loss" else METRIC_TOL
        assert_close(np.array(got[key]), np.array(value), rtol=tol, atol=1e-7,
                     what=f"{what}: {key}")


@pytest.mark.parametrize("case", sorted(RECORDED["masked"]))
def test_masked_output_evaluate_matches_keras(case):
    rec = RECORDED["masked"][case]
    model = _compiled(rec)
    assert model.outputs[0].mask is not None
    ids, y = np.array(rec["ids"], np.int32), np.array(rec["y"])
    assert_close(model.predict(ids, verbose=0), np.array(rec["predict"]), rtol=TOL,
                 what="predict")
    for name, sw in (("none", None), ("sample", rec["sw_sample"]), ("step", rec["sw_step"])):
        got = model.evaluate(ids, y, batch_size=BATCH, verbose=0, return_dict=True,
                             sample_weight=None if sw is None else np.array(sw))
        _same_logs(got, rec["evaluate"][name], f"evaluate, sample weights {name}")


@pytest.mark.parametrize("case", sorted(RECORDED["masked"]))
@pytest.mark.parametrize("run", ["fit", "fit_step_weights"])
def test_masked_output_fit_matches_keras(case, run):
    rec = RECORDED["masked"][case]
    model = _compiled(rec)
    ids, y = np.array(rec["ids"], np.int32), np.array(rec["y"])
    sw = np.array(rec["sw_step"]) if run == "fit_step_weights" else None
    hist = model.fit(ids, y, epochs=2, batch_size=BATCH, shuffle=False, verbose=0,
                     sample_weight=sw)
    # Keras' JAX trainer computes the training metrics from predictions that lost their
    # mask (they leave jax.value_and_grad as aux outputs), so its fit-time metrics are
    # unmasked; TensorFlow's and PyTorch's keep the mask, as nexec does
    # (test_fit_metrics_are_masked). The loss is masked on every backend.
    assert sorted(hist.history) == sorted(rec[run]["history"])
    assert_close(np.array(hist.history["loss"]), np.array(rec[run]["history"]["loss"]),
                 rtol=TOL, what=f"{run}: loss")
    for i, (w, k) in enumerate(zip(model.get_weights(), rec[run]["trained_weights"])):
        assert_close(w, np.array(k), rtol=TOL, atol=1e-9, what=f"trained weight {i}")


@pytest.mark.parametrize("case", sorted(RECORDED["masked"]))
def test_fit_metrics_are_masked(case):
    """One full-batch epoch: its metrics are those of the predictions before the update,
    weighted by the mask: Keras' masked ``evaluate`` metrics."""
    rec = RECORDED["masked"][case]
    model = _compiled(rec)
    ids, y = np.array(rec["ids"], np.int32), np.array(rec["y"])
    hist = model.fit(ids, y, epochs=1, batch_size=len(ids), shuffle=False, verbose=0)
    for key, value in rec["evaluate"]["none"].items():
        if key != "loss":
            assert_close(hist.history[key][0], value, rtol=METRIC_TOL, atol=1e-7, what=key)


def test_the_loss_is_the_masked_mean_in_float64():
    """Keras' apply_mask to the last digit: sum(loss * sw * mask) / valid per batch, and a
    batch of padding only contributes 0 (divide_no_nan)."""
    rec = RECORDED["masked"]["mse_gru_time_distributed"]
    model = _compiled(rec)
    ids, y = np.array(rec["ids"], np.int32), np.array(rec["y"])
    sw = np.array(rec["sw_step"])
    p = model.predict(ids, verbose=0)
    rows = ((p - y) ** 2).mean(-1)
    mask = ids != 0
    want = 0.0
    for lo in range(0, len(ids), BATCH):
        b = slice(lo, lo + BATCH)
        valid = mask[b].sum()
        batch_loss = (rows[b] * sw[b] * mask[b]).sum() / valid if valid else 0.0
        want += batch_loss * len(ids[b])
    got = model.evaluate(ids, y, batch_size=BATCH, verbose=0, sample_weight=sw,
                         return_dict=True)
    assert_close(got["loss"], want / len(ids), rtol=1e-12, what="masked loss")
    mae = np.abs(p - y).mean(-1)
    assert_close(got["mae"], (mae * mask).sum() / mask.sum(), rtol=1e-12, what="masked mae")


def test_masked_gradient_is_that_of_the_masked_loss():
    """One SGD step moves the weights by -lr times the gradient of Keras' masked loss:
    finite differences of that loss (float64) against the step."""
    rec = RECORDED["masked"]["mse_gru_time_distributed"]
    ids, y = np.array(rec["ids"][:2], np.int32), np.array(rec["y"][:2])
    mask = ids != 0

    def masked_loss(weights: list[np.ndarray]) -> float:
        m = _model(rec)
        m.set_weights(weights)
        rows = ((m.predict(ids, verbose=0) - y) ** 2).mean(-1)
        return float((rows * mask).sum() / mask.sum())

    model = _compiled(rec)
    w0 = [np.array(w) for w in rec["weights"]]
    lr = 0.3
    model.fit(ids, y, epochs=1, batch_size=2, shuffle=False, verbose=0)
    step = [(a - b) / -lr for a, b in zip(model.get_weights(), w0)]
    last = len(w0) - 1  # the TimeDistributed Dense bias: 2 entries
    for j in range(w0[last].size):
        up = [w.copy() for w in w0]
        down = [w.copy() for w in w0]
        up[last].flat[j] += 1e-6
        down[last].flat[j] -= 1e-6
        fd = (masked_loss(up) - masked_loss(down)) / 2e-6
        assert_close(step[last].flat[j], fd, rtol=1e-6, atol=1e-9, what=f"bias {j}")


def test_a_metric_without_a_masked_kernel_is_refused_at_compile():
    rec = RECORDED["masked"]["mse_gru_time_distributed"]
    model = _model(rec)
    custom = nexec.metrics.Metric("close", elementwise=lambda p, t: 1.0 if abs(p - t) < 0.1
                                  else 0.0)
    with pytest.raises(ArgumentError, match="'close'.*mask"):
        model.compile(optimizer="sgd", loss="mse", metrics=[custom])


def test_an_unmasked_output_is_unchanged():
    """mask_zero=False: the same model's loss counts every step (no weights bound)."""
    nexec.clear_session()
    rec = RECORDED["masked"]["mse_gru_time_distributed"]
    inp = Input(shape=(5,), dtype="int32")
    h = layers.Embedding(7, 3, dtype="float64")(inp)
    for spec in rec["layers"]:
        h = _make(spec)(h)
    model = Model(inp, h)
    model.set_weights([np.array(w) for w in rec["weights"]])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    ids, y = np.array(rec["ids"], np.int32), np.array(rec["y"])
    p = model.predict(ids, verbose=0)
    got = model.evaluate(ids, y, batch_size=len(ids), verbose=0, return_dict=True)
    assert_close(got["loss"], ((p - y) ** 2).mean(), rtol=1e-12, what="loss")
    assert_close(got["mae"], np.abs(p - y).mean(), rtol=1e-12, what="mae")


@pytest.mark.parametrize("case", sorted(RECORDED["dropped"]))
def test_layers_that_drop_the_mask_warn_and_match_keras(case):
    rec = RECORDED["dropped"][case]
    with pytest.warns(UserWarning) as caught:
        model = _model(rec)
    got = sorted({str(w.message) for w in caught if "mask" in str(w.message)})
    assert got == rec["warnings"]
    assert model.outputs[0].mask is None
    ids, y = np.array(rec["ids"], np.int32), np.array(rec["y"])
    assert_close(model.predict(ids, verbose=0), np.array(rec["predict"]), rtol=TOL,
                 what="predict")
    model.compile(optimizer=nexec.optimizers.SGD(0.3), loss="mse")
    hist = model.fit(ids, y, epochs=2, batch_size=BATCH, shuffle=False, verbose=0)
    assert_close(np.array(hist.history["loss"]), np.array(rec["losses"]), rtol=TOL,
                 what="losses")
    for i, (w, k) in enumerate(zip(model.get_weights(), rec["trained_weights"])):
        assert_close(w, np.array(k), rtol=TOL, atol=1e-9, what=f"trained weight {i}")


def test_a_masked_softmax_is_refused_and_batchnorm_passes_the_mask_on():
    """Keras 3.15's Softmax cannot fit an Embedding mask to its input and nexec refuses it;
    BatchNormalization reads the mask and passes it on (tests/layers/
    test_masked_norm_softmax.py; merges: tests/layers/test_merge_masks.py)."""
    nexec.clear_session()
    ids = Input(shape=(4,), dtype="int32")
    e = layers.Embedding(5, 2, mask_zero=True)(ids)
    with pytest.raises(GraphError, match="'f'.*must be broadcastable"):
        layers.Softmax(name="f")(e)
    assert layers.BatchNormalization()(e).mask is e.mask


def _dense_masked_model(device: str, metrics: list) -> Model:
    """ids -> Embedding(mask_zero) -> Dense(softmax): a sequence output with the mask (no
    recurrent layer, so it runs on every device)."""
    nexec.clear_session()
    inp = Input(shape=(5,), dtype="int32")
    h = layers.Embedding(7, 3, mask_zero=True, dtype="float64")(inp)
    model = Model(inp, layers.Dense(3, activation="softmax")(h))
    rng = np.random.default_rng(4)
    model.set_weights([rng.normal(0, 0.5, w.shape) for w in model.get_weights()])
    model.compile(optimizer=nexec.optimizers.SGD(0.3), loss="sparse_categorical_crossentropy",
                  metrics=metrics, device=device)
    return model


def test_masked_training_steps_allocate_nothing():
    from nexec.testing import array_arguments, count_allocations

    model = _dense_masked_model("cpu", ["accuracy"])
    ids = np.array(RECORDED["masked"]["scce_lstm_dense"]["ids"] * 4, np.int32)
    y = np.random.default_rng(0).integers(0, 3, ids.shape)
    sw = np.random.default_rng(1).uniform(0, 2, ids.shape)
    model.fit(ids, y, epochs=1, batch_size=4, verbose=0, sample_weight=sw)
    ex = model._trainer.train_executor
    prog = ex.program(4, True)
    losses, counts = [0.0], [np.zeros(2)]

    def steps(k: int) -> None:
        for i in range(k):
            ex.load(prog, [ids, y, sw], 4 * i, 4 * i + 4)
            ex.train_step(prog, losses, counts)

    steps(2)
    nrt, numpy_blocks = count_allocations(lambda: steps(3))
    assert nrt == 3 * array_arguments(prog)
    assert numpy_blocks == []
    assert np.isfinite(losses[0])


@pytest.mark.cudasim
def test_masked_loss_and_metrics_on_cuda_match_the_cpu():
    from nexec.kernels.cuda import backend

    if not backend.is_available():
        pytest.fail("needs a GPU or NUMBA_ENABLE_CUDASIM=1 (tests/conftest.py sets it)")
    rec = RECORDED["masked"]["scce_lstm_dense"]
    ids, y = np.array(rec["ids"], np.int32), np.array(rec["y"])
    sw = np.array(rec["sw_step"])
    metrics = ["accuracy", nexec.metrics.SparseTopKCategoricalAccuracy(k=2)]
    results = []
    for device in ("cpu", "cuda"):
        model = _dense_masked_model(device, metrics)
        ev = model.evaluate(ids, y, batch_size=BATCH, verbose=0, return_dict=True,
                            sample_weight=sw)
        hist = model.fit(ids, y, epochs=2, batch_size=BATCH, shuffle=False, verbose=0,
                         sample_weight=sw)
        results.append((ev, hist.history, model.get_weights()))
    (ev_c, h_c, w_c), (ev_g, h_g, w_g) = results
    for key in ev_c:
        assert_close(ev_g[key], ev_c[key], rtol=1e-10, atol=1e-12, what=key)
        assert_close(np.array(h_g[key]), np.array(h_c[key]), rtol=1e-10, atol=1e-12,
                     what=f"fit {key}")
    for a, b in zip(w_c, w_g):
        assert_close(b, a, rtol=1e-10, atol=1e-12, what="weights")


def test_the_mask_calls_can_join_a_whole_compiled_step():
    """The loss and metric phases of a masked program are Numba kernels that
    ``jit_step=True`` can compile (this model's forward has a call that cannot)."""
    from nexec.runtime import wholestep

    model = _dense_masked_model("cpu", ["accuracy"])
    rec = RECORDED["masked"]["scce_lstm_dense"]
    model.fit(np.array(rec["ids"], np.int32), np.array(rec["y"]), batch_size=BATCH,
              verbose=0, sample_weight=np.array(rec["sw_step"]))
    prog = model._trainer.train_executor.program(BATCH, True)
    reasons = wholestep.uncompilable(prog, "train")
    assert not [r for r in reasons if r.startswith(("loss", "metric"))], reasons


def test_data_parallel_training_refuses_a_masked_output():
    model = _model(RECORDED["masked"]["mse_gru_time_distributed"])

    class Strategy:  # never reached: the masked output is refused first
        def attach(self, trainer):  # noqa: ANN001, ANN202
            raise AssertionError("attached")

    with pytest.raises(ArgumentError, match="distribute.*carries a mask"):
        model.compile(optimizer="sgd", loss="mse", distribute=Strategy())
