"""Prepared weights: what inference derives from the weights once (Winograd's filter
transform, a small map's Toeplitz matrix), kept between steps and remade when the weights
change, against models that derive nothing (all im2col)."""
from __future__ import annotations

import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers
from nexec.errors import PluginError
from nexec.ops.base import Kernel, Workspace
from nexec.ops.conv_toeplitz import TOEPLITZ_MAX_BYTES, toeplitz_applies, toeplitz_pays
from nexec.ops.winograd import algorithm_of
from nexec.planner import algorithms
from nexec.planner.algorithms import use_conv_algorithm
from nexec.planner.buffers import BufferTable
from nexec.planner.steps import StepNumbering
from nexec.planner.verify import check_memory_plan
from nexec.planner.workspaces import workspace_buffers
from nexec.testing import array_arguments, count_allocations


@pytest.fixture
def toeplitz_modelled(monkeypatch):  # noqa: ANN001, ANN201
    """Plans as ``"auto"`` does before it measures: Toeplitz on the 2x2 map in inference
    (the cost model alone leaves Toeplitz to measurement), without measuring."""
    choice = algorithms.modelled_choice
    monkeypatch.setattr(algorithms, "modelled_choice",
                        lambda *args, **kwargs: choice(*args, **{**kwargs, "auto": True}))


def _small_maps(seed: int = 4) -> Model:
    """A 4x4 map of 64 channels (Winograd in inference) and a 2x2 map of 128 (Toeplitz)."""
    nexec.set_random_seed(seed)
    x = Input((4, 4, 64))
    a = layers.Conv2D(64, 3, padding="same", activation="relu", name="wino")(x)
    b = layers.Conv2D(128, 3, strides=2, padding="same", name="down")(a)
    c = layers.Conv2D(128, 3, padding="same", activation="relu", name="toep")(b)
    return Model(x, layers.Dense(3, activation="softmax", name="out")(layers.Flatten()(c)))


def _data(n: int = 11):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, 4, 4, 64)).astype(np.float32)
    return x, np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]


def _pair(jit_step=False):  # noqa: ANN001, ANN202
    """The model as the cost model plans it, and all-im2col with the same weights."""
    models = []
    for mode in ("model", "im2col"):
        with use_conv_algorithm(mode):
            m = _small_maps()
            m.compile(optimizer="sgd", loss="categorical_crossentropy", jit_step=jit_step)
        models.append(m)
    return models


def test_the_plan_chooses_toeplitz_on_the_2x2_map_in_inference_only(request):
    assert _small_maps().plan().algorithms(False)["toep"] == "im2col"  # the model alone
    request.getfixturevalue("toeplitz_modelled")  # as "auto" plans before measuring
    plan = _small_maps().plan()
    assert plan.algorithms(True) == {"wino": "im2col", "down": "im2col", "toep": "im2col"}
    assert plan.algorithms(False) == {"wino": "winograd", "down": "im2col",
                                      "toep": "toeplitz"}
    assert "algorithm: im2col (inference: toeplitz)" in plan.describe()


@pytest.mark.usefixtures("toeplitz_modelled")
def test_the_memory_plan_keeps_prepared_weights_through_every_step():
    model = _small_maps()
    memory = model.memory_plan(batch_size=4, training=False)
    rows = {b.name: b for b in memory.buffers}
    last = max(b.last_step for b in memory.buffers if b.offset >= 0)
    for name, shape in (("toep.T (prepared)", (2 * 2 * 128, 2 * 2 * 128)),
                        ("wino.U (prepared)", (16, 64, 64))):
        row = rows[name]
        assert row.role == "prepared" and row.shape == shape
        assert (row.first_step, row.last_step) == (0, last)
    check_memory_plan(memory)  # the independent checker: nothing overlaps them
    training = str(model.memory_plan(batch_size=4, training=True))
    assert "prepared" not in training and "toep.T" not in training


@pytest.mark.usefixtures("toeplitz_modelled")
@pytest.mark.parametrize("jit_step", [False, True])
def test_predict_matches_im2col_and_follows_every_change_of_the_weights(jit_step):
    prepared, plain = _pair(jit_step)
    x, y = _data()

    def agree() -> None:  # a tail batch of 3; twice, the second a repeated predict
        for _ in range(2):
            np.testing.assert_allclose(prepared.predict(x, batch_size=4, verbose=0),
                                       plain.predict(x, batch_size=4, verbose=0),
                                       rtol=1e-5, atol=1e-6)
        names = [fn.__name__ for fn, _ in
                 prepared._trainer.predictor.executor.program(4).calls["prepare"]]
        assert names[0].startswith("winograd_filter") and \
            names[1].startswith("conv2d_toeplitz_matrix")

    agree()
    for m in (prepared, plain):  # written in place, through the layer's array
        m.get_layer("toep").kernel[...] *= -0.5
        m.get_layer("wino").kernel[0, 0] += 1.0
    agree()
    weights = [w * 1.5 for w in plain.get_weights()]
    for m in (prepared, plain):
        m.set_weights(weights)
    agree()
    if jit_step:  # the compiled passes of predict are covered; training's are another test's
        return
    for m in (prepared, plain):  # the same training (im2col) for both: the same bits
        m.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(prepared.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
    agree()
    for m in (prepared, plain):
        m.train_on_batch(x[:4], y[:4])
    agree()
    np.testing.assert_allclose(prepared.evaluate(x, y, batch_size=4, verbose=0),
                               plain.evaluate(x, y, batch_size=4, verbose=0), rtol=1e-5)


@pytest.mark.usefixtures("toeplitz_modelled")
def test_steps_reuse_the_prepared_weights_and_a_change_remakes_them():
    """Zeros written into the Toeplitz matrix are read by the next step (nothing remade it:
    every image then gives the same output, its bias's), until the weights change."""
    prepared, _ = _pair()
    x, _ = _data(4)
    want = prepared.predict(x, batch_size=4, verbose=0)
    ex = prepared._trainer.predictor.executor
    prog = ex.program(4)
    (fn, args), = prog.calls["prepare"][1:]  # the Toeplitz matrix (the first: Winograd's U)
    assert fn.__name__.startswith("conv2d_toeplitz_matrix")
    args[-1][...] = 0

    def step() -> np.ndarray:
        with ex.lock:
            np.copyto(prog.inputs[0], x)
            ex.run_forward(prog)
            return prog.outputs[0].copy()

    stale = step()
    np.testing.assert_array_equal(stale, np.broadcast_to(stale[0], stale.shape))
    assert not np.allclose(stale, want)
    prepared._trainer.store.changed()
    np.testing.assert_array_equal(step(), want)
    assert prog.prepared == prepared._trainer.store.version


@pytest.mark.usefixtures("toeplitz_modelled")
def test_inference_steps_allocate_nothing():
    prepared, _ = _pair()
    x, _ = _data(8)
    prepared.predict(x, batch_size=4, verbose=0)
    ex = prepared._trainer.predictor.executor
    prog = ex.program(4)

    def steps(k: int) -> None:
        for _ in range(k):
            ex.run_forward(prog)

    steps(2)
    nrt, numpy_blocks = count_allocations(lambda: steps(2))
    assert nrt == 2 * array_arguments(prog)
    assert numpy_blocks == []


def test_the_cost_model_and_the_switch():
    choice = algorithms.modelled_choice
    assert choice(2, 2, 512, 512, training=False, toeplitz=True, auto=True) == "toeplitz"
    # the model alone does not take it: whether it pays depends on the machine's memory
    assert choice(2, 2, 512, 512, training=False, toeplitz=True) == "im2col"
    assert choice(2, 2, 512, 512, training=True, toeplitz=True, auto=True) == "im2col"
    assert choice(2, 2, 8, 8, training=False, toeplitz=True, auto=True) == "im2col"  # floor
    conv = layers.Conv2D(512, 3, padding="same")
    assert toeplitz_pays(conv, (2, 2, 512)) and toeplitz_pays(conv, (1, 1, 512))
    assert not toeplitz_pays(conv, (3, 3, 512)) and not toeplitz_pays(conv, (2, 3, 512))
    assert toeplitz_applies(conv, (2, 2, 512))
    wide = layers.Conv2D(2048, 3, padding="same")
    assert 4 * 2048 * 4 * 2048 * 4 > TOEPLITZ_MAX_BYTES and not toeplitz_applies(
        wide, (2, 2, 2048))
    assert algorithms.candidates(conv, 512, (2, 2, 512), training=False)[-1] == "toeplitz"
    assert "toeplitz" not in algorithms.candidates(conv, 512, (2, 2, 512), training=True)
    assert "toeplitz" not in algorithms.candidates(wide, 2048, (2, 2, 2048), training=False)
    # The cap counts the model's bytes: 2x2x1024 -> 1024 is 64 MiB in float32, 128 in float64.
    for dtype, want in (("float32", "toeplitz"), ("float64", "im2col")):
        nexec.set_random_seed(0)
        x = Input((2, 2, 1024), dtype=dtype)
        big = Model(x, layers.Conv2D(1024, 3, padding="same", name="big", dtype=dtype)(x))
        assert big.plan().algorithms(False) == {"big": "im2col"}
        with use_conv_algorithm("auto"):  # the plan's choice before the executor measures
            assert big.plan().algorithms(False) == {"big": want}
        assert toeplitz_applies(big.get_layer("big"), (2, 2, 1024),
                                np.dtype(dtype).itemsize) == (want == "toeplitz")
    model = _small_maps()
    with use_conv_algorithm("toeplitz"):  # forced: every layer in inference, none in training
        plan = model.plan()
    assert set(plan.algorithms(False).values()) == {"toeplitz"}
    assert set(plan.algorithms(True).values()) == {"im2col"}


def test_a_prepared_workspace_in_training_is_a_plugin_error():
    class Prepares(Kernel):
        layer_type = "Dense"

        def workspaces(self, layer, in_shapes, out_shape, batch, training,  # noqa: ANN001, ANN201
                       strided_output=False):  # noqa: ANN001
            return {"P": Workspace((3, 3), phase="prepared")}

    i = Input((3,))
    g = Model(i, layers.Dense(2, name="d")(i)).plan().graph
    names = {tid: f"t{tid}" for tid in g.tensors}

    def buffers(training: bool) -> dict:
        steps = StepNumbering(len(g.ops), training)
        table = BufferTable(g.dtype)
        for tid, t in g.tensors.items():
            table.add(names[tid], "activation", (4, *t.shape), 0, steps.count - 1)
        found = workspace_buffers(g, [Prepares()], steps, 4, names, names, table)
        return {k: table[v] for k, v in found[(0, "forward")].items()}

    with pytest.raises(PluginError, match="prepared workspace 'P' in training"):
        buffers(True)
    made = buffers(False)["P"]
    assert (made.role, made.shape, made.first, made.last) == ("prepared", (3, 3), 0, 0)


def test_auto_times_toeplitz_with_its_matrix_prepared_once(monkeypatch):
    """``"auto"``'s timing of one layer makes the matrix once, before it times the forward
    steps, and restores the layer's algorithm."""
    from nexec.plugins import registry
    from nexec.runtime import autotune

    kernel = registry().kernel("Conv2D", "cpu")
    made = []

    def prepare(call):  # noqa: ANN001, ANN202
        made.append(call.workspace["T"].shape)
        return type(kernel).prepare(kernel, call)

    monkeypatch.setattr(kernel, "prepare", prepare)
    conv = layers.Conv2D(8, 3, padding="same", name="tiny2x2")
    times = autotune.time_conv(conv, (2, 2, 6), 4, "float32", "toeplitz", False,
                               registry().device("cpu"), repeats=3)
    assert len(times) == 3 and all(t > 0 for t in times)
    assert made == [(2 * 2 * 6, 2 * 2 * 8)]
    assert algorithm_of(conv) == "im2col"


@pytest.mark.usefixtures("toeplitz_modelled")
def test_the_memory_picture_shows_prepared_weights_where_a_plan_has_them():
    from nexec.planner.picture import COLORS, memory_svg

    model = _small_maps()
    inference = memory_svg(model.memory_plan(batch_size=4, training=False))
    training = memory_svg(model.memory_plan(batch_size=4, training=True))
    assert f'fill="{COLORS["prepared"]}"' in inference and ">prepared</text>" in inference
    assert "toep.T (prepared) (prepared, 1,048,576 B" in inference  # the hover title
    assert "prepared" not in training
