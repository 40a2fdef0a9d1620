"""Integer inputs, the model dtype, the refusal of ``None`` dimensions, and masks on the
graph (``compute_mask``, ``supports_masking``) down to the planner."""
import os

import numpy as np
import pytest

from nexec import Input, Model, Sequential, layers, load_model
from nexec.errors import ShapeError
from nexec.ops.base import Kernel
from nexec.planner.buffers import BufferTable, tensor_names
from nexec.planner.liveness import value_buffers
from nexec.planner.lowering import lower
from nexec.planner.steps import StepNumbering


# ----- integer inputs ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["int32", "int64", np.int32])
def test_integer_inputs_are_accepted(dtype):
    x = Input(shape=(5,), dtype=dtype)
    assert x.dtype == np.dtype(dtype).name and x.shape == (None, 5)


@pytest.mark.parametrize("make", [lambda x: layers.Dense(2, name="d")(x),
                                  lambda x: layers.Flatten(name="d")(x),
                                  lambda x: layers.Add(name="d")([x, x])])
def test_a_float_layer_on_an_integer_tensor_names_layer_and_dtype(make):
    with pytest.raises(TypeError, match=r"'d' .*int64.*Embedding"):
        make(Input(shape=(5,), dtype="int64"))


def test_model_dtype_is_the_float_tensors():
    ids = Input(shape=(3,), dtype="int32", name="ids")
    feats = Input(shape=(2,), dtype="float64", name="feats")
    e = layers.Flatten()(layers.Embedding(5, 2, dtype="float64")(ids))
    model = Model([ids, feats], layers.Dense(1)(layers.Concatenate()([e, feats])))
    g = lower(model)
    assert g.dtype == "float64"
    assert [g.tensors[i].dtype for i in g.inputs] == ["int32", "float64"]
    only_ids = Model(ids, layers.Flatten()(layers.Embedding(5, 2)(ids)))
    assert lower(only_ids).dtype == "float32"


def test_integer_input_model_saves_and_loads(tmp_path):
    ids = Input(shape=(3,), dtype="int64", name="ids")
    model = Model(ids, layers.Flatten()(layers.Embedding(7, 2, name="emb")(ids)))
    path = os.path.join(tmp_path, "m.npz")
    model.save(path)
    again = load_model(path)
    assert again.inputs[0].dtype == "int64"
    x = np.array([[0, 6, 3]])
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


# ----- None in input shapes ----------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: Input(shape=(None, 8)),
                                  lambda: Input(shape=(None,), dtype="int32"),
                                  lambda: Sequential([layers.Dense(2, input_shape=(None, 4))])])
def test_none_in_an_input_shape_is_refused_saying_why(make):
    with pytest.raises(ShapeError, match=r"unknown dimension.*fixed length.*pad"):
        make()


# ----- masks -------------------------------------------------------------------------------------
class _PerStep(layers.Activation):
    """A stand-in for a layer that supports masking (passes the mask on)."""

    supports_masking = True


class _Consumer(layers.Activation):
    """A stand-in for a layer that consumes the mask (pooling over time)."""

    supports_masking = True
    consumes_mask = True

    def compute_mask(self, inputs, previous_mask):
        return None


def test_mask_zero_gives_the_ids_as_mask_source():
    ids = Input(shape=(4,), dtype="int32", name="ids")
    assert layers.Embedding(5, 2)(ids).mask is None
    e = layers.Embedding(5, 2, mask_zero=True)(ids)
    assert e.mask is ids
    passed = _PerStep("tanh")(e)
    assert passed.mask is ids
    assert _Consumer("tanh")(passed).mask is None


@pytest.mark.parametrize("make", [lambda: layers.Flatten(name="f"),
                                  lambda: layers.Conv1D(3, 2, name="f"),
                                  lambda: layers.GlobalMaxPooling1D(name="f")])
def test_a_layer_without_masking_drops_the_mask_with_keras_warning(make):
    ids = Input(shape=(4,), dtype="int32", name="ids")
    e = layers.Embedding(5, 2, mask_zero=True, name="emb")(ids)
    with pytest.warns(UserWarning, match=r"Layer 'f' \(of type \w+\) was passed an input "
                                         r"with a mask.*Downstream layers will not see"):
        assert make()(e).mask is None


def test_a_merge_passes_one_mask_on_and_ors_two():
    ids = Input(shape=(4,), dtype="int32")
    e = layers.Embedding(5, 2, mask_zero=True)(ids)
    f = layers.Embedding(5, 2)(ids)
    assert layers.Add(name="sum")([f, e]).mask is None  # Keras: an unmasked input, no mask
    same = layers.Embedding(5, 2, mask_zero=True)(ids)  # another Embedding of the same ids:
    assert layers.Add(name="sum2")([e, same]).mask is e.mask  # the same mask
    other_ids = Input(shape=(4,), dtype="int32")
    other = layers.Embedding(5, 2, mask_zero=True)(other_ids)
    ored = layers.Add(name="sum3")([e, other]).mask  # Keras: the OR, a MaskCombine tensor
    assert type(ored.node.layer).__name__ == "MaskCombine"
    assert ored.node.inputs == [ids, other_ids]


def test_the_planner_records_the_mask_and_keeps_the_ids_alive_until_backward():
    ids = Input(shape=(4,), dtype="int32", name="ids")
    e = layers.Embedding(5, 2, mask_zero=True, name="emb")(ids)
    h = _PerStep("tanh", name="step")(e)
    out = _Consumer("tanh", name="pool")(h)
    g = lower(Model(ids, out))
    by_name = {op.layer.name: op for op in g.ops}
    assert by_name["emb"].mask is None
    assert by_name["step"].mask is None  # passes the mask on without reading it
    assert by_name["pool"].mask == g.inputs[0]
    steps = StepNumbering(len(g.ops), True)
    kernels = [Kernel() for _ in g.ops]
    kernels[by_name["emb"].index] = type("NoSave", (Kernel,), {"saves_inputs": False})()
    table = BufferTable(g.dtype)
    value = value_buffers(g, kernels, steps, 2, tensor_names(g), table)
    ids_buf = table[value[g.inputs[0]]]
    assert ids_buf.dtype == "int32"
    # read as a mask by "pool": live until its backward step
    assert ids_buf.last == steps.backward(by_name["pool"].index)
    assert table[value[g.inputs[0]]].last == max(steps.backward(op.index) for op in g.ops
                                                  if op.mask is not None)
