"""Plugin discovery through real entry points (a ``*.dist-info`` folder on sys.path)."""
import sys
import textwrap
import warnings

import pytest

import nexec
from nexec import Input, Model, PluginError, layers
from nexec.errors import PluginWarning
from nexec.models import model_from_json
from nexec.plugins import registry, reset_registry

SCALE_PLUGIN = '''
from nexec.plugin import Layer, hookimpl


class Scale(Layer):
    """Multiplies its input by a constant; same shape out."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = float(factor)

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@hookimpl
def nexec_layers():
    return [Scale]
'''

LAYER_PLUGIN = '''
from nexec.plugin import Layer, hookimpl
{extra}

class {cls}(Layer):
    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


@hookimpl
def nexec_layers():
    return [{cls}]
'''


def write_plugin(root, dist, module_source, entry_name=None, version="0.1", module=None):
    """A plugin as pip would install it: a module plus a dist-info with an entry point."""
    module = module or dist
    (root / f"{module}.py").write_text(textwrap.dedent(module_source))
    info = root / f"{dist}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[nexec]\n{entry_name or dist} = {module}\n")


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path for fake installed plugins; the registry is reset afterwards."""
    monkeypatch.delenv("NEXEC_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    monkeypatch.undo()
    for name in set(sys.modules) - before:
        if getattr(sys.modules[name], "__file__", "") and \
                str(sys.modules[name].__file__).startswith(str(tmp_path)):
            del sys.modules[name]
    reset_registry()


def reload_registry():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reset_registry()
    return [w for w in caught if issubclass(w.category, PluginWarning)]


def info_of(name_part):
    matches = [p for p in nexec.plugins_info() if name_part in p["name"]]
    assert len(matches) == 1, nexec.plugins_info()
    return matches[0]


def test_entry_point_plugin_is_discovered(plugin_dir):
    assert not hasattr(layers, "Scale")
    write_plugin(plugin_dir, "nexec_testplugin", SCALE_PLUGIN, entry_name="testplugin")
    assert reload_registry() == []
    Scale = layers.Scale
    assert Scale.__name__ == "Scale" and issubclass(Scale, nexec.plugin.Layer)
    info = info_of("nexec_testplugin")
    assert info["name"] == "nexec_testplugin:testplugin"
    assert info["version"] == "0.1"
    assert info["provides"] == {"layers": ["Scale"]}
    assert info["error"] is None
    registry().check()  # nothing to complain about
    # the built-ins are still there, and listed first
    assert nexec.plugins_info()[0]["name"] == "nexec.builtin"
    assert "Dense" in nexec.plugins_info()[0]["provides"]["layers"]


def test_plugin_layer_works_in_graphs_and_json(plugin_dir):
    write_plugin(plugin_dir, "nexec_testplugin", SCALE_PLUGIN, entry_name="testplugin")
    reload_registry()
    x = Input(shape=(3,), name="x")
    y = layers.Scale(3.0, name="triple")(layers.Dense(4)(x))
    assert y.shape == (None, 4)
    model = Model(x, y)
    assert model.count_params() == 3 * 4 + 4
    assert "triple (Scale)" in str(model.plan())
    copy = model_from_json(model.to_json())
    assert type(copy.get_layer("triple")) is layers.Scale
    assert copy.get_layer("triple").factor == 3.0


def test_registry_reset_forgets_plugin(plugin_dir):
    write_plugin(plugin_dir, "nexec_testplugin", SCALE_PLUGIN, entry_name="testplugin")
    reload_registry()
    assert hasattr(layers, "Scale")
    reset_registry(autoload=False)
    assert not hasattr(layers, "Scale")
    assert [p["name"] for p in nexec.plugins_info()] == ["nexec.builtin"]


def test_broken_plugin_warns_and_others_keep_working(plugin_dir):
    write_plugin(plugin_dir, "nexec_broken", "raise RuntimeError('boom at import')\n")
    write_plugin(plugin_dir, "nexec_testplugin", SCALE_PLUGIN, entry_name="testplugin")
    caught = reload_registry()
    assert len(caught) == 1
    assert "nexec_broken" in str(caught[0].message)
    assert "boom at import" in str(caught[0].message)
    # the good plugin and the built-ins still work
    assert layers.Scale.__name__ == "Scale"
    assert layers.Dense(2)(Input(shape=(3,))).shape == (None, 2)
    assert info_of("nexec_broken")["error"] and info_of("nexec_testplugin")["error"] is None
    with pytest.raises(PluginError) as e:
        registry().check()
    assert "nexec_broken" in str(e.value) and "nexec_testplugin" not in str(e.value)


def test_plugin_whose_hook_raises_is_reported(plugin_dir):
    source = ('from nexec.plugin import hookimpl\n\n'
              '@hookimpl\n'
              'def nexec_layers():\n'
              '    raise KeyError("no layers today")\n')
    write_plugin(plugin_dir, "nexec_moody", source)
    caught = reload_registry()
    assert len(caught) == 1 and "nexec_moody" in str(caught[0].message)
    with pytest.raises(PluginError, match="nexec_moody"):
        registry().check()


def test_two_plugins_registering_one_layer_name(plugin_dir):
    write_plugin(plugin_dir, "nexec_twin_a", LAYER_PLUGIN.format(cls="Twin", extra=""))
    write_plugin(plugin_dir, "nexec_twin_b",
                 LAYER_PLUGIN.format(cls="Twin", extra="") + "\n# b\n")
    caught = reload_registry()
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert "nexec_twin_a" in msg and "nexec_twin_b" in msg and "Twin" in msg
    # the first one registered wins; the loser is named in check()
    winner = registry().owner[("layers", "Twin")]
    loser = ({"nexec_twin_a", "nexec_twin_b"} - {winner}).pop()
    assert layers.Twin.__module__ == winner
    with pytest.raises(PluginError) as e:
        registry().check()
    assert loser in str(e.value) and winner in str(e.value) and "Twin" in str(e.value)


def test_plugin_redefining_a_builtin_layer_is_refused(plugin_dir):
    write_plugin(plugin_dir, "nexec_fake_dense", LAYER_PLUGIN.format(cls="Dense", extra=""))
    caught = reload_registry()
    assert len(caught) == 1
    assert "nexec_fake_dense" in str(caught[0].message) and "nexec.builtin" in \
        str(caught[0].message)
    assert layers.Dense.__module__ == "nexec.layers.core"


def test_plugin_for_another_api_major_version_is_refused(plugin_dir):
    write_plugin(plugin_dir, "nexec_future",
                 LAYER_PLUGIN.format(cls="Future", extra='NEXEC_API_VERSION = "2.0"'))
    write_plugin(plugin_dir, "nexec_testplugin", SCALE_PLUGIN, entry_name="testplugin")
    caught = reload_registry()
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert "nexec_future" in msg and "2.0" in msg and nexec.plugin.API_VERSION in msg
    assert not hasattr(layers, "Future")
    assert hasattr(layers, "Scale")
    assert info_of("nexec_future")["provides"] == {}
    with pytest.raises(PluginError, match="nexec_future"):
        registry().check()


def test_plugin_for_same_major_newer_minor_is_accepted(plugin_dir):
    write_plugin(plugin_dir, "nexec_minor",
                 LAYER_PLUGIN.format(cls="Minor", extra='NEXEC_API_VERSION = "1.7"'))
    assert reload_registry() == []
    assert layers.Minor.__name__ == "Minor"


def test_disable_autoload_env_skips_discovery(plugin_dir, monkeypatch):
    write_plugin(plugin_dir, "nexec_testplugin", SCALE_PLUGIN, entry_name="testplugin")
    monkeypatch.setenv("NEXEC_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert reload_registry() == []
    assert not hasattr(layers, "Scale")
    assert [p["name"] for p in nexec.plugins_info()] == ["nexec.builtin"]
    monkeypatch.delenv("NEXEC_DISABLE_PLUGIN_AUTOLOAD")
    reload_registry()
    assert hasattr(layers, "Scale")


def test_unknown_layer_attribute_is_attribute_error():
    with pytest.raises(AttributeError, match="NoSuchLayer"):
        layers.NoSuchLayer
