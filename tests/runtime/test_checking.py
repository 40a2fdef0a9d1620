"""runtime/checking.py on its own: arity from signatures, typing without running, and the
checked first run for calls that cannot be typed ahead."""
import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from nexec.errors import PluginError
from nexec.runtime.checking import (
    Origin,
    check_arity,
    check_types,
    describe_args,
    run_checked,
)

ORIGIN = Origin("nexec_demo_plugin", "kernel Demo/cpu (DemoKernel.forward) of layer 'd' (Demo)")
RAN = []


@njit
def scale(out, x, factor):
    for i in range(x.shape[0]):
        out[i] = x[i] * factor


@njit
def strings(out, x):
    out[0] = x[0] + "no"


def recorder(out):
    RAN.append(out.shape)


def test_describe_args_gives_dtype_and_shape_or_type_and_value():
    assert describe_args((np.zeros((2, 3), np.float32), 4, 0.5, None)) == (
        "#0 float32 array (2, 3); #1 int 4; #2 float 0.5; #3 NoneType None")
    assert describe_args(()) == "no arguments"


def test_arity_is_checked_against_the_python_signature():
    a = np.zeros(3)
    check_arity([(scale, (a, a, 2.0), ORIGIN), (np.add, (a, a), None)])  # builtins: skipped
    with pytest.raises(PluginError) as e:
        check_arity([(scale, (a, a), ORIGIN)])
    assert str(e.value) == (
        "kernel Demo/cpu (DemoKernel.forward) of layer 'd' (Demo), from plugin "
        "'nexec_demo_plugin': its function 'scale' takes (out, x, factor) but cannot be called "
        "with these arguments (missing a required argument: 'factor'). It was bound with 2 "
        "argument(s): #0 float64 array (3,); #1 float64 array (3,).")


def test_typing_runs_nothing_and_names_the_origin():
    out, x = np.zeros(3), np.ones(3)
    assert check_types([(scale, (out, x, 2.0), ORIGIN)]) is True
    assert (out == 0).all()  # compiled, not run
    with pytest.raises(PluginError, match=r"'strings' cannot be compiled by Numba for these "
                                          r"argument types \(TypingError: ") as e:
        check_types([(scale, (out, x, 2.0), ORIGIN), (strings, (out, x), ORIGIN)])
    assert isinstance(e.value.__cause__, TypingError)
    assert check_types([(recorder, (out,), None)]) is False  # a Python function: run checked
    assert RAN == []


def test_the_checked_run_names_a_failing_call_not_from_a_plugin():
    out = np.zeros(2)
    run_checked([(recorder, (out,), None)])
    assert RAN == [(2,)]
    with pytest.raises(PluginError, match=r"^a bound call: its function 'recorder' raised "
                                          r"TypeError .*#0 float64 array \(2,\); #1 int 1\.$"):
        run_checked([(recorder, (out, 1), None)])
    with pytest.raises(PluginError, match="code outside any plugin"):
        run_checked([(recorder, (out, 1), Origin(None, "loss 'mine' of output 0"))])
