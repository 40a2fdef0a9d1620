"""The registry on small fake plugin objects: every kind, checked by protocol, per plugin."""
import warnings
from dataclasses import dataclass

import pytest

from nexec.activations import BUILTIN_ACTIVATIONS, Activation
from nexec.errors import PluginWarning
from nexec.kernels.activations import CODES, RELU
from nexec.plugins.hookspecs import hookimpl
from nexec.plugins.manager import Registry
from nexec.training.metrics import BUILTIN_METRICS


@dataclass(frozen=True)
class Named:
    """A metric or device as the registry sees it: an object with a name."""

    name: str


class Plugin:
    """A plugin object: each keyword becomes a hook returning that value."""

    def __init__(self, **hooks):
        for kind, value in hooks.items():
            setattr(self, f"nexec_{kind}", hookimpl(specname=f"nexec_{kind}")(
                lambda value=value: value))


def fresh():
    return Registry(autoload=False)


def register(reg, plugin, name="fake"):
    """Registers ``plugin``; returns its record and the PluginWarning messages."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = reg.register(plugin, name, "0.1")
    return record, [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]


def test_metrics_and_devices_are_registered_and_found_by_name():
    reg = fresh()
    builtin_metrics, builtin_devices = dict(reg.metrics), dict(reg.devices)
    assert set(builtin_devices) == {"cpu", "cuda"}  # nexec's own, through the same hook
    accuracy, npu, tpu = Named("accuracy"), Named("npu"), Named("tpu")
    record, warned = register(reg, Plugin(metrics=[accuracy], devices=[npu, tpu]))
    assert warned == [] and record.error is None
    assert reg.metric("accuracy") is accuracy
    assert reg.metrics == {**builtin_metrics, "accuracy": accuracy}
    assert reg.device("tpu") is tpu and set(reg.devices) == {"cpu", "cuda", "npu", "tpu"}
    assert record.provides == {"metrics": ["accuracy"], "devices": ["npu", "tpu"]}
    assert reg.owner[("devices", "npu")] == "fake"
    assert reg.owner[("devices", "cpu")] == "nexec.builtin"
    with pytest.raises(ValueError, match="Unknown metric 'f1_score'; known: accuracy, "):
        reg.metric("f1_score")
    with pytest.raises(ValueError, match="Unknown device 'gpu'; known: cpu, cuda, npu, tpu."):
        reg.device("gpu")


def test_a_second_device_of_one_name_is_warned_about_and_ignored():
    reg = fresh()
    first, second = Named("npu"), Named("npu")
    register(reg, Plugin(devices=[first]), "first")
    record, warned = register(reg, Plugin(devices=[second]), "second")
    assert warned == ["plugin 'second' registers device 'npu', which plugin 'first' already "
                      "registered; the second one is ignored."]
    assert reg.device("npu") is first and record.error == warned[0]
    _, warned = register(reg, Plugin(devices=[Named("cpu")]), "third")
    assert warned == ["plugin 'third' registers device 'cpu', which plugin 'nexec.builtin' "
                      "already registered; the second one is ignored."]


def test_builtin_activations_are_values():
    reg = fresh()
    assert list(reg.activations.values()) == BUILTIN_ACTIVATIONS
    relu = reg.activation("relu")
    assert isinstance(relu, Activation) and relu.code == CODES["relu"] and relu.fused
    assert reg.owner[("activations", "relu")] == "nexec.builtin"
    assert reg.activation("gelu").needs_input and not relu.needs_input
    with pytest.raises(ValueError, match="Unknown activation .gelu2.; known: elu, exponential, gelu"):
        reg.activation("gelu2")


def test_activations_as_a_dict_of_codes_the_api_1_0_form():
    reg = fresh()
    record, warned = register(reg, Plugin(activations={"rectifier": RELU, "bad": 99,
                                                       "flag": True}))
    assert reg.activation("rectifier") == Activation("rectifier", RELU)
    assert record.provides == {"activations": ["rectifier"]}
    assert len(warned) == 2
    assert warned[0].startswith("plugin 'fake' registers activation 'bad', whose code 99 is not "
                                "a fused activation code of nexec (0, 1, 2, 3, 4, 5")
    assert "'flag', which is a bool" in warned[1]
    assert "bad" not in reg.activations and "flag" not in reg.activations
    assert "'bad'" in record.error


def test_activations_as_a_list_of_values():
    reg = fresh()
    softsign = Activation("softsign2", forward=lambda z: z / (1.0 + abs(z)),
                          derivative=lambda y: (1.0 - abs(y)) ** 2)
    _, warned = register(reg, Plugin(activations=[softsign, "swish"]))
    assert reg.activation("softsign2") is softsign and not softsign.fused
    assert warned == ["plugin 'fake' registers activation \"'swish'\", which is a str, not an "
                      "nexec.activations.Activation nor a fused activation code."]


class DuckLayer:
    """A layer type by protocol: no nexec base class."""

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def param_specs(self, input_shapes):
        return []

    def get_config(self):
        return {}


class NotALayer:
    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


class DuckKernel:
    layer_type, device = "DuckLayer", "cpu"

    def forward(self, call):
        return []

    def backward(self, call):
        return []


def test_layers_and_kernels_are_checked_by_what_they_can_do():
    reg = fresh()
    kernel = DuckKernel()
    no_forward = DuckKernel()
    no_forward.layer_type = "Other"
    no_forward.forward = None
    record, warned = register(reg, Plugin(layers=[DuckLayer, NotALayer, DuckLayer()],
                                          kernels=[kernel, DuckKernel, no_forward]))
    assert reg.layer("DuckLayer") is DuckLayer and reg.kernel("DuckLayer", "cpu") is kernel
    assert record.provides == {"layers": ["DuckLayer"], "kernels": ["DuckLayer/cpu"]}
    assert warned[0] == ("plugin 'fake' registers layer 'NotALayer', which is not a layer type "
                         "(a class with compute_output_shape, param_specs, get_config).")
    assert "which is not a layer type" in warned[1]  # an instance, not a class
    assert warned[2] == ("plugin 'fake' registers kernel DuckLayer/cpu, which plugin 'fake' "
                         "already registered; the second one is ignored.")
    assert warned[3] == ("plugin 'fake' registers kernel Other/cpu, which is not an op kernel "
                         "(an instance with layer_type, device, forward, backward).")
    assert len(warned) == 4


def test_a_kernel_class_is_refused_before_it_can_clash():
    reg = fresh()
    _, warned = register(reg, Plugin(kernels=[DuckKernel]))
    assert warned == ["plugin 'fake' registers kernel DuckLayer/cpu, which is a class; "
                      "register an instance."]


def test_contributions_are_collected_through_pluggy_per_plugin():
    class Renamed:
        """Hook functions under other names: only pluggy's own hook call finds them."""

        @hookimpl(specname="nexec_metrics")
        def my_metrics(self):
            return [Named("renamed")]

    reg = fresh()
    register(reg, Plugin(metrics=[Named("first")]), "one")
    record, warned = register(reg, Renamed(), "two")
    assert warned == [] and record.provides == {"metrics": ["renamed"]}
    assert reg.owner[("metrics", "first")] == "one" and reg.owner[("metrics", "renamed")] == "two"
    # the full hook still reaches every plugin, the built-in one included
    assert sorted(m.name for ms in reg.pm.hook.nexec_metrics() for m in ms) == sorted(
        [m.name for m in BUILTIN_METRICS] + ["first", "renamed"])


def test_a_hook_that_raises_unregisters_its_plugin_only():
    class Boom:
        @hookimpl
        def nexec_devices(self):
            raise RuntimeError("no devices today")

    reg = fresh()
    register(reg, Plugin(devices=[Named("npu")]), "fine")
    record, warned = register(reg, Boom(), "boom")
    assert warned == ["plugin 'boom' raised while registering (RuntimeError: no devices "
                      "today)"]
    assert record.error == warned[0] and reg.device("npu").name == "npu"
    assert reg.pm.get_plugin("boom") is None and reg.pm.get_plugin("fine") is not None
