"""The planner reads kernel declarations, never layer type names: a layer type it has never
heard of gets in-place concatenation and activation folding when its kernel declares them."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from nexec import Input, Model, layers
from nexec.ops.builtin import ActivationKernel, ConcatenateKernel
from nexec.planner.schedule import build_schedule
from nexec.planner.steps import StepNumbering
from nexec.plugins import registry

PLANNER = Path(__file__).resolve().parents[2] / "nexec" / "planner"


class Join(layers.Concatenate):
    """A Concatenate under another name (its kind is "Join")."""


class Squash(layers.Activation):
    """An Activation under another name (its kind is "Squash")."""


class NoJoin(ConcatenateKernel):
    concatenates_inputs = False


class NoFold(ActivationKernel):
    applies_activation_only = False


def _branches(join=layers.Concatenate):
    x = Input(shape=(4,), name="x")
    a = layers.Dense(3, name="a")(x)
    b = layers.Dense(2, name="b")(x)
    return Model(x, layers.Dense(2, name="out")(join(name="join")([a, b])))


def _kernels(**override):
    def kernel_of(kind):
        return override[kind] if kind in override else registry().kernel(kind, "cpu")
    return kernel_of


@pytest.mark.parametrize("training", [True, False])
def test_concat_in_place_for_any_kind_that_declares_it(training):
    model = _branches(Join)
    s = build_schedule(model.plan(), 4, training, kernel_of=_kernels(Join=ConcatenateKernel()))
    assert s.concat_in_place == ["join"]
    assert s.buffers[s.value[model.plan().graph.ops[0].output]].view == ("slice", 1, 0, 3)
    s.memory.verify()


def test_no_concat_in_place_without_the_declaration():
    s = build_schedule(_branches().plan(), 4, True, kernel_of=_kernels(Concatenate=NoJoin()))
    assert s.concat_in_place == []
    assert all(b.view_of is None for b in s.buffers.values())
    assert build_schedule(_branches().plan(), 4, True).concat_in_place == ["join"]


def _dense_then(act_layer):
    x = Input(shape=(4,), name="x")
    return Model(x, act_layer("relu", name="act")(layers.Dense(3, name="lin")(x)))


def _steps(model):
    return [(op.layer.name, op.activation, op.fused) for op in model.plan().ops]


def test_fold_for_any_kind_that_declares_it(monkeypatch):
    assert _steps(_dense_then(Squash)) == [("lin", "linear", []), ("act", "relu", [])]
    monkeypatch.setitem(registry().kernels, ("Squash", "cpu"), ActivationKernel())
    assert _steps(_dense_then(Squash)) == [("lin", "relu", ["act"])]


def test_no_fold_without_the_declaration(monkeypatch):
    assert _steps(_dense_then(layers.Activation)) == [("lin", "relu", ["act"])]
    for device in ("cpu", "cuda"):
        monkeypatch.setitem(registry().kernels, ("Activation", device), NoFold(device))
    assert _steps(_dense_then(layers.Activation)) == [("lin", "linear", []),
                                                      ("act", "relu", [])]


def test_new_capabilities_default_off():
    from nexec.ops.base import Kernel

    assert Kernel.concatenates_inputs is False and Kernel.applies_activation_only is False


def test_step_numbering():
    train, infer = StepNumbering(3, True), StepNumbering(3, False)
    assert [train.forward(i) for i in range(3)] == [0, 1, 2]
    assert train.loss == 3 and [train.backward(i) for i in (2, 1, 0)] == [4, 5, 6]
    assert train.update == 7 and train.count == 8
    assert infer.count == 3


def test_memory_planner_does_not_import_the_schedule():
    # (importing the module itself would run the package facade, which imports everything)
    tree = ast.parse((PLANNER / "memory.py").read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert "nexec.planner.memory" not in imported
    assert not [m for m in imported if m and m.startswith("nexec.planner.schedule")], imported


def test_checker_shares_no_code_with_the_planner():
    tree = ast.parse((PLANNER / "verify.py").read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.startswith("nexec")], imported
