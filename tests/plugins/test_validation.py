"""Broken plugins are reported by name, early, and the rest of nexec keeps working."""
import numpy as np
import pytest

import nexec
from nexec import Input, Model, PluginError, ShapeError, layers
from nexec.plugins import registry

from tests.plugins.conftest import reload_registry, write_plugin

KERNELLESS = '''
from nexec.plugin import Layer, hookimpl
NEXEC_API_VERSION = "1.0"


class Kernelless(Layer):
    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


@hookimpl
def nexec_layers():
    return [Kernelless]
'''

# A layer whose binder records that it was asked to bind: binding precedes any kernel run.
SPY = '''
from nexec.plugin import Kernel, Layer, hookimpl
from nexec.kernels.cpu.merge import copy_into  # a test double may use internals
NEXEC_API_VERSION = "1.0"
BOUND = []


class Spy(Layer):
    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


class SpyKernel(Kernel):
    layer_type = "Spy"
    saves_inputs = saves_output = False

    def forward(self, call):
        BOUND.append(call.layer.name)
        return [(copy_into, (call.output, call.inputs[0]))]

    def backward(self, call):
        return []


class CudaOnly(Layer):
    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


class CudaOnlyKernel(SpyKernel):
    layer_type = "CudaOnly"
    device = "cuda"


@hookimpl
def nexec_layers():
    return [Spy, CudaOnly]


@hookimpl
def nexec_kernels():
    return [SpyKernel(), CudaOnlyKernel()]
'''

BAD_SHAPE = '''
from nexec.plugin import Layer, hookimpl


class BadShape(Layer):
    def __init__(self, result=None, **kwargs):
        super().__init__(**kwargs)
        self.result = result

    def compute_output_shape(self, input_shapes):
        return self.result


@hookimpl
def nexec_layers():
    return [BadShape]
'''


def test_layer_without_a_kernel_fails_at_compile_and_predict_before_any_kernel_runs(
        plugin_dir):
    write_plugin(plugin_dir, "nexec_kernelless", KERNELLESS)
    write_plugin(plugin_dir, "nexec_spy", SPY)
    assert reload_registry() == []
    import nexec_spy

    x = Input(shape=(4,))
    model = Model(x, layers.Kernelless(name="k")(layers.Spy(name="spy")(layers.Dense(4)(x))))
    assert "k (Kernelless)" in str(model.plan())  # planning runs no kernel: fine
    for attempt in (lambda: model.compile(optimizer="sgd", loss="mse"),
                    lambda: model.predict(np.zeros((2, 4))),
                    lambda: model.memory_plan(batch_size=2)):
        with pytest.raises(PluginError) as e:
            attempt()
        assert str(e.value) == ("Layer type 'Kernelless' (from plugin 'nexec_kernelless') has "
                                "no kernel for device 'cpu'.")
    assert nexec_spy.BOUND == []  # nothing was bound, so nothing ran
    # the plugin's other layer and the built-ins still work
    ok = Model(x, layers.Spy(name="spy2")(layers.Dense(3)(x)))
    assert ok.predict(np.ones((2, 4))).shape == (2, 3)
    assert nexec_spy.BOUND == ["spy2"]


def test_missing_kernel_names_the_devices_it_has(plugin_dir):
    write_plugin(plugin_dir, "nexec_spy", SPY)
    reload_registry()
    x = Input(shape=(2,))
    model = Model(x, layers.CudaOnly()(x))
    with pytest.raises(PluginError, match=r"'CudaOnly' \(from plugin 'nexec_spy'\) has no "
                                          r"kernel for device 'cpu'; it has kernels for: cuda"):
        model.predict(np.zeros((1, 2)))


@pytest.mark.parametrize("result", [[4], (0,), (-3,), (4.0,), ("4",), (True,), 4, None,
                                    (None, 2.5)])
def test_invalid_output_shape_names_layer_and_plugin(plugin_dir, result):
    write_plugin(plugin_dir, "nexec_badshape", BAD_SHAPE)
    reload_registry()
    x = Input(shape=(4,))
    with pytest.raises(ShapeError) as e:
        layers.BadShape(result, name="bad")(x)
    msg = str(e.value)
    assert msg.startswith("Layer 'bad' (BadShape): compute_output_shape (from plugin "
                          "'nexec_badshape') returned ")
    assert repr(result) in msg and "tuple of positive ints or None" in msg
    assert layers.Dense(2)(x).shape == (None, 2)  # the rest keeps working


def test_valid_output_shapes_are_normalised(plugin_dir):
    write_plugin(plugin_dir, "nexec_badshape", BAD_SHAPE)
    reload_registry()
    y = layers.BadShape((np.int64(3), None))(Input(shape=(4,)))
    assert y.shape == (None, 3, None) and type(y.shape[1]) is int


def test_user_layer_outside_any_plugin_is_named_as_such():
    class Local(nexec.plugin.Layer):
        def compute_output_shape(self, input_shapes):
            return [1]

    with pytest.raises(ShapeError, match="not registered by a plugin"):
        Local(name="local")(Input(shape=(2,)))


def test_a_name_already_taken_is_refused_naming_both_plugins(plugin_dir):
    write_plugin(plugin_dir, "nexec_copycat", '''
        from nexec.plugin import Kernel, Layer, hookimpl


        class Dense(Layer):
            def compute_output_shape(self, input_shapes):
                return input_shapes[0]


        class DenseKernel(Kernel):
            layer_type = "Dense"


        class Fresh(Layer):
            def compute_output_shape(self, input_shapes):
                return input_shapes[0]


        @hookimpl
        def nexec_layers():
            return [Dense, Fresh]


        @hookimpl
        def nexec_kernels():
            return [DenseKernel()]


        @hookimpl
        def nexec_losses():
            from nexec.plugin import Loss
            return [Loss("mean_squared_error", print, print)]
    ''')
    caught = reload_registry()
    messages = [str(w.message) for w in caught]
    assert len(messages) == 3, messages
    for what in ("layer 'Dense'", "kernel Dense/cpu", "loss 'mean_squared_error'"):
        (msg,) = [m for m in messages if what in m]
        assert msg == (f"plugin 'nexec_copycat' registers {what}, which plugin 'nexec.builtin' "
                       "already registered; the second one is ignored.")
    (info,) = [p for p in nexec.plugins_info() if p["name"] == "nexec_copycat"]
    assert info["provides"] == {"layers": ["Fresh"]} and "Dense" in info["error"]
    assert layers.Dense.__module__ == "nexec.layers.core"
    assert registry().kernel("Dense", "cpu").__module__ == "nexec.ops.builtin"
    with pytest.raises(PluginError, match="nexec_copycat"):
        registry().check()


def test_kernel_class_instead_of_instance_is_refused(plugin_dir):
    write_plugin(plugin_dir, "nexec_classy", '''
        from nexec.plugin import Kernel, Layer, hookimpl


        class Classy(Layer):
            def compute_output_shape(self, input_shapes):
                return input_shapes[0]


        class ClassyKernel(Kernel):
            layer_type = "Classy"


        @hookimpl
        def nexec_layers():
            return [Classy]


        @hookimpl
        def nexec_kernels():
            return [ClassyKernel]
    ''')
    (warning,) = reload_registry()
    assert str(warning.message) == ("plugin 'nexec_classy' registers kernel Classy/cpu, which "
                                    "is a class; register an instance.")
    x = Input(shape=(2,))
    with pytest.raises(PluginError, match="'Classy' \\(from plugin 'nexec_classy'\\) has no "
                                          "kernel"):
        Model(x, layers.Classy()(x)).predict(np.zeros((1, 2)))


def test_raising_while_loading_is_reported_and_others_load(plugin_dir):
    write_plugin(plugin_dir, "nexec_boom", "import nexec_does_not_exist\n")
    write_plugin(plugin_dir, "nexec_hookboom", '''
        from nexec.plugin import hookimpl


        @hookimpl
        def nexec_kernels():
            raise RuntimeError("kernels are on holiday")
    ''')
    write_plugin(plugin_dir, "nexec_kernelless", KERNELLESS)
    caught = reload_registry()
    assert len(caught) == 2
    info = {p["name"]: p for p in nexec.plugins_info()}
    assert "failed to import (ModuleNotFoundError" in info["nexec_boom"]["error"]
    assert "raised while registering (RuntimeError: kernels are on holiday)" in \
        info["nexec_hookboom"]["error"]
    assert info["nexec_kernelless"]["error"] is None
    assert layers.Kernelless.__name__ == "Kernelless"
    with pytest.raises(PluginError) as e:
        registry().check()
    assert "nexec_boom" in str(e.value) and "nexec_hookboom" in str(e.value)
    assert "nexec_kernelless" not in str(e.value)


def test_another_api_major_version_is_refused_with_a_clear_error(plugin_dir):
    write_plugin(plugin_dir, "nexec_v2", KERNELLESS.replace('"1.0"', '"2.0"')
                 .replace("Kernelless", "FromTheFuture"))
    write_plugin(plugin_dir, "nexec_v1_9", KERNELLESS.replace('"1.0"', '"1.9"'))
    (warning,) = reload_registry()
    assert str(warning.message) == ("plugin 'nexec_v2' is built for nexec plugin API 2.0, this "
                                    "nexec provides 1.2")
    assert not hasattr(layers, "FromTheFuture")
    assert hasattr(layers, "Kernelless")  # same major version, newer minor: accepted


def test_kernel_returning_garbage_is_named(plugin_dir):
    write_plugin(plugin_dir, "nexec_garbage", '''
        from nexec.plugin import Kernel, Layer, hookimpl


        class Garbage(Layer):
            def compute_output_shape(self, input_shapes):
                return input_shapes[0]


        class GarbageKernel(Kernel):
            layer_type = "Garbage"

            def forward(self, call):
                return [print]


        @hookimpl
        def nexec_layers():
            return [Garbage]


        @hookimpl
        def nexec_kernels():
            return [GarbageKernel()]
    ''')
    reload_registry()
    x = Input(shape=(2,))
    with pytest.raises(PluginError, match=r"<Kernel Garbage on cpu>.forward \(from plugin "
                                          r"'nexec_garbage'\) for layer 'g' must "
                                          r"return a list of \(function, args_tuple\) pairs"):
        Model(x, layers.Garbage(name="g")(x)).predict(np.zeros((1, 2)))


def test_hook_using_the_registry_while_it_is_built_is_reported_once(plugin_dir, monkeypatch):
    from nexec.plugins import manager

    write_plugin(plugin_dir, "nexec_eager", '''
        from nexec.plugin import hookimpl


        @hookimpl
        def nexec_layers():
            from nexec.plugins import registry
            return [registry().layer("Dense")]  # too early: the registry is being built
    ''')
    monkeypatch.setattr(manager, "_registry", None)
    with pytest.warns(nexec.plugin.PluginWarning) as caught:
        registry()
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert "nexec_eager" in messages[0] and "while it was being built" in messages[0]
    assert layers.Dense(2)(Input(shape=(3,))).shape == (None, 2)
