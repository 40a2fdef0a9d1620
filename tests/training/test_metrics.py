"""compile(metrics=...) forms as Keras 3 accepts them, log names, model.metrics_names, and
metrics with several sums (AUC) through the trainer on CPU and CUDA."""
import numpy as np
import pytest

from nexec import Input, Model, layers, metrics
from nexec.kernels.cuda import backend

X = np.random.default_rng(0).random((10, 4)).astype(np.float32)
Y = (np.random.default_rng(1).random((10, 3)) > 0.5).astype(np.float32)


def model(outputs=1):
    x = Input(shape=(4,))
    outs = [layers.Dense(3, activation="sigmoid", name=f"o{i}")(x) for i in range(outputs)]
    return Model(x, outs if outputs > 1 else outs[0])


def logs(m, metrics_arg, outputs=1, **kw):
    m.compile("sgd", "mse", metrics=metrics_arg, **kw)
    return m.evaluate(X, [Y] * outputs if outputs > 1 else Y, batch_size=4, verbose=0,
                      return_dict=True)


def test_names_and_objects_log_as_written():
    m = model()
    out = logs(m, ["mae", "mean_squared_error", "rmse", "AUC", "Precision", metrics.Recall(),
                   metrics.MeanAbsoluteError(), metrics.AUC(num_thresholds=9, name="auc9")])
    assert list(out) == ["loss", "mae", "mean_squared_error", "rmse", "AUC", "Precision",
                         "recall", "mean_absolute_error", "auc9"]
    p = m.predict(X, verbose=0).astype(np.float64)
    assert out["mae"] == pytest.approx(np.mean(np.abs(p - Y)), rel=1e-6)
    assert out["mean_absolute_error"] == out["mae"]
    assert out["mean_squared_error"] == pytest.approx(out["loss"], rel=1e-6)
    assert out["rmse"] == pytest.approx(np.sqrt(out["mean_squared_error"]), rel=1e-12)
    assert m.metrics_names == list(out)


def test_per_output_forms():
    m = model(2)
    assert list(logs(m, [["mae"], []], 2)) == ["loss", "o0_loss", "o1_loss", "o0_mae"]
    assert list(logs(m, ["mae", ["mse", "auc"]], 2)) == \
        ["loss", "o0_loss", "o1_loss", "o0_mae", "o1_mse", "o1_auc"]
    assert list(logs(m, [None, "mae"], 2))[-1] == "o1_mae"
    assert list(logs(m, {"o1": ["mae"]}, 2))[-1] == "o1_mae"
    single = model()
    assert list(logs(single, [["mae", "mse"]])) == ["loss", "mae", "mse"]
    assert list(logs(single, ("mae", "mae"))) == ["loss", "mae", "mae_1"]


@pytest.mark.parametrize("bad, match", [
    ("accuracy", "must be a list, tuple or dict"),
    ([lambda t, p: t], "got a function"),
    (["mae", ["mse"]], "is not a metric"),
    (["nope"], "Unknown metric 'nope'"),
])
def test_refused_forms_say_what_is_accepted(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        model().compile("sgd", "mse", metrics=bad)


def test_refused_per_output_forms():
    with pytest.raises(ValueError, match="1 entries for 2 outputs"):
        model(2).compile("sgd", "mse", metrics=["mae"])
    with pytest.raises(ValueError, match="not outputs"):
        model(2).compile("sgd", "mse", metrics={"zz": ["mae"]})


def test_unsupported_keras_arguments_are_refused():
    with pytest.raises(ValueError, match="curve='PR' is not supported"):
        metrics.AUC(curve="PR")
    with pytest.raises(ValueError, match="num_thresholds"):
        metrics.AUC(num_thresholds=1)
    with pytest.raises(ValueError, match="one float"):
        metrics.Precision(thresholds=[0.3, 0.5])
    with pytest.raises(ValueError, match="class_id"):
        metrics.Recall(class_id=1)
    with pytest.raises(ValueError, match="positive int"):
        metrics.TopKCategoricalAccuracy(k=0)


def test_elementwise_metric_and_get():
    close = metrics.Metric("close", elementwise=lambda p, t: 1.0 if abs(p - t) < 0.5 else 0.0)
    m = model()
    out = logs(m, [close])
    p = m.predict(X, verbose=0)
    assert out["close"] == pytest.approx(np.mean(np.abs(p - Y) < 0.5))
    assert metrics.get("mae").name == "mean_absolute_error"
    assert metrics.get("RootMeanSquaredError").name == "root_mean_squared_error"
    assert model().metrics_names == []


def test_vector_slots_accumulate_over_batches_and_epochs():
    m = model()
    m.compile("sgd", "mse", metrics=["auc", "precision"])
    whole = m.evaluate(X, Y, batch_size=10, verbose=0, return_dict=True)
    batched = m.evaluate(X, Y, batch_size=3, verbose=0, return_dict=True)
    assert batched["auc"] == pytest.approx(whole["auc"], abs=1e-15)
    assert batched["precision"] == pytest.approx(whole["precision"], abs=1e-15)
    assert 0.0 < whole["auc"] < 1.0


@pytest.mark.cudasim
@pytest.mark.skipif(not backend.is_available(), reason=backend.unavailable_reason())
def test_vector_slots_on_cuda_match_cpu():
    results = []
    for device in ("cpu", "cuda"):
        m = model()
        m.set_weights([np.full((4, 3), 0.3, np.float32) * np.arange(3), np.zeros(3, np.float32)])
        m.compile("sgd", "mse", metrics=["auc", "recall", "rmse"], device=device)
        results.append(m.evaluate(X, Y, batch_size=4, verbose=0, return_dict=True))
    for k, v in results[0].items():
        assert results[1][k] == pytest.approx(v, rel=1e-6), k


def test_vector_slot_steps_allocate_nothing():
    from nexec.testing import array_arguments, count_allocations

    m = model()
    m.compile("sgd", "mse", metrics=["auc", "mae"])
    m.fit(X, Y, batch_size=5, epochs=1, verbose=0)
    ex = m._trainer.train_executor
    prog = ex.program(5)
    losses = [0.0]
    counts = [np.zeros(s.shape[0], s.dtype) if s.shape[0] > 1 else 0
              for _, _, s, _ in prog.metric_slots]
    ex.train_step(prog, losses, counts)
    nrt, numpy_blocks = count_allocations(lambda: [ex.train_step(prog, losses, counts)
                                                   for _ in range(3)])
    assert nrt == 3 * array_arguments(prog)
    assert numpy_blocks == []
    assert counts[0].sum() == 4 * 5 * 3  # each of the 5 x 3 predictions once per step
