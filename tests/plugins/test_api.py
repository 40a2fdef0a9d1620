"""``nexec.plugin`` is the whole public surface, and the plugin packages use nothing else."""
import ast
import pathlib
import re

import nexec
import nexec.plugin as api
from nexec.ops.base import Kernel
from nexec.plugins.hookspecs import NexecSpec

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_exports_every_type_a_plugin_needs():
    for name in ["hookimpl", "API_VERSION", "Layer", "ParamSpec", "Kernel", "Call", "Workspace",
                 "BoundCall", "rows", "kernel", "parallel_kernel", "LINEAR", "RELU", "SIGMOID",
                 "TANH", "SOFTMAX", "CODES", "Loss", "Optimizer", "ShapeError", "PluginError",
                 "testing", "generator"]:
        assert name in api.__all__, name
    assert all(hasattr(api, name) for name in api.__all__)
    assert api.Layer is nexec.layers.Layer and api.Kernel is Kernel
    assert api.ShapeError is nexec.ShapeError and api.PluginError is nexec.PluginError
    assert api.testing is nexec.testing
    assert api.ParamSpec("moving_mean", (3,), "zeros", trainable=False).trainable is False
    assert api.Layer.has_training_mode is False


def test_api_version_rule():
    assert re.fullmatch(r"\d+\.\d+", api.API_VERSION)
    major = api.API_VERSION.split(".")[0]
    assert api.compatible(f"{major}.0") and api.compatible(f"{major}.99")
    assert not api.compatible(f"{int(major) + 1}.0") and not api.compatible("0.9")


def test_module_docstring_is_a_guide():
    doc = api.__doc__
    for word in ("NEXEC_API_VERSION", "entry-points.nexec", "has_training_mode",
                 "call.training", "saved=True", "docs/plugins.md", "nexec plugins"):
        assert word in doc, word


def test_docs_cover_every_hook_and_kernel_attribute():
    text = (ROOT / "docs" / "plugins.md").read_text()
    hooks = [n for n in vars(NexecSpec) if n.startswith("nexec_")]
    assert len(hooks) == 9
    for hook in hooks:
        assert f"`{hook}`" in text, hook
    for attr in ("layer_type", "device", "fuses_activation", "saves_inputs", "saves_output",
                 "strided_output", "view_of_input", "workspaces", "forward", "backward"):
        assert re.search(rf"`{attr}[`(]", text), attr
    for attr in Kernel.__dict__:
        if not attr.startswith("_"):
            assert re.search(rf"`{attr}[`(]", text), attr


def test_plugin_packages_import_only_the_public_api():
    sources = sorted((ROOT / "plugins").glob("*/src/**/*.py"))
    assert len(sources) >= 2
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                assert top in {"__future__", "typing", "math", "numpy", "numba"} \
                    or name == "nexec.plugin" or top.startswith("nexec_"), f"{path}: {name}"
