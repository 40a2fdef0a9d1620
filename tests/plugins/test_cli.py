"""``nexec plugins``: installed plugins, versions, what each registers, errors."""
import json
from pathlib import Path
import subprocess
import sys


from nexec.cli import main

from tests.plugins.conftest import write_plugin

GOOD = '''
from nexec.plugin import Layer, hookimpl
NEXEC_API_VERSION = "1.0"


class Tidy(Layer):
    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


@hookimpl
def nexec_layers():
    return [Tidy]
'''


def test_lists_builtins_and_plugins_with_versions(plugin_dir, capsys):
    write_plugin(plugin_dir, "nexec_tidy", GOOD, version="2.3.1")
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("nexec plugin API 1.2;")
    assert "nexec.builtin 0.1.0\n  layers: InputLayer, Dense," in out
    assert "nexec_tidy 2.3.1\n  layers: Tidy\n" in out
    assert "[ERROR]" not in out and "  error: " not in out


def test_errors_are_shown_and_the_exit_status_is_one(plugin_dir, capsys):
    write_plugin(plugin_dir, "nexec_tidy", GOOD)
    write_plugin(plugin_dir, "nexec_broken", "raise ImportError('missing a dependency')\n")
    assert main(["plugins"]) == 1
    out = capsys.readouterr().out
    assert "nexec_broken 0.1  [ERROR]\n  registers nothing\n  error: plugin 'nexec_broken' " \
           "failed to import (ImportError: missing a dependency)" in out
    assert "nexec_tidy 0.1\n  layers: Tidy" in out


def test_json_output(plugin_dir, capsys):
    write_plugin(plugin_dir, "nexec_tidy", GOOD)
    assert main(["plugins", "--json"]) == 0
    info = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert info["nexec_tidy"] == {"name": "nexec_tidy", "version": "0.1",
                                  "provides": {"layers": ["Tidy"]}, "error": None}
    assert "Dense/cpu" in info["nexec.builtin"]["provides"]["kernels"]


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "plugins" in capsys.readouterr().out


def test_runs_as_a_program():
    done = subprocess.run([sys.executable, "-m", "nexec.cli", "plugins"], capture_output=True,
                          text=True, timeout=120)
    assert "nexec.builtin" in done.stdout, done.stderr
    script = Path(sys.executable).with_name("nexec")  # pip puts it beside the interpreter
    assert script.exists(), f"{script} missing: is nexec installed (pip install -e .)?"
    done = subprocess.run([str(script), "plugins"], capture_output=True, text=True, timeout=120)
    assert "nexec.builtin" in done.stdout, done.stderr
