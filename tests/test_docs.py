"""Every ```python block of the README and docs/ runs as written, in order, per page."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/index.md", "docs/tutorial.md"]


def python_blocks(page):
    return re.findall(r"^```python\n(.*?)^```", (ROOT / page).read_text(), re.S | re.M)


@pytest.mark.parametrize("page", PAGES)
def test_snippets_run(page, tmp_path, monkeypatch):
    blocks = python_blocks(page)
    assert blocks, f"{page} has no python snippets"
    monkeypatch.chdir(tmp_path)  # snippets that write files write them here
    namespace = {"__name__": "__doc__"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{page} (snippet {i + 1})", "exec"), namespace)
