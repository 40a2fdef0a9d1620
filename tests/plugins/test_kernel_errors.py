"""A plugin kernel of the wrong arity or argument types, or a hook returning garbage, gives
one PluginError naming the plugin package, the layer and the arguments, before the step runs
(runtime/checking.py)."""
import numpy as np
import pytest
from numba.core.errors import TypingError

from nexec import Input, Model, PluginError, layers
from nexec.plugins import registry
from tests.plugins.conftest import reload_registry, write_plugin

# One layer type per fault, each scaling its input by 2 when it works. ``FAULT`` picks the
# fault of the forward kernel; the backward kernel is always right.
BROKEN = '''
import numpy as np
from nexec.plugin import Kernel, Layer, hookimpl, kernel, rows
NEXEC_API_VERSION = "1.2"
RAN = []


@kernel
def double(out, x):
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[i, j] = 2 * x[i, j]


@kernel
def double_grad(dx, dy):
    for i in range(dy.shape[0]):
        for j in range(dy.shape[1]):
            dx[i, j] = 2 * dy[i, j]


@kernel
def needs_ints(out, x, counts):
    for i in range(x.shape[0]):
        out[i, 0] = x[i, 0] + counts[i] + "a string"  # no such addition: a typing error


def plain_python(out, x, scale):  # arity is inspectable
    out[...] = scale * x


def python_type_error(out, x):  # not typeable ahead: its first run is checked
    out[...] = x + "text"


class Doubler(Layer):
    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


class DoublerKernel(Kernel):
    layer_type = "Doubler"
    saves_output = False
    FAULT = None

    def forward(self, call):
        out, x = rows(call.output), rows(call.inputs[0])
        if self.FAULT == "arity":
            return [(double, (out,))]
        if self.FAULT == "types":
            return [(needs_ints, (out, x, x))]
        if self.FAULT == "python arity":
            return [(plain_python, (out, x))]
        if self.FAULT == "python raises":
            return [(python_type_error, (out, x))]
        RAN.append(call.layer.name)
        return [(double, (out, x))]

    def backward(self, call):
        if call.d_inputs[0] is None:
            return []
        return [(double_grad, (rows(call.d_inputs[0]), rows(call.d_output)))]


@hookimpl
def nexec_layers():
    return [Doubler]


@hookimpl
def nexec_kernels():
    return [DoublerKernel()]
'''


@pytest.fixture
def doubler(plugin_dir):
    write_plugin(plugin_dir, "nexec_doubler", BROKEN)
    assert reload_registry() == []
    import nexec_doubler

    return nexec_doubler


def _model():
    x = Input(shape=(3,), name="x")
    h = layers.Dense(3, name="dense")(x)
    return Model(x, layers.Doubler(name="dbl")(h))


def _set_fault(module, fault, monkeypatch):
    monkeypatch.setattr(module.DoublerKernel, "FAULT", fault)


def test_a_working_plugin_kernel_runs(doubler):
    m = _model()
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    w, b = m.get_weights()
    np.testing.assert_allclose(m.predict(x), 2 * (x @ w + b), rtol=1e-6)


def test_wrong_arity_is_refused_at_binding_naming_the_plugin(doubler, monkeypatch):
    _set_fault(doubler, "arity", monkeypatch)
    with pytest.raises(PluginError) as e:
        _model().predict(np.ones((2, 3), np.float32))
    msg = str(e.value)
    assert msg.startswith("kernel Doubler/cpu (DoublerKernel.forward) of layer 'dbl' "
                          "(Doubler), from plugin 'nexec_doubler': its function 'double' "
                          "takes (out, x) but cannot be called with these arguments"), msg
    assert "1 argument(s): #0 float32 array (2, 3)." in msg
    assert isinstance(e.value.__cause__, TypeError)


def test_wrong_arity_of_a_python_function_is_refused_at_binding(doubler, monkeypatch):
    _set_fault(doubler, "python arity", monkeypatch)
    with pytest.raises(PluginError, match=r"plugin 'nexec_doubler'.*'plain_python' takes "
                                          r"\(out, x, scale\).*#0 float32 array \(2, 3\); "
                                          r"#1 float32 array \(2, 3\)"):
        _model().predict(np.ones((2, 3), np.float32))


def test_a_numba_typing_error_names_plugin_layer_and_argument_types(doubler, monkeypatch):
    _set_fault(doubler, "types", monkeypatch)
    m = _model()
    m.compile("sgd", "mse")
    before = [w.copy() for w in m.get_weights()]
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 3), np.float32)
    for attempt in (lambda: m.predict(x, batch_size=4), lambda: m.fit(x, y, verbose=0),
                    lambda: m.evaluate(x, y, verbose=0)):
        with pytest.raises(PluginError) as e:
            attempt()
        msg = str(e.value)
        assert msg.startswith("kernel Doubler/cpu (DoublerKernel.forward) of layer 'dbl' "
                              "(Doubler), from plugin 'nexec_doubler': its function "
                              "'needs_ints' cannot be compiled by Numba for these argument "
                              "types (TypingError: "), msg
        assert msg.endswith("3 argument(s): #0 float32 array (4, 3); #1 float32 array (4, 3); "
                            "#2 float32 array (4, 3).")
        assert isinstance(e.value.__cause__, TypingError)
    # the step never ran: the weights are untouched, and the dense layer before it too
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_python_kernel_failing_in_its_first_run_is_named(doubler, monkeypatch):
    _set_fault(doubler, "python raises", monkeypatch)
    with pytest.raises(PluginError, match=r"layer 'dbl' \(Doubler\), from plugin "
                                          r"'nexec_doubler': its function 'python_type_error' "
                                          r"raised TypeError") as e:
        _model().predict(np.ones((2, 3), np.float32))
    assert isinstance(e.value.__cause__, TypeError)


def test_the_model_works_again_once_the_kernel_is_fixed(doubler, monkeypatch):
    _set_fault(doubler, "types", monkeypatch)
    m = _model()
    x = np.ones((2, 3), np.float32)
    with pytest.raises(PluginError):
        m.predict(x)
    monkeypatch.setattr(doubler.DoublerKernel, "FAULT", None)
    m2 = _model()  # a new model binds anew
    m2.set_weights(m.get_weights())
    w, b = m.get_weights()
    np.testing.assert_allclose(m2.predict(x), 2 * (x @ w + b), rtol=1e-6)


def test_only_the_first_step_of_each_phase_is_checked(doubler, monkeypatch):
    from nexec.runtime import checking

    checked = []
    real = checking.check_types
    monkeypatch.setattr(checking, "check_types",
                        lambda calls: checked.append(len(calls)) or real(calls))
    m = _model()
    m.compile("sgd", "mse")
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 3), np.float32)
    m.fit(x, y, batch_size=2, epochs=3, verbose=0)  # 6 steps of one program
    assert len(checked) == 1 and checked[0] > 0
    m.evaluate(x, y, batch_size=2, verbose=0)  # another executor: its own first step
    m.evaluate(x, y, batch_size=2, verbose=0)
    assert len(checked) == 2


@pytest.mark.parametrize("hook,result,described", [
    ("nexec_layers", "5", "int 5; it must return a list of layer classes"),
    ("nexec_kernels", "'kernel'", "str 'kernel'; it must return a list of op kernel instances"),
    ("nexec_optimizers", "[1, 2]", "list [1, 2]; it must return a dict of names to optimizer "
                                   "classes"),
    ("nexec_losses", "{'a': 1}", "dict {'a': 1}; it must return a list of nexec.plugin.Loss "
                                 "instances"),
])
def test_a_hook_returning_garbage_is_one_clear_error_naming_the_package(
        plugin_dir, hook, result, described):
    write_plugin(plugin_dir, "nexec_garbage_hook", f'''
        from nexec.plugin import hookimpl


        @hookimpl
        def {hook}():
            return {result}
    ''')
    (warning,) = reload_registry()
    assert str(warning.message) == (f"plugin 'nexec_garbage_hook' hook {hook} returned "
                                    f"{described}")
    with pytest.raises(PluginError, match="nexec_garbage_hook"):
        registry().check()
    assert layers.Dense(2)(Input(shape=(3,))).shape == (None, 2)  # the rest keeps working
