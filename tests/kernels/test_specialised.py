"""Kernels specialised for an activation (``nexec.kernels.jit.specialised``): compiled with
the code as a constant, they compile only that activation's helpers and give the generic
kernel's bits; the generic kernel is used wherever it is already compiled or cached.
"""
from __future__ import annotations

import importlib
import sys
import textwrap

import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers
from nexec.kernels import jit
from nexec.kernels.activations import ELU, LINEAR, RELU, SOFTMAX
from nexec.kernels.cpu.dense import dense_backward, dense_forward

SOURCE = textwrap.dedent('''
    from nexec.kernels.jit import constant_arguments, kernel, switch_kernel

    @kernel
    def double(x, out):
        for i in range(x.shape[0]):
            out[i] = 2 * x[i]

    @kernel
    def negate(x, out):
        for i in range(x.shape[0]):
            out[i] = -x[i]

    @switch_kernel
    def pick(x, act, out):
        if act == 1:
            double(x, out)
        else:
            negate(x, out)

    @constant_arguments("act")
    @kernel
    def apply(x, act, out):
        pick(x, act, out)
''')


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A module with a kernel that switches on ``act`` through an inline helper."""
    name = f"nexec_test_specialise_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("NEXEC_SPECIALISE", "1")
    yield importlib.import_module(name)
    sys.modules.pop(name, None)


def test_a_specialised_kernel_compiles_only_its_value_s_branch(toy):
    x, out = np.arange(3.0), np.zeros(3)
    made = jit.specialised(toy.apply, (x, 1, out))
    assert made is not toy.apply and made.nexec_generic is toy.apply
    made(x, 1, out)
    np.testing.assert_array_equal(out, [0.0, 2.0, 4.0])
    assert toy.double.signatures and not toy.negate.signatures  # the other branch: never typed
    assert jit.specialised(toy.apply, (x, np.int32(1), out)) is made  # one per value
    other = jit.specialised(toy.apply, (x, 2, out))
    other(x, 2, out)
    np.testing.assert_array_equal(out, [-0.0, -1.0, -2.0])
    assert other is not made and not toy.apply.signatures  # the generic one: never compiled


def test_the_generic_kernel_wherever_it_is_compiled_cached_or_asked_for(toy, monkeypatch):
    x, out = np.arange(3.0), np.zeros(3)
    assert jit.specialised(toy.apply, (x, True, out)) is toy.apply  # not an integer code
    assert jit.specialised(toy.apply, (x, 1.0, out)) is toy.apply
    assert jit.specialised(toy.double, (x, out)) is toy.double  # marks no argument
    with jit.generic_kernels():
        assert jit.specialised(toy.apply, (x, 1, out)) is toy.apply
    monkeypatch.setenv("NEXEC_SPECIALISE", "0")
    assert jit.specialised(toy.apply, (x, 1, out)) is toy.apply
    monkeypatch.setenv("NEXEC_SPECIALISE", "1")
    toy.apply(x, 2, out)  # compiled (and cached on disk) for these types now
    assert jit.specialised(toy.apply, (x, 1, out)) is toy.apply
    assert jit.cached_on_disk(toy.apply, tuple(toy.apply.signatures[0]))


@pytest.mark.parametrize("act", [LINEAR, RELU, SOFTMAX, ELU])  # sigmoid, tanh: the model below
def test_specialised_dense_kernels_give_the_generic_bits(act, monkeypatch):
    monkeypatch.setenv("NEXEC_SPECIALISE", "1")
    monkeypatch.setattr(jit, "_generic_ready", lambda fn, args: False)
    rng = np.random.default_rng(act)
    x = rng.standard_normal((7, 5)).astype(np.float32)
    w = rng.standard_normal((5, 6)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    wide = np.zeros((7, 9), np.float32)

    def forward(fn, strided):
        out = wide.copy()[:, 2:8] if strided else np.zeros((7, 6), np.float32)
        fn(x, w, b, act, out, out)
        return out

    def backward(fn):
        y = forward(dense_forward, False)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        grads = (np.zeros_like(y), np.zeros_like(x), np.zeros_like(w), np.zeros_like(b))
        fn(x, w, y, dy.copy(), act, *grads)
        return grads

    for strided in (False, True):
        out = wide.copy()[:, 2:8] if strided else np.zeros((7, 6), np.float32)
        fast = jit.specialised(dense_forward, (x, w, b, act, out, out))
        assert fast is not dense_forward
        np.testing.assert_array_equal(forward(fast, strided), forward(dense_forward, strided))
    state = rng.bit_generator.state
    y = np.zeros((7, 6), np.float32)
    fast = jit.specialised(dense_backward, (x, w, y, y, act, y, x, w, b))
    assert fast is not dense_backward
    mine = backward(fast)
    rng.bit_generator.state = state
    for a, e in zip(mine, backward(dense_backward)):
        np.testing.assert_array_equal(a, e)


def _train(spec, monkeypatch, jit_step=False):
    monkeypatch.setenv("NEXEC_SPECIALISE", spec)
    nexec.clear_session()
    nexec.set_random_seed(0)
    i = Input(shape=(6, 6, 2))
    h = layers.Conv2D(3, 3, padding="same", activation="relu")(i)
    h = layers.Conv2D(4, 3, strides=2, activation="tanh")(h)
    h = layers.Dense(5, activation="sigmoid")(layers.Flatten()(h))
    model = Model(i, layers.Dense(3, activation="softmax")(h))
    model.compile(optimizer="sgd", loss="categorical_crossentropy", jit_step=jit_step)
    rng = np.random.default_rng(0)
    x = rng.random((20, 6, 6, 2), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 20)]
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0).history
    executor = model._trainer.train_executor
    prog = executor.program(8)
    kernels = [getattr(ins.fn, "nexec_generic", None) for ins in prog.instructions]
    native = any(type(f).__name__ == "CompiledEpoch"
                 for p in executor._programs.values() for f in p.compiled.values())
    assert native == jit_step  # the whole epoch ran as one native call
    return history, model.get_weights(), model.predict(x, verbose=0), kernels


def test_a_model_trains_to_the_same_bits_with_specialised_kernels(monkeypatch):
    monkeypatch.setattr(jit, "_generic_ready", lambda fn, args: False)
    generic = _train("0", monkeypatch)
    assert all(k is None for k in generic[3])
    for jit_step in (False, True):  # the loop, and the whole epoch as one native call
        fast = _train("1", monkeypatch, jit_step)
        names = {k.py_func.__name__ for k in fast[3] if k is not None}
        assert {"dense_forward", "dense_backward", "conv2d_forward", "conv2d_backward"} <= names
        assert generic[0] == fast[0]
        for a, b in zip(generic[1] + [generic[2]], fast[1] + [fast[2]]):
            np.testing.assert_array_equal(a, b)


def test_kernels_made_before_stay_in_use_when_no_new_ones_are_made(toy, monkeypatch):
    x, out = np.arange(3.0), np.zeros(3)
    made = jit.specialised(toy.apply, (x, 1, out))
    assert made is not toy.apply
    monkeypatch.delenv("NEXEC_SPECIALISE")  # the default: none made once this process
    monkeypatch.setenv("NEXEC_COMPILE_PROCESSES", "0")  # compiles without helpers
    assert not jit.specialising()
    assert jit.specialised(toy.apply, (x, 1, out)) is made
    assert jit.specialised(toy.apply, (x, 2, out)) is toy.apply
    monkeypatch.setenv("NEXEC_SPECIALISE", "0")  # asked for the generic kernels: always
    assert jit.specialised(toy.apply, (x, 1, out)) is toy.apply
