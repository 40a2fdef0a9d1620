"""The walk-through in docs/plugins.md works as written: its plugin module, installed as a
package would be, and its check code, run unchanged."""
import re

from tests.plugins.conftest import reload_registry, write_plugin
from tests.plugins.test_api import ROOT


def _block(tag):
    text = (ROOT / "docs" / "plugins.md").read_text()
    (code,) = re.findall(rf"<!-- doc-test: {tag} -->\n```python\n(.*?)```", text, re.S)
    return code


def test_docs_walk_through_runs(plugin_dir):
    write_plugin(plugin_dir, "nexec_scale", _block("plugin"))
    assert reload_registry() == []
    exec(compile(_block("check"), "docs/plugins.md", "exec"), {})
