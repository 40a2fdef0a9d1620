"""Choosing each Conv2D's algorithm: the switch, the plan's record, "auto"'s measurement,
and Winograd and direct models (an Inception-style concat, training) against im2col."""
from __future__ import annotations

import json

import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers
from nexec.kernels import sources_stamp
from nexec.ops.winograd import algorithm_of
from nexec.planner import algorithms
from nexec.planner.algorithms import use_conv_algorithm
from nexec.testing import (
    array_arguments,
    check_gradients,
    count_allocations,
    model_gradients,
    weights_by_name,
)


def _cnn(seed: int = 3, dtype: str = "float32", act: str = "relu") -> Model:
    """3x3 'same' and 'valid' convolutions, a strided one, and an Inception-style concat."""
    nexec.set_random_seed(seed)
    x = Input((9, 9, 3), dtype=dtype)
    a = layers.Conv2D(8, 3, padding="same", activation=act, name="c1")(x)
    b1 = layers.Conv2D(4, 3, padding="same", activation="tanh", name="b1")(a)
    b2 = layers.Conv2D(5, 1, name="b2")(a)
    b3 = layers.Conv2D(3, 3, padding="same", use_bias=False, name="b3")(a)
    m = layers.Concatenate(name="mix")([b1, b2, b3])
    c = layers.Conv2D(6, 3, padding="valid", activation=act, name="c2")(m)
    d = layers.Conv2D(4, 3, strides=2, padding="same", name="c3")(c)
    out = layers.Dense(3, activation="softmax", name="out")(layers.Flatten()(d))
    return Model(x, out, name="cnn")


def _data(n: int = 20):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 9, 9, 3)).astype(np.float32)
    return x, np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]


def test_switch_forces_each_algorithm_and_the_plan_shows_it():
    model = _cnn()
    with use_conv_algorithm("winograd"):
        plan = model.plan()
    assert plan.conv_algorithms == {"c1": "winograd", "b1": "winograd", "b2": "im2col",
                                    "b3": "winograd", "c2": "winograd", "c3": "im2col"}
    assert "algorithm: winograd" in plan.describe()
    with use_conv_algorithm("winograd4"):
        memory = model.memory_plan(batch_size=4)
    names = str(memory)
    assert "c1.U" in names and "c1.dU" in names
    assert memory.concat_in_place == ["mix"]  # b1 and b3 write into their slices
    # the default, the cost model: layers this small stay im2col
    assert set(model.plan().conv_algorithms.values()) == {"im2col"}
    assert model.plan().conv_mode == "model"
    assert "c1.U" not in str(model.memory_plan(batch_size=4))


def test_the_default_cost_model_picks_by_shape_and_keeps_small_layers_im2col():
    nexec.set_random_seed(1)
    x = Input((24, 24, 3))
    stem = layers.Conv2D(64, 3, padding="same", name="stem")(x)  # 3 input channels
    wide = layers.Conv2D(64, 3, padding="same", name="wide")(stem)  # 64 -> 64
    s2 = layers.Conv2D(24, 3, strides=2, padding="same", name="s2")(wide)  # no Winograd
    mid = layers.Conv2D(32, 3, padding="same", name="mid")(s2)  # 24 -> 32: blocks of 32
    one = layers.Conv2D(16, 1, name="one")(mid)  # 1x1 over 32: past direct's limit
    tiny = layers.Conv2D(8, 3, padding="same", name="tiny")(one)  # under the floor
    plan = Model(x, tiny).plan()
    assert plan.conv_mode == "model"
    assert plan.conv_algorithms == {"stem": "direct", "wide": "winograd", "s2": "im2col",
                                    "mid": "direct", "one": "im2col", "tiny": "im2col"}
    assert 12 * 12 * 16 * 8 * 9 < algorithms.MIN_MODELLED_WORK <= 12 * 12 * 24 * 32 * 9


def test_the_cost_model_prefers_winograd_on_small_maps_in_inference_only():
    """A 4x4 map's forward is cheaper with Winograd's four tiles, its backward is not."""
    choice = algorithms.modelled_choice
    assert choice(4, 4, 256, 256, training=False) == "winograd"
    assert choice(4, 4, 256, 256) == "im2col" == choice(4, 4, 256, 256, training=True)
    assert choice(8, 8, 128, 128) == "winograd" == choice(8, 8, 128, 128, training=False)
    assert choice(2, 2, 512, 512, training=False) == "im2col"  # one tile, mostly padding
    assert choice(4, 4, 16, 16, training=False) == "im2col"  # under the floor


def _small_map_cnn(seed: int = 5) -> Model:
    """A 4x4 map with 64 channels: im2col for training, Winograd for inference."""
    nexec.set_random_seed(seed)
    x = Input((8, 8, 3))
    a = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu", name="down")(x)
    b = layers.Conv2D(64, 3, padding="same", activation="relu", name="small")(a)
    return Model(x, layers.Dense(3, activation="softmax", name="out")(layers.Flatten()(b)))


def test_training_and_inference_get_their_own_choices():
    model = _small_map_cnn()
    plan = model.plan()
    assert plan.conv_algorithms == {"down": "im2col", "small": "im2col"}
    assert plan.algorithms(True) is plan.conv_algorithms
    assert plan.algorithms(False) == {"down": "im2col", "small": "winograd"}
    assert "algorithm: im2col (inference: winograd)" in plan.describe()
    assert "small.U" in str(model.memory_plan(batch_size=4, training=False))
    assert "small.U" not in str(model.memory_plan(batch_size=4, training=True))
    with use_conv_algorithm("im2col"):  # a forced algorithm is the same for both
        forced = model.plan()
    assert forced.algorithms(False) == forced.conv_algorithms == {"down": "im2col",
                                                                  "small": "im2col"}


def test_fit_runs_the_training_choice_and_predict_the_inference_choice():
    """Training bits as all-im2col's (the same algorithm), before and after a predict;
    predict, with a tail batch, as Winograd's: close to im2col's, and not its bits. The
    layers record the choice of the program bound last."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 8, 8, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 10)]
    models = {}
    for mode in ("model", "im2col"):
        with use_conv_algorithm(mode):
            m = _small_map_cnn()
            m.compile(optimizer="sgd", loss="categorical_crossentropy")
        m.fit(x, y, batch_size=4, epochs=2, verbose=0)
        assert algorithm_of(m.get_layer("small")) == "im2col"
        models[mode] = m, m.predict(x, batch_size=4, verbose=0)
        assert algorithm_of(m.get_layer("small")) == ("winograd" if mode == "model"
                                                       else "im2col")
    (modelled, p_modelled), (plain, p_plain) = models["model"], models["im2col"]
    for a, b in zip(modelled.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(p_modelled, p_plain, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(p_modelled, p_plain)  # Winograd's rounding: it did run
    for m in (modelled, plain):  # the training programs bound before predict still run im2col
        nexec.set_random_seed(7)  # the same shuffle for both
        m.fit(x, y, batch_size=4, epochs=1, verbose=0)
    for a, b in zip(modelled.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_auto_keeps_training_and_inference_measurements_apart(monkeypatch, tmp_path):
    """A training tail bound after a predict gets the training measurement (the two used to
    share one record, so the tail ran the inference choice)."""
    monkeypatch.setenv("NEXEC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(algorithms, "_table", None)
    threads = nexec_threads()
    for training, fast in ((True, "im2col"), (False, "winograd")):  # recorded: none measured
        slow = "winograd" if fast == "im2col" else "im2col"
        algorithms.record(algorithms.shape_key(4, 4, 64, 64, "same", "float32", 4, threads,
                                               training),
                          {"choice": fast, "seconds": {fast: 1.0, slow: 2.0}})
        algorithms.record(algorithms.shape_key(8, 8, 3, 64, "same", "float32", 4, threads,
                                               training, strides=(2, 2)),
                          {"choice": "im2col", "seconds": {"im2col": 1.0, "direct": 2.0}})
    with use_conv_algorithm("auto"):
        model = _small_map_cnn()
        model.compile(optimizer="sgd", loss="categorical_crossentropy")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((10, 8, 8, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 10)]
    model.fit(x[:8], y[:8], batch_size=4, epochs=1, verbose=0)
    model.predict(x[:8], batch_size=4, verbose=0)
    assert algorithm_of(model.get_layer("small")) == "winograd"
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # binds a training tail of 2 rows
    assert algorithm_of(model.get_layer("small")) == "im2col"
    plan = model._trainer.plan
    assert plan.algorithms(True)["small"] == "im2col"
    assert plan.algorithms(False)["small"] == "winograd"
    assert not list(tmp_path.iterdir())  # nothing was measured, so nothing was saved


def test_bad_modes_are_refused(monkeypatch):
    with pytest.raises(ValueError, match="conv_algorithm must be one of auto, im2col"):
        with use_conv_algorithm("fft"):
            pass
    monkeypatch.setenv("NEXEC_CONV_ALGORITHM", "fft")
    with pytest.raises(ValueError, match="NEXEC_CONV_ALGORITHM"):
        _cnn().plan()
    monkeypatch.setenv("NEXEC_CONV_ALGORITHM", "Winograd")
    assert _cnn().plan().conv_algorithms["c1"] == "winograd"
    from nexec.checks import ArgumentError
    from nexec.ops.winograd import set_algorithm

    with pytest.raises(ArgumentError):
        with use_conv_algorithm(None):
            pass
    strided = _cnn().get_layer("c3")
    with pytest.raises(ValueError, match="Winograd needs a 3x3 kernel with stride 1"):
        set_algorithm(strided, "winograd")
    with pytest.raises(ValueError, match="conv algorithm must be one of"):
        set_algorithm(strided, "fft")
    with pytest.raises(ValueError, match="at most 32 input channels, got 33"):
        set_algorithm(strided, "direct", 33)
    set_algorithm(strided, "direct", 32)
    with pytest.raises(ValueError, match="at most 16 input channels, got 17"):
        set_algorithm(_cnn().get_layer("b2"), "direct", 17)  # 1x1


def _wide_input_cnn() -> Model:
    """A 3-channel stem (direct applies) and a 40-channel layer after it (it does not)."""
    nexec.set_random_seed(2)
    x = Input((9, 9, 3))
    a = layers.Conv2D(40, 3, padding="same", name="stem")(x)
    b = layers.Conv2D(4, 5, strides=2, padding="same", name="wide")(a)
    return Model(x, layers.Flatten()(b))


def test_direct_applies_to_few_input_channels_only(monkeypatch):
    monkeypatch.setenv("NEXEC_CONV_ALGORITHM", "direct")
    plan = _wide_input_cnn().plan()
    assert plan.conv_algorithms == {"stem": "direct", "wide": "im2col"}
    assert "algorithm: direct" in plan.describe()
    memory = str(_wide_input_cnn().memory_plan(batch_size=4))
    assert "stem.xpad" in memory and "wide.xpad" not in memory
    assert _cnn().plan().conv_algorithms["c3"] == "direct"  # strided: direct serves it


@pytest.mark.parametrize("algo, tol", [("winograd", 2e-5), ("winograd4", 2e-4),
                                       ("direct", 2e-5)])
def test_predict_matches_im2col(algo, tol):
    x, _ = _data()
    want = _cnn().predict(x, batch_size=8, verbose=0)
    with use_conv_algorithm(algo):
        model = _cnn()
        model.compile(optimizer="sgd", loss="categorical_crossentropy")
    assert algorithm_of(model.get_layer("c2")) == algo
    got = model.predict(x, batch_size=8, verbose=0)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("algo", ["winograd", "winograd4", "direct"])
def test_gradients_finite_differences_float64(algo):
    """Whole-model gradients through Winograd convolutions (dx by Winograd, dw by im2col)."""
    x, y = _data(4)
    with use_conv_algorithm(algo):
        model = _cnn(dtype="float64", act="tanh")
        loss_fn, grads = model_gradients(model, x.astype(np.float64), y.astype(np.float64),
                                         "categorical_crossentropy")
    assert algorithm_of(model.get_layer("c2")) == algo
    wrt = weights_by_name(model)
    check_gradients(loss_fn, grads, wrt, rtol=1e-6)


@pytest.mark.parametrize("other", ["winograd", "direct"])
def test_training_matches_im2col(other):
    x, y = _data(32)
    histories, weights = {}, {}
    for algo in ("im2col", other):
        with use_conv_algorithm(algo):
            model = _cnn(seed=11)
            model.compile(optimizer="adam", loss="categorical_crossentropy")
        histories[algo] = model.fit(x, y, epochs=3, batch_size=8, verbose=0,
                                    shuffle=False).history["loss"]
        weights[algo] = model.get_weights()
    np.testing.assert_allclose(histories[other], histories["im2col"], rtol=1e-4)
    for a, b in zip(weights[other], weights["im2col"]):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("algo", ["winograd", "direct"])
def test_training_steps_allocate_nothing(algo):
    with use_conv_algorithm(algo):
        model = _cnn()
        model.compile(optimizer="adam", loss="categorical_crossentropy")
    x, y = _data(32)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    ex = model._trainer.train_executor
    prog = ex.program(16)
    losses, counts = [0.0], [0] * len(prog.metrics)

    def steps(k):
        for s in range(k):
            np.copyto(prog.inputs[0], x[s * 16:(s + 1) * 16])
            np.copyto(prog.targets[0], y[s * 16:(s + 1) * 16])
            ex.train_step(prog, losses, counts)

    steps(2)
    nrt, numpy_blocks = count_allocations(lambda: steps(2))
    assert nrt == 2 * array_arguments(prog)
    assert numpy_blocks == []


def test_auto_measures_once_and_caches_on_disk(monkeypatch, tmp_path):
    monkeypatch.setenv("NEXEC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(algorithms, "_table", None)
    with use_conv_algorithm("auto"):
        model = _cnn()
        model.compile(optimizer="sgd", loss="categorical_crossentropy")
    plan = model._trainer.plan
    assert plan.conv_mode == "auto"
    x, y = _data(8)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    table = json.loads((tmp_path / "conv_algorithms.json").read_text())
    train_keys = [k for k in table if k.endswith("/b8/t%d/train" % nexec_threads())]
    # Every layer has at most 16 input channels: all six are measured, b2 (1x1) and c3
    # (stride 2) with im2col and direct only, under keys that name their kernel.
    assert len(train_keys) == 6
    for key in train_keys:
        entry = table[key]
        assert entry["choice"] in entry["seconds"]
        wino = "/k" not in key
        assert set(entry["seconds"]) == ({"im2col", "winograd", "direct"} if wino
                                         else {"im2col", "direct"})
    assert sum("/k3x3s2x2/" in k for k in train_keys) == 1
    assert plan.conv_algorithms["c3"] in ("im2col", "direct")  # strided: never Winograd
    # A new process-wide table reads the file back: no new measurement.
    monkeypatch.setattr(algorithms, "_table", None)
    assert algorithms.measured(train_keys[0]) == table[train_keys[0]]
    assert table[algorithms.STAMP_KEY] == sources_stamp()


def test_measurements_of_other_kernels_are_not_reused(monkeypatch, tmp_path):
    """A table written by another nexec (another kernel stamp, or none: before round 8) is
    ignored and replaced at the next save."""
    monkeypatch.setenv("NEXEC_CACHE_DIR", str(tmp_path))
    key = algorithms.shape_key(9, 9, 3, 8, "same", "float32", 8, nexec_threads(), False)
    stale = {"choice": "im2col", "seconds": {"im2col": 1.0, "winograd": 2.0, "direct": 3.0}}
    for stamp in ({}, {algorithms.STAMP_KEY: "another"}):
        (tmp_path / "conv_algorithms.json").write_text(json.dumps({key: stale, **stamp}))
        monkeypatch.setattr(algorithms, "_table", None)
        assert algorithms.measured(key) is None
    with use_conv_algorithm("auto"):
        model = _cnn()
        model.predict(_data(8)[0], batch_size=8, verbose=0)
    table = json.loads((tmp_path / "conv_algorithms.json").read_text())
    assert table[algorithms.STAMP_KEY] == sources_stamp()
    assert table[key] != stale and table[key]["choice"] in table[key]["seconds"]


def nexec_threads() -> int:
    from nexec.plugins import registry

    return registry().device("cpu").threads()


@pytest.mark.parametrize("algo", ["winograd", "winograd4", "direct"])
def test_sharded_matches_one_thread_and_finite_differences(monkeypatch, algo):
    """Winograd or direct split over images on 3 threads (5 images: shards of 1, 2, 2),
    float64."""
    from nexec.devices.threads import get_num_threads, run_shards, set_num_threads
    from nexec.ops import builtin

    monkeypatch.setattr(builtin, "_MIN_SHARD_FLOPS", 1)
    before = get_num_threads()
    x, y = _data(5)
    x, y = x.astype(np.float64), y.astype(np.float64)
    results = {}
    try:
        for threads in (1, 3):
            set_num_threads(threads)
            with use_conv_algorithm(algo):
                model = _cnn(seed=5, dtype="float64", act="tanh")
                loss_fn, grads = model_gradients(model, x, y, "categorical_crossentropy")
            prog = model._trainer.train_executor.program(5)
            sharded = [fn for fn, _ in prog.forward + prog.backward if fn is run_shards]
            assert bool(sharded) == (threads == 3)
            results[threads] = model.predict(x, batch_size=5, verbose=0), grads
        check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)
    finally:
        set_num_threads(before)
    np.testing.assert_allclose(results[3][0], results[1][0], rtol=1e-12, atol=1e-15)
    for name, g in results[1][1].items():
        np.testing.assert_allclose(results[3][1][name], g, rtol=1e-11, atol=1e-14, err_msg=name)


def test_auto_measures_direct_where_an_older_entry_lacks_it(monkeypatch, tmp_path):
    """A table entry from before "direct" existed (im2col and Winograd only) is measured
    again with all of the layer's candidates; until then the cost model's choice holds
    (im2col: the layer is small)."""
    monkeypatch.setenv("NEXEC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(algorithms, "_table", None)
    x = np.random.default_rng(1).standard_normal((8, 9, 9, 3)).astype(np.float32)
    key = algorithms.shape_key(9, 9, 3, 40, "same", "float32", 8, nexec_threads(), False)
    algorithms.record(key, {"choice": "im2col", "seconds": {"im2col": 1.0, "winograd": 2.0}})
    with use_conv_algorithm("auto"):
        model = _wide_input_cnn()
        assert model.plan().conv_algorithms == {"stem": "im2col", "wide": "im2col"}
        model.predict(x, batch_size=8, verbose=0)
    assert set(algorithms.measured(key)["seconds"]) == {"im2col", "winograd", "direct"}
    assert algorithms.shape_key(9, 9, 24, 4, "same", "float32", 8, 1, False, (5, 5),
                                (2, 2)) == "9x9x24->4/same/k5x5s2x2/float32/b8/t1/infer"
