"""A plugin installed with pip into a fresh environment is found with no import by the user."""
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import venv

import pip
import pytest

from tests.plugins.test_api import ROOT

PLUGIN = ROOT / "plugins" / "nexec-pooling"


@pytest.mark.skipif(not PLUGIN.exists(), reason="plugins/nexec-pooling is not in this tree")
def test_pip_installed_plugin_is_discovered_in_a_fresh_venv(tmp_path):
    # A copy, so the build leaves nothing (build/, *.egg-info) in the working tree.
    src = tmp_path / "nexec-pooling"
    shutil.copytree(PLUGIN, src, ignore=shutil.ignore_patterns(
        "*.egg-info", "build", "__pycache__", "tests", "*.nbi", "*.nbc"))
    env_dir = tmp_path / "venv"
    pip_version = tuple(int(p) for p in pip.__version__.split(".")[:2])
    with_pip = pip_version < (22, 3)  # older pip cannot install into another interpreter
    venv.EnvBuilder(with_pip=with_pip).create(env_dir)
    python = env_dir / ("Scripts" if os.name == "nt" else "bin") / "python"
    # nexec, its dependencies and the build backend come from *this* environment (a venv of
    # its own in CI, as a user has), not from the base interpreter: its site-packages joins
    # the new environment's path after the environment's own, .pth files included.
    new_site = subprocess.run([str(python), "-c", "import sysconfig; "
                               "print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    ours = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    with open(os.path.join(new_site, "_parent_environment.pth"), "w") as f:
        f.write("import site; " + "; ".join(f"site.addsitedir({p!r})" for p in ours) + "\n")
    install = [str(python), "-m", "pip"] if with_pip else \
        [sys.executable, "-m", "pip", "--python", str(python)]
    done = subprocess.run(install + ["install", "--no-deps", "--no-build-isolation",
                                     "--no-index", "-q", str(src)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    env = {k: v for k, v in os.environ.items()
           if k not in ("NEXEC_DISABLE_PLUGIN_AUTOLOAD", "PYTHONPATH")}
    code = ("import sys; from nexec import layers; print(layers.MaxPooling3D); "
            "print(sys.modules['nexec_pooling'].__file__)")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    cls, where = done.stdout.split("\n")[:2]
    assert cls == "<class 'nexec_pooling.layers.MaxPooling3D'>"
    # found in the new environment, not through an install in this one
    assert where.startswith(str(env_dir)), where
