"""``import nexec`` stays light: what it loads is checked, not timed (timings are noisy).

Numba (with LLVM, and SciPy for its BLAS) costs about a second to load and is needed only
once a model runs; matplotlib, h5py, ONNX, Ray and torch only by the features that use them.
Every module ``import nexec`` loads counts against a budget, so a new eager import of a large
package shows up here rather than as a slower start for every user.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Packages ``import nexec`` must not load (each is loaded later, where it is used).
DEFERRED = ("numba", "llvmlite", "scipy", "threadpoolctl", "matplotlib", "h5py", "onnx",
            "onnxruntime", "ray", "torch", "PIL", "graphviz", "pandas")
#: Modules in ``sys.modules`` after ``import nexec`` (355 when this was written; Python and
#: NumPy alone make about 200 of them).
MODULE_BUDGET = 420


def _modules_after(code: str) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    proc = subprocess.run([sys.executable, "-c", code + "\nimport sys, json\n"
                           "print(json.dumps(sorted(sys.modules)))"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_import_nexec_defers_heavy_packages():
    loaded = _modules_after("import nexec")
    heavy = sorted(m for m in loaded if m.split(".")[0] in DEFERRED)
    assert not heavy, f"import nexec loads {heavy[:10]}: import them where they are used"
    assert len(loaded) <= MODULE_BUDGET, (
        f"import nexec loads {len(loaded)} modules (budget {MODULE_BUDGET}); the nexec ones: "
        f"{[m for m in loaded if m.startswith('nexec')]}")


def test_the_check_sees_a_heavy_import():
    loaded = _modules_after("import nexec, numba")
    assert "numba" in loaded and "llvmlite" in loaded


def test_the_cli_parser_and_progress_bar_do_not_load_numba():
    loaded = _modules_after("import nexec.cli, nexec.training.progress, nexec.precompile\n"
                            "nexec.cli._parser()")
    assert not [m for m in loaded if m.split(".")[0] in ("numba", "llvmlite", "scipy")]
