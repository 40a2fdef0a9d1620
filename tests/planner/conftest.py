"""Shared pieces of the memory-planner tests: random DAG models and the benchmark models.

A random model is described by a *recipe* (plain tuples, so Hypothesis prints and shrinks it)
and built by :func:`build_model`. Recipes use Dense, Conv2D ('same', stride 1, so every image
keeps its H x W and Add/Concatenate shapes match), Add, Concatenate(axis=-1), Activation,
Flatten and re-calls of a Dense layer (shared weights); 1-3 Inputs and 1-3 distinct outputs.
"""
from __future__ import annotations


from hypothesis import strategies as st

import nexec
from nexec import Input, Model, layers

ACTIVATIONS = [None, "relu", "tanh", "sigmoid", "softmax"]
IMAGE = (6, 6)  # H x W of every image tensor of a random model




# ----- random DAG recipes ---------------------------------------------------------------------
# A recipe is (inputs, ops, outputs):
#   inputs:  feature shapes, (F,) or (H, W, C)
#   ops:     each makes one new tensor (numbered after the inputs), one of
#            ("Dense", src, units, act) ("Conv2D", src, filters, k, act) ("Flatten", src)
#            ("Activation", src, act) ("Add", (srcs...), act) ("Concatenate", (srcs...))
#            ("Shared", op_index_of_a_Dense, src)
#   outputs: distinct tensor numbers (never an Input)


def _is_image(shape: tuple) -> bool:
    return len(shape) == 3


@st.composite
def dag_recipes(draw, max_ops: int = 8, conv: bool | None = None, final_concat: bool = False):
    """Random DAG models; ``conv=None`` uses images when the conv kernels exist.

    ``final_concat`` ends the model with a Concatenate of 2-3 fresh branches that nothing
    else reads, so that concat is always planned in place.
    """
    conv = True if conv is None else conv
    shapes: list[tuple] = []
    inputs = []
    for _ in range(draw(st.integers(1, 3))):
        if conv and draw(st.integers(0, 2)):
            shape = (*IMAGE, draw(st.integers(1, 3)))
        else:
            shape = (draw(st.integers(1, 5)),)
        inputs.append(shape)
        shapes.append(shape)
    ops: list[tuple] = []
    dense_ops: dict[int, tuple] = {}  # op index -> (in features, units)
    calls: dict[int, set] = {}  # Dense op index -> tensors it was called on
    n_in = len(inputs)

    def emit(op: tuple, shape: tuple) -> int:
        ops.append(op)
        shapes.append(shape)
        return len(shapes) - 1

    avoid: set[int] = set()  # tensors pick() must not return (the final concat's branches)

    def pick(pred=lambda s: True) -> int | None:
        cands = [i for i, s in enumerate(shapes) if pred(s) and i not in avoid]
        if not cands:
            return None
        # Bias toward recent tensors so graphs get deep, not only wide.
        back = draw(st.integers(0, len(cands) - 1))
        return cands[len(cands) - 1 - back]

    def flat_src() -> int:
        i = pick()
        if _is_image(shapes[i]):
            i = emit(("Flatten", i), (shapes[i][0] * shapes[i][1] * shapes[i][2],))
        return i

    def project(like: tuple) -> int:
        """A new tensor of shape ``like`` computed from some other tensor."""
        act = draw(st.sampled_from(ACTIVATIONS))
        if _is_image(like):
            src = pick(_is_image)
            k = draw(st.sampled_from([1, 3]))
            return emit(("Conv2D", src, like[2], k, act), like)
        src = flat_src()
        dense_ops[len(ops)] = (shapes[src][0], like[0])
        calls[len(ops)] = {src}
        return emit(("Dense", src, like[0], act), like)

    # Repeats weight the choice toward the ops the memory planner treats specially.
    kinds = ["Dense", "Dense", "Activation", "Flatten", "Add", "Add", "Concatenate",
             "Concatenate", "Concatenate", "Shared"]
    if conv:
        kinds += ["Conv2D", "Conv2D", "Conv2D"]
    for _ in range(draw(st.integers(1, max_ops))):
        kind = draw(st.sampled_from(kinds))
        if kind == "Conv2D" and not any(_is_image(s) for s in shapes):
            kind = "Dense"
        if kind == "Shared":
            src = pick(lambda s: not _is_image(s))
            # Never the same tensor twice through one layer: that trips a known planner bug
            # (test_memory.py::test_shared_layer_called_twice_on_one_tensor_plans).
            usable = [j for j, (fin, _) in dense_ops.items()
                      if src is not None and shapes[src] == (fin,) and src not in calls[j]]
            if not usable:
                kind = "Dense"
            else:
                j = draw(st.sampled_from(usable))
                calls[j].add(src)
                emit(("Shared", j, src), (dense_ops[j][1],))
                continue
        if kind == "Dense":
            src = flat_src()
            units = draw(st.integers(1, 6))
            dense_ops[len(ops)] = (shapes[src][0], units)
            calls[len(ops)] = {src}
            emit(("Dense", src, units, draw(st.sampled_from(ACTIVATIONS))), (units,))
        elif kind == "Conv2D":
            src = pick(_is_image)
            f = draw(st.integers(1, 4))
            k = draw(st.sampled_from([1, 3, 5]))
            emit(("Conv2D", src, f, k, draw(st.sampled_from(ACTIVATIONS))), (*IMAGE, f))
        elif kind == "Flatten":
            src = pick()
            s = shapes[src]
            emit(("Flatten", src), (s[0] * s[1] * s[2],) if _is_image(s) else s)
        elif kind == "Activation":
            src = pick()
            act = draw(st.sampled_from(["linear", "relu", "tanh", "sigmoid", "softmax"]))
            emit(("Activation", src, act), shapes[src])
        elif kind == "Add":
            first = pick()
            like = shapes[first]
            srcs = [first]
            for _ in range(draw(st.integers(1, 2))):
                same = [i for i, s in enumerate(shapes) if s == like]
                if draw(st.booleans()):
                    srcs.append(project(like))
                else:  # an existing tensor of that shape (maybe ``first`` itself again)
                    srcs.append(same[len(same) - 1 - draw(st.integers(0, len(same) - 1))])
            emit(("Add", tuple(srcs), draw(st.sampled_from(ACTIVATIONS))), like)
        else:  # Concatenate on the last axis
            # Fresh single-reader branches (what an in-place concat needs) or existing tensors.
            first = pick()
            like = shapes[first]
            if draw(st.integers(0, 3)):
                first = project((*like[:-1], draw(st.integers(1, 4))))
            srcs = [first]
            for _ in range(draw(st.integers(1, 2))):
                same_kind = [i for i, s in enumerate(shapes) if len(s) == len(like)]
                if draw(st.integers(0, 3)):
                    srcs.append(project((*like[:-1], draw(st.integers(1, 4)))))
                else:
                    srcs.append(same_kind[len(same_kind) - 1
                                          - draw(st.integers(0, len(same_kind) - 1))])
            width = sum(shapes[i][-1] for i in srcs)
            emit(("Concatenate", tuple(srcs)), (*like[:-1], width))
    branches: list[int] = []
    if final_concat:
        like = shapes[pick()]
        for _ in range(draw(st.integers(2, 3))):
            branches.append(project((*like[:-1], draw(st.integers(1, 4)))))
            avoid.add(branches[-1])
        width = sum(shapes[i][-1] for i in branches)
        emit(("Concatenate", tuple(branches)), (*like[:-1], width))
    last = len(shapes) - 1
    others = [i for i in range(n_in, last) if i not in branches]
    extra = draw(st.lists(st.sampled_from(others), max_size=2, unique=True)) if others else []
    return tuple(inputs), tuple(ops), (last, *extra)


def build_model(recipe, dtype: str = "float32") -> Model:
    """The model of a recipe, with fresh names and seeded weights (same recipe, same model)."""
    nexec.clear_session()
    nexec.set_random_seed(7)
    inputs, ops, outputs = recipe
    tensors = [Input(shape=s, dtype=dtype, name=f"in{k}") for k, s in enumerate(inputs)]
    made: dict[int, object] = {}
    for j, op in enumerate(ops):
        kind, name = op[0], f"op{j}_{op[0].lower()}"
        if kind == "Dense":
            layer = made[j] = layers.Dense(op[2], activation=op[3], name=name)
            t = layer(tensors[op[1]])
        elif kind == "Shared":
            t = made[op[1]](tensors[op[2]])
        elif kind == "Conv2D":
            t = layers.Conv2D(op[2], op[3], padding="same", activation=op[4],
                              name=name)(tensors[op[1]])
        elif kind == "Flatten":
            t = layers.Flatten(name=name)(tensors[op[1]])
        elif kind == "Activation":
            t = layers.Activation(op[2], name=name)(tensors[op[1]])
        elif kind == "Add":
            t = layers.Add(name=name)([tensors[i] for i in op[1]])
            if op[2] is not None:  # Add takes no activation: a separate (fusable) layer
                t = layers.Activation(op[2], name=f"{name}_act")(t)
        elif kind == "Concatenate":
            t = layers.Concatenate(axis=-1, name=name)([tensors[i] for i in op[1]])
        else:  # pragma: no cover
            raise AssertionError(kind)
        tensors.append(t)
    outs = [tensors[i] for i in outputs]
    used = _ancestor_inputs(outs)
    ins = [t for t in tensors[:len(inputs)] if id(t) in used]
    return Model(ins, outs, name="random_dag")


def _ancestor_inputs(outputs) -> set[int]:
    """ids of the Input tensors the outputs depend on (a plain graph walk)."""
    found, seen, stack = set(), set(), [t.node for t in outputs]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if not node.inputs:
            found.update(id(t) for t in node.outputs)
        stack.extend(t.node for t in node.inputs)
    return found


# ----- Inception-like blocks (branches concatenated on the channel axis) ---------------------
def dense_inception(dtype="float32", *, also_read=False, as_output=False):
    i = Input(shape=(6,), dtype=dtype, name="x")
    s = layers.Dense(8, activation="relu", name="stem")(i)
    b1 = layers.Dense(3, activation="relu", name="b1")(s)
    b2 = layers.Dense(4, name="b2")(layers.Dense(5, activation="tanh", name="r2")(s))
    b3 = layers.Activation("sigmoid", name="b3")(layers.Add(name="add3")([s, s]))
    m = layers.Concatenate(name="cat")([b1, b2, b3])
    out = layers.Dense(3, activation="softmax", name="out")(m)
    outs = [out]
    if also_read:
        outs.append(layers.Dense(2, name="spy")(b2))
    if as_output:
        outs.append(b2)
    return Model(i, outs)


def conv_inception(dtype="float32", *, also_read=False, as_output=False):
    i = Input(shape=(6, 6, 3), dtype=dtype, name="x")

    def conv(f, k, act="relu", name=None):
        return layers.Conv2D(f, k, padding="same", activation=act, name=name)

    s = conv(4, 3, name="stem")(i)
    b1 = conv(4, 1, name="b1")(s)
    b2 = conv(3, 3, act=None, name="b2")(conv(2, 1, name="r2")(s))
    b3 = conv(2, 5, name="b3")(conv(2, 1, name="r3")(s))
    m = layers.Concatenate(name="cat")([b1, b2, b3])
    out = layers.Dense(3, activation="softmax", name="out")(layers.Flatten(name="flat")(m))
    outs = [out]
    if also_read:
        outs.append(layers.Dense(2, name="spy")(layers.Flatten(name="flat2")(b2)))
    if as_output:
        outs.append(b2)
    return Model(i, outs)


# ----- the benchmark models -------------------------------------------------------------------
def mlp(features: int, hidden: list[int], classes: int, dtype: str = "float32") -> Model:
    i = Input(shape=(features,), dtype=dtype)
    x = i
    for h in hidden:
        x = layers.Dense(h, activation="relu")(x)
    return Model(i, layers.Dense(classes, activation="softmax")(x))


def inception_cnn(image=(32, 32, 3), classes: int = 10, dtype: str = "float32") -> Model:
    """Conv stem, Inception block (concat), stride-2 conv, residual block, conv, dense."""
    i = Input(shape=image, dtype=dtype)

    def conv(f, k, s=1, act="relu", name=None):
        return layers.Conv2D(f, k, strides=s, padding="same", activation=act, name=name)

    s = conv(32, 3, name="stem")(i)
    b1 = conv(32, 1, name="branch_1x1")(s)
    b3 = conv(32, 3, name="branch_3x3")(conv(24, 1, name="reduce_3x3")(s))
    b5 = conv(16, 5, name="branch_5x5")(conv(8, 1, name="reduce_5x5")(s))
    m = layers.Concatenate(name="inception")([b1, b3, b5])
    d = conv(64, 3, 2)(m)
    r = conv(64, 3, act=None)(conv(64, 3)(d))
    d = layers.Activation("relu")(layers.Add()([d, r]))
    d = conv(64, 3, 2)(d)
    return Model(i, layers.Dense(classes, activation="softmax")(layers.Flatten()(d)))


def residual_stack(blocks: int, width: int = 256, classes: int = 10,
                   dtype: str = "float32") -> Model:
    i = Input(shape=(width,), dtype=dtype)
    x = i
    for _ in range(blocks):
        h = layers.Dense(width, activation="relu")(x)
        h = layers.Dense(width)(h)
        x = layers.Activation("relu")(layers.Add()([x, h]))
    return Model(i, layers.Dense(classes, activation="softmax")(x))
