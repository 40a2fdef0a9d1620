"""The memory planner: offsets, lifetimes, views, bounds, targets. Pure planning, no kernels run.

The overlap and bound checks here are written out in the tests on purpose: they must not share
code with ``nexec.planner.memory`` or ``nexec.planner.verify``.
"""
from __future__ import annotations

import copy
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nexec
from nexec import Input, Model, layers
from nexec.planner.algorithms import use_conv_algorithm
from nexec.planner.memory import assign_offsets
from nexec.planner.schedule import build_schedule
from nexec.planner.verify import MemoryPlanError
from nexec.plugins import registry
from tests.planner.conftest import (build_model, conv_inception, dag_recipes, dense_inception,
                                    inception_cnn, mlp, residual_stack)

ALIGN = 64
PERSISTENT = {"parameter", "parameter_gradient"}
RANDOM = settings(max_examples=25, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture,
                                         HealthCheck.too_slow])


def aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def overlaps(a_lo: int, a_hi: int, b_lo: int, b_hi: int) -> bool:
    """Half-open byte ranges [lo, hi) share a byte."""
    return a_lo < b_hi and b_lo < a_hi


def lives_together(a_first: int, a_last: int, b_first: int, b_last: int) -> bool:
    """Inclusive step ranges share a step."""
    return a_first <= b_last and b_first <= a_last


# ----- assign_offsets on random blocks --------------------------------------------------------
blocks_st = st.lists(
    st.tuples(st.integers(0, 5000), st.integers(0, 30), st.integers(0, 10))
    .map(lambda t: (t[0], t[1], t[1] + t[2])),  # (nbytes, first, last >= first)
    max_size=40)


@settings(max_examples=300, deadline=None)
@given(blocks_st)
def test_assign_offsets_never_overlaps_live_blocks(blocks):
    offsets = assign_offsets(blocks, ALIGN)
    assert len(offsets) == len(blocks)
    for off in offsets:
        assert off >= 0 and off % ALIGN == 0, offsets
    for i, (n1, f1, l1) in enumerate(blocks):
        for j in range(i + 1, len(blocks)):
            n2, f2, l2 = blocks[j]
            if n1 and n2 and lives_together(f1, l1, f2, l2):
                assert not overlaps(offsets[i], offsets[i] + n1, offsets[j], offsets[j] + n2), \
                    f"blocks {i} {blocks[i]} at {offsets[i]} and {j} {blocks[j]} at {offsets[j]}"
    # The arena can never be smaller than what is live at the busiest step.
    arena = max((o + n for o, (n, _, _) in zip(offsets, blocks)), default=0)
    arena_aligned = max((o + aligned(n) for o, (n, _, _) in zip(offsets, blocks)), default=0)
    steps = range(max((l for _, _, l in blocks), default=-1) + 1)
    live = [sum(n for n, f, l in blocks if f <= s <= l) for s in steps]
    live_aligned = [sum(aligned(n) for n, f, l in blocks if f <= s <= l) for s in steps]
    assert arena >= max(live, default=0)
    assert arena_aligned >= max(live_aligned, default=0)
    assert assign_offsets(list(blocks), ALIGN) == offsets  # deterministic


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 5000), min_size=1, max_size=20))
def test_assign_offsets_reuses_memory_of_dead_blocks(sizes):
    # Lifetimes one after another: everything fits in the largest block.
    sequential = [(n, k, k) for k, n in enumerate(sizes)]
    offsets = assign_offsets(sequential, ALIGN)
    assert offsets == [0] * len(sizes)
    # All alive at one step: packed end to end, no gaps.
    together = [(n, 0, 3) for n in sizes]
    offsets = assign_offsets(together, ALIGN)
    assert max(o + aligned(n) for o, n in zip(offsets, sizes)) == sum(aligned(n) for n in sizes)


def test_assign_offsets_with_other_alignment():
    offsets = assign_offsets([(10, 0, 1), (10, 1, 2), (10, 2, 3)], alignment=16)
    assert all(o % 16 == 0 for o in offsets)
    assert sorted(offsets[:2]) == [0, 16] and sorted(offsets[1:]) in ([0, 16], [16, 32])


# ----- whole plans: an independent check ------------------------------------------------------
def check_plan(plan) -> None:
    """Everything a sound memory plan must satisfy, checked without the library's checker."""
    by_name = {b.name: b for b in plan.buffers}
    assert len(by_name) == len(plan.buffers), "two records with one name"
    step_bufs = [b for b in plan.buffers if b.role not in PERSISTENT]
    for b in plan.buffers:
        if b.role in PERSISTENT:
            assert b.offset == -1 and b.view_of is None, b
    for b in step_bufs:
        assert 0 <= b.first_step <= b.last_step < plan.steps, b
        assert b.offset >= 0, f"{b.name} has no offset"
    roots = [b for b in step_bufs if b.view_of is None]
    for b in roots:
        assert b.offset % ALIGN == 0, f"{b.name} at {b.offset}"
        assert b.offset + b.nbytes <= plan.arena_bytes, \
            f"{b.name} [{b.offset}, {b.offset + b.nbytes}) leaves the arena {plan.arena_bytes}"
    for i, a in enumerate(roots):
        for b in roots[i + 1:]:
            if a.nbytes and b.nbytes and lives_together(a.first_step, a.last_step,
                                                        b.first_step, b.last_step):
                assert not overlaps(a.offset, a.offset + a.nbytes, b.offset, b.offset + b.nbytes), \
                    (f"{a.name} [{a.offset}, +{a.nbytes}) steps {a.first_step}..{a.last_step} "
                     f"and {b.name} [{b.offset}, +{b.nbytes}) steps {b.first_step}..{b.last_step}")
    for v in step_bufs:
        if v.view_of is None:
            continue
        root, seen = v, set()
        while root.view_of is not None:
            assert root.name not in seen, f"view cycle through {root.name}"
            seen.add(root.name)
            root = by_name[root.view_of]
        assert root.role not in PERSISTENT
        assert v.offset == root.offset, f"view {v.name} not at its root {root.name}'s offset"
        assert v.nbytes <= root.nbytes, f"view {v.name} larger than {root.name}"
        assert root.first_step <= v.first_step and v.last_step <= root.last_step, \
            f"view {v.name} {v.first_step}..{v.last_step} outside {root.name} " \
            f"{root.first_step}..{root.last_step}"
    # Bounds: the lower bound is the busiest step's (aligned) live bytes.
    live = [0] * plan.steps
    for b in roots:
        for s in range(b.first_step, b.last_step + 1):
            live[s] += aligned(b.nbytes)
    assert plan.lower_bound_bytes == max(live)
    assert plan.lower_bound_bytes <= plan.arena_bytes
    assert plan.arena_bytes <= sum(aligned(b.nbytes) for b in roots)


def check_schedule(s) -> None:
    """Views are well-formed slices/reshapes, and every buffer is live whenever it is used."""
    g = s.plan.graph
    bufs = s.buffers

    def root(name):
        while bufs[name].view_of is not None:
            name = bufs[name].view_of
        return bufs[name]

    for b in bufs.values():
        if b.view_of is None:
            continue
        parent = bufs[b.view_of]
        if b.view[0] == "reshape":
            assert b.nbytes == parent.nbytes and b.dtype == parent.dtype, b
        else:
            _, axis, lo, hi = b.view
            assert 0 <= lo < hi <= parent.shape[axis], b
            want = list(parent.shape)
            want[axis] = hi - lo
            assert tuple(want) == b.shape, (b, parent)

    def live_at(name, step, why):
        r = root(name)
        assert r.first <= step <= r.last, \
            f"{name} (root {r.name}, live {r.first}..{r.last}) used at step {step} ({why})"

    kernels = {op.index: registry().kernel(op.kind, s.plan.device) for op in g.ops}
    for op in g.ops:
        for i in op.inputs:
            live_at(s.value[i], op.index, f"read by {op.layer.name}")
        live_at(s.value[op.output], op.index, f"written by {op.layer.name}")
        for name in s.workspaces.get((op.index, "forward"), {}).values():
            live_at(name, op.index, f"forward workspace of {op.layer.name}")
    for out in g.outputs:
        live_at(s.value[out], s.n - 1 if not s.training else s.n, "model output")
    if not s.training:
        return
    for op in g.ops:
        step = s.backward_step(op.index)
        k = kernels[op.index]
        if op.output in s.grad:
            live_at(s.grad[op.output], step, f"d_output of {op.layer.name}")
        if k.saves_output:
            live_at(s.value[op.output], step, f"output saved by {op.layer.name}")
        for j, i in enumerate(op.inputs):
            if k.saves_inputs:
                live_at(s.value[i], step, f"input saved by {op.layer.name}")
            if (op.index, j) in s.contributions:
                live_at(s.contributions[(op.index, j)], step, f"contribution of {op.layer.name}")
                live_at(s.grad[i], step, f"accumulated by {op.layer.name}")
            elif i in s.grad:
                live_at(s.grad[i], step, f"d_input written by {op.layer.name}")
        for name in s.workspaces.get((op.index, "backward"), {}).values():
            live_at(name, step, f"backward workspace of {op.layer.name}")
    for out in g.outputs:
        live_at(s.grad[out], s.n, "loss gradient")


@RANDOM
@given(dag_recipes(), st.sampled_from([1, 3, 16]), st.sampled_from(["float32", "float64"]))
def test_random_models_have_sound_plans(recipe, batch, dtype):
    model = build_model(recipe, dtype)
    for training in (True, False):
        plan = model.memory_plan(batch, training)
        plan.verify()
        check_plan(plan)
        s = build_schedule(model.plan(), batch, training)
        check_schedule(s)
        naive = build_schedule(model.plan(), batch, training, naive=True).memory
        check_plan(naive)
        assert naive.concat_in_place == []
        assert plan.arena_bytes <= naive.arena_bytes
        text = str(plan)
        assert all(b.name[:40] in text for b in plan.buffers)
        assert f"arena {plan.arena_bytes:,} B" in text


@RANDOM
@given(dag_recipes(max_ops=5, final_concat=True), st.booleans())
def test_random_final_concat_is_planned_in_place(recipe, training):
    model = build_model(recipe)
    plan = model.memory_plan(4, training)
    check_plan(plan)
    check_schedule(build_schedule(model.plan(), 4, training))
    cat = f"op{len(recipe[1]) - 1}_concatenate"
    assert cat in plan.concat_in_place
    recs = {b.name: b for b in plan.buffers}
    branches = [b for b in plan.buffers if b.view_of == cat]
    assert len(branches) == len(recipe[1][-1][1])
    assert sum(b.nbytes for b in branches) == recs[cat].nbytes
    if training:
        assert all(recs[f"grad {b.name}"].view_of == f"grad {cat}" for b in branches)


@RANDOM
@given(dag_recipes())
def test_random_models_arena_at_most_naive_bytes_at_realistic_batch(recipe):
    # At batch 64 and 128 every float32 buffer is a multiple of 64 B: no alignment padding.
    model = build_model(recipe)
    for batch, training in [(64, True), (64, False), (128, True), (128, False)]:
        plan = model.memory_plan(batch, training)
        assert plan.lower_bound_bytes <= plan.arena_bytes
        assert plan.arena_bytes <= plan.naive_bytes


def test_zero_byte_buffers_take_no_arena_space():
    i = Input(shape=(6, 6, 1))
    with use_conv_algorithm("im2col"):  # a 1x1 im2col has an empty column matrix
        plan = Model(i, layers.Conv2D(1, 1, padding="same")(i)).memory_plan(64, True)
    assert any(b.nbytes == 0 for b in plan.buffers)
    assert plan.arena_bytes <= plan.naive_bytes
    assert plan.arena_bytes == plan.lower_bound_bytes


def test_naive_bytes_is_at_least_the_arena_for_tiny_buffers():
    i = Input(shape=(1,))
    model = Model(i, layers.Dense(1)(i))
    for training in (True, False):
        plan = model.memory_plan(1, training)
        assert plan.lower_bound_bytes <= plan.arena_bytes <= plan.naive_bytes


def _corruptions(plan):
    """(description, corrupted copy) pairs, each of which a checker must reject."""
    out = []
    roots = [b for b in plan.buffers
             if b.role not in PERSISTENT and b.view_of is None and b.nbytes > 0]
    pairs = [(a, b) for a in roots for b in roots
             if a is not b and lives_together(a.first_step, a.last_step,
                                              b.first_step, b.last_step)]
    if pairs:
        a, b = pairs[len(pairs) // 2]
        bad = copy.deepcopy(plan)
        next(r for r in bad.buffers if r.name == b.name).offset = a.offset
        out.append((f"{b.name} moved onto {a.name}", bad))
    if roots:
        bad = copy.deepcopy(plan)
        r = next(r for r in bad.buffers if r.name == roots[-1].name)
        r.offset += 8
        out.append((f"{r.name} misaligned", bad))
        bad = copy.deepcopy(plan)
        bad.arena_bytes = max(b.offset + b.nbytes for b in roots) - 1
        out.append(("arena too small", bad))
    views = [b for b in plan.buffers if b.view_of is not None]
    if views:
        bad = copy.deepcopy(plan)
        v = next(r for r in bad.buffers if r.name == views[0].name)
        top = v
        while top.view_of is not None:
            top = next(r for r in bad.buffers if r.name == top.view_of)
        v.last_step = top.last_step + 1
        out.append((f"view {v.name} outlives its memory", bad))
    return out


@RANDOM
@given(dag_recipes(), st.booleans())
def test_verify_rejects_corrupted_plans(recipe, training):
    plan = build_model(recipe).memory_plan(4, training)
    plan.verify()
    for what, bad in _corruptions(plan):
        with pytest.raises(MemoryPlanError):
            bad.verify()
            pytest.fail(f"verify() accepted a plan with {what}")
        with pytest.raises(AssertionError):  # and the tests' own checker agrees
            check_plan(bad)


def test_verify_rejects_two_live_buffers_sharing_bytes():
    i = Input(shape=(8,))
    h = layers.Dense(8, activation="relu", name="h")(i)
    model = Model(i, layers.Dense(4, name="out")(h))
    plan = model.memory_plan(16, True)
    plan.verify()
    bad = copy.deepcopy(plan)
    recs = {b.name: b for b in bad.buffers}
    recs["h"].offset = recs["input_layer"].offset  # both live at step 0
    with pytest.raises(MemoryPlanError, match="overlaps"):
        bad.verify()


# ----- hand-made graphs: known shapes of the plan ----------------------------------------------
def test_chain_reuses_memory_in_inference():
    i = Input(shape=(100,))
    x = i
    for k in range(10):
        x = layers.Dense(100, activation="relu", name=f"d{k}")(x)
    plan = Model(i, x).memory_plan(32, training=False)
    check_plan(plan)
    block = 32 * 100 * 4
    # Only an op's input and output are ever live together.
    assert plan.lower_bound_bytes == 2 * aligned(block)
    assert plan.arena_bytes == 2 * aligned(block)
    assert plan.naive_bytes == 11 * block


def test_flatten_is_a_view_in_both_directions():
    i = Input(shape=(2, 3, 4))
    h = layers.Flatten(name="flat")(layers.Activation("relu", name="act")(i))
    plan = Model(i, layers.Dense(2, name="out")(h)).memory_plan(5, True)
    recs = {b.name: b for b in plan.buffers}
    assert recs["flat"].view_of == "act"
    assert recs["grad act"].view_of == "grad flat"
    check_plan(plan)


INCEPTIONS = [pytest.param(dense_inception, id="dense"),
              pytest.param(conv_inception, id="conv")]


@pytest.mark.parametrize("make", INCEPTIONS)
@pytest.mark.parametrize("training", [True, False])
def test_inception_concat_is_in_place(make, training):
    plan = make().memory_plan(8, training)
    check_plan(plan)
    plan.verify()
    assert plan.concat_in_place == ["cat"]
    recs = {b.name: b for b in plan.buffers}
    for branch in ("b1", "b2", "b3"):
        assert recs[branch].view_of == "cat"
        if training:
            assert recs[f"grad {branch}"].view_of == "grad cat"
    assert "concatenated in place: cat" in str(plan)
    # The in-place plan needs no more memory than the copying one.
    naive = build_schedule(make().plan(), 8, training, naive=True).memory
    assert plan.arena_bytes <= naive.arena_bytes


@pytest.mark.parametrize("make", INCEPTIONS)
@pytest.mark.parametrize("why", ["also_read", "as_output"])
@pytest.mark.parametrize("training", [True, False])
def test_concat_not_in_place_when_a_branch_is_needed_elsewhere(make, why, training):
    plan = make(**{why: True}).memory_plan(8, training)
    check_plan(plan)
    plan.verify()
    assert plan.concat_in_place == []
    recs = {b.name: b for b in plan.buffers}
    assert all(recs[b].view_of is None for b in ("b1", "b2", "b3"))
    assert "concatenated in place" not in str(plan)


def test_concat_of_one_tensor_twice_and_of_an_input_is_not_in_place():
    i = Input(shape=(4,), name="x")
    h = layers.Dense(3, name="h")(i)
    plan = Model(i, layers.Dense(2)(layers.Concatenate(name="c1")([h, h]))).memory_plan(4)
    assert plan.concat_in_place == []
    check_plan(plan)
    nexec.clear_session()
    i = Input(shape=(4,), name="x")
    h = layers.Dense(3, name="h")(i)
    plan = Model(i, layers.Dense(2)(layers.Concatenate(name="c2")([h, i]))).memory_plan(4)
    assert plan.concat_in_place == []
    check_plan(plan)


def test_shared_layer_called_twice_on_one_tensor_plans():
    i = Input(shape=(3,))
    h = layers.Dense(3, name="h")(i)
    d = layers.Dense(2, name="d")
    model = Model(i, [d(h), d(h), layers.Dense(1, name="e")(h)])
    plan = model.memory_plan(4, True)
    check_plan(plan)


@pytest.mark.parametrize("training", [True, False])
def test_plot_writes_a_picture(tmp_path, training):
    plan = dense_inception().memory_plan(8, training)
    path = tmp_path / "memory.png"
    plan.plot(str(path))
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


# ----- the benchmark models: targets at batch 128 ---------------------------------------------
BENCHMARKS = {
    "seed_mlp": lambda: mlp(64, [32, 32], 10),
    "wide_mlp": lambda: mlp(784, [512, 512], 10),
    "cnn": inception_cnn,
    "residual20": lambda: residual_stack(20),
}


def _bench(name):
    return pytest.param(name, id=name)


@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("name", [_bench(n) for n in BENCHMARKS])
def test_benchmark_arena_within_5_percent_of_lower_bound(name, training):
    plan = BENCHMARKS[name]().memory_plan(128, training)
    plan.verify()
    check_plan(plan)
    assert plan.arena_bytes <= 1.05 * plan.lower_bound_bytes, \
        f"{name}: arena {plan.arena_bytes:,} B > 1.05 x lower bound {plan.lower_bound_bytes:,} B"
    assert plan.arena_bytes <= plan.naive_bytes


@pytest.mark.parametrize("name", [_bench("cnn"), _bench("residual20")])
def test_benchmark_training_arena_at_most_half_of_naive(name):
    plan = BENCHMARKS[name]().memory_plan(128, True)
    assert plan.arena_bytes <= 0.5 * plan.naive_bytes, \
        f"{name}: arena {plan.arena_bytes:,} B > 0.5 x naive {plan.naive_bytes:,} B"


def test_benchmark_cnn_concat_is_in_place():
    plan = inception_cnn().memory_plan(128, True)
    assert plan.concat_in_place == ["inception"]
    recs = {b.name: b for b in plan.buffers}
    for branch in ("branch_1x1", "branch_3x3", "branch_5x5"):
        assert recs[branch].view_of == "inception"
        assert recs[f"grad {branch}"].view_of == "grad inception"


# ----- planning time ----------------------------------------------------------------------
def _chain(layers_n: int) -> Model:
    i = Input(shape=(64,))
    x = i
    for _ in range(layers_n):
        x = layers.Dense(64, activation="relu")(x)
    return Model(i, x)


@pytest.mark.parametrize("make", [pytest.param(lambda: residual_stack(50), id="50_residual_blocks"),
                                  pytest.param(lambda: _chain(200), id="200_dense_chain")])
def test_planning_200_layers_is_fast(make):
    model = make()
    assert len(model.layers) >= 200
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        model.plan()
        plan = model.memory_plan(128, True)
        best = min(best, time.perf_counter() - t0)
    plan.verify()
    assert best < 1.0, f"planning {len(model.layers)} layers took {best:.3f} s"

