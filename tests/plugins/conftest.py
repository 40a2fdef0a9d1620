"""Fake installed plugins (a module plus a ``*.dist-info`` with an entry point on sys.path),
and a fresh session per test."""
import sys
import textwrap
import warnings

import pytest

from nexec.errors import PluginWarning
from nexec.plugins import reset_registry


def write_plugin(root, dist, source, entry_name=None, version="0.1", module=None):
    """A plugin as pip would install it: ``<module>.py`` and a dist-info naming it."""
    module = module or dist
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[nexec]\n{entry_name or dist} = {module}\n")


def reload_registry():
    """Rebuilds the registry; returns the PluginWarnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reset_registry()
    return [w for w in caught if issubclass(w.category, PluginWarning)]


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path for fake installed plugins; the registry is rebuilt afterwards."""
    monkeypatch.delenv("NEXEC_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    monkeypatch.undo()
    for name in set(sys.modules) - before:
        if str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(tmp_path)):
            del sys.modules[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reset_registry()
