"""Topological order: valid and deterministic, on hand-made and random DAGs."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nexec
from nexec import Input, Model, layers
from nexec.planner.order import topological_order

ACTIVATIONS = ["linear", "relu", "sigmoid", "tanh", "softmax"]


# ----- helpers ----------------------------------------------------------------------------
def reachable_nodes(outputs):
    """Every node the outputs depend on, by a plain graph walk (reference)."""
    seen, stack = {}, [t.node for t in outputs]
    while stack:
        node = stack.pop()
        if node.id in seen:
            continue
        seen[node.id] = node
        stack.extend(t.node for t in node.inputs)
    return seen


def assert_valid_order(order, outputs):
    position = {}
    for i, node in enumerate(order):
        assert node.id not in position, f"{node} appears twice"
        position[node.id] = i
    for node in order:
        for t in node.inputs:
            assert t.node.id in position, f"{node} reads {t.name}, whose node is missing"
            assert position[t.node.id] < position[node.id], \
                f"{node} comes before the node making its input {t.name}"
    assert set(position) == set(reachable_nodes(outputs))


def signature(order):
    return [(n.layer.name, [(t.node.layer.name, t.index) for t in n.inputs]) for n in order]


# ----- hand-made graphs -------------------------------------------------------------------
def test_chain_order_is_the_chain():
    nexec.clear_session()
    x = Input(shape=(3,))
    h = layers.Dense(4)(x)
    h = layers.Activation("relu")(h)
    y = layers.Dense(2)(h)
    order = topological_order([y])
    assert [n.layer.name for n in order] == ["input_layer", "dense", "activation", "dense_1"]


def test_diamond_visits_inputs_in_given_order():
    nexec.clear_session()
    x = Input(shape=(3,), name="x")
    left = layers.Dense(2, name="left")(x)
    right = layers.Dense(2, name="right")(x)
    out = layers.Add(name="add")([left, right])
    assert [n.layer.name for n in topological_order([out])] == ["x", "left", "right", "add"]
    out2 = layers.Add(name="add2")([right, left])
    assert [n.layer.name for n in topological_order([out2])] == ["x", "right", "left", "add2"]


def test_only_nodes_reaching_outputs_are_ordered():
    nexec.clear_session()
    x = Input(shape=(3,), name="x")
    used = layers.Dense(2, name="used")(x)
    layers.Dense(2, name="dead_end")(x)
    order = topological_order([used])
    assert [n.layer.name for n in order] == ["x", "used"]


def test_shared_node_appears_once_for_several_outputs():
    nexec.clear_session()
    x = Input(shape=(3,), name="x")
    h = layers.Dense(2, name="h")(x)
    a = layers.Activation("relu", name="a")(h)
    b = layers.Activation("tanh", name="b")(h)
    order = topological_order([a, b])
    assert [n.layer.name for n in order] == ["x", "h", "a", "b"]
    assert [n.layer.name for n in topological_order([b, a])] == ["x", "h", "b", "a"]
    assert_valid_order(order, [a, b])


def test_same_tensor_twice_as_input():
    nexec.clear_session()
    x = Input(shape=(3,), name="x")
    y = layers.Add(name="double")([x, x])
    order = topological_order([y])
    assert [n.layer.name for n in order] == ["x", "double"]


def test_deep_chain_does_not_hit_recursion_limit():
    import sys

    nexec.clear_session()
    depth = sys.getrecursionlimit() + 500
    x = Input(shape=(2,))
    y = x
    for _ in range(depth):
        y = layers.Activation("relu")(y)
    order = topological_order([y])
    assert len(order) == depth + 1
    assert order[0].layer.name == "input_layer"
    assert order[-1] is y.node
    model = Model(x, y)
    assert len(model.layers) == depth + 1
    assert len(model.plan().ops) == depth


# ----- random DAGs ------------------------------------------------------------------------
@st.composite
def dag_recipes(draw):
    """A DAG as data: inputs' widths, layer steps picking operands by index, outputs."""
    widths = draw(st.lists(st.sampled_from([2, 3, 4]), min_size=1, max_size=3))
    steps = draw(st.lists(
        st.tuples(st.sampled_from(["dense", "add", "concat", "activation"]),
                  st.lists(st.integers(0, 1000), min_size=1, max_size=3),
                  st.sampled_from([2, 3, 4]),
                  st.sampled_from(ACTIVATIONS)),
        min_size=1, max_size=14))
    outs = draw(st.lists(st.integers(0, 1000), min_size=1, max_size=3))
    return widths, steps, outs


def build(recipe):
    """Builds the recipe in a fresh session; returns the model and its raw inputs/outputs."""
    widths, steps, out_picks = recipe
    nexec.clear_session()
    inputs = [Input(shape=(w,)) for w in widths]
    pool = list(inputs)
    ancestry = {t.id: {i} for i, t in enumerate(inputs)}
    for kind, picks, units, act in steps:
        first = pool[picks[0] % len(pool)]
        if kind == "dense":
            srcs = [first]
            out = layers.Dense(units, activation=act)(first)
        elif kind == "activation":
            srcs = [first]
            out = layers.Activation(act)(first)
        elif kind == "add":
            same = [t for t in pool if t.shape == first.shape]
            srcs = [first] + ([same[p % len(same)] for p in picks[1:]] or [first])
            out = layers.Add()(srcs)
        else:
            srcs = [first] + ([pool[p % len(pool)] for p in picks[1:]] or [first])
            out = layers.Concatenate()(srcs)
        ancestry[out.id] = set().union(*(ancestry[t.id] for t in srcs))
        pool.append(out)
    made = pool[len(inputs):]
    outputs = []
    for p in out_picks:  # distinct tensors, in pick order
        t = made[p % len(made)]
        if t not in outputs:
            outputs.append(t)
    used = sorted(set().union(*(ancestry[t.id] for t in outputs)))
    model_inputs = [inputs[i] for i in used]
    return Model(model_inputs, outputs), model_inputs, outputs


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(dag_recipes())
def test_random_dag_order_is_valid(recipe):
    model, inputs, outputs = build(recipe)
    order = topological_order(outputs)
    assert_valid_order(order, outputs)
    # every output's node and every used input's node are in it
    ids = [n.id for n in order]
    assert all(t.node.id in ids for t in outputs)
    assert all(t.node.id in ids for t in inputs)
    # the model's layers follow the same order (first call of each layer)
    first_seen = []
    for n in order:
        if n.layer not in first_seen:
            first_seen.append(n.layer)
    assert model.layers == first_seen


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(dag_recipes())
def test_random_dag_order_is_deterministic(recipe):
    model_a, _, outs_a = build(recipe)
    names_a = [l.name for l in model_a.layers]
    sig_a = signature(topological_order(outs_a))
    model_b, _, outs_b = build(recipe)
    assert [l.name for l in model_b.layers] == names_a
    assert signature(topological_order(outs_b)) == sig_a
    # asking again on the same graph gives the very same nodes
    assert topological_order(outs_b) == topological_order(outs_b)
    assert str(model_a.plan()) == str(model_b.plan())


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(dag_recipes())
def test_random_dag_plan_is_consistent(recipe):
    model, inputs, outputs = build(recipe)
    order = topological_order(outputs)
    plan = model.plan()
    g = plan.graph
    # every layer call but the inputs is one op, or an activation fused into one
    calls = [n for n in order if n.inputs]
    fused = [name for op in plan.ops for name in op.fused]
    assert len(plan.ops) + len(fused) == len(calls)
    assert [op.index for op in plan.ops] == list(range(len(plan.ops)))
    available = set(g.inputs)
    for op in plan.ops:
        assert set(op.inputs) <= available, f"step {op.index} reads a value not made yet"
        assert g.tensors[op.output].producer == op.index
        available.add(op.output)
    assert set(g.outputs) <= available
    assert len(g.inputs) == len(inputs)
    assert [g.tensors[o].shape for o in g.outputs] == [t.feature_shape for t in outputs]
