"""Every CUDA kernel compiles to PTX for the real CUDA target (needs libNVVM, no GPU).

Runs ``ptx_compile.py`` in a subprocess without ``NUMBA_ENABLE_CUDASIM``, so it works
whether or not this test process runs the simulator; skipped where no CUDA toolkit is.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cudasim]

SCRIPT = Path(__file__).with_name("ptx_compile.py")


def test_every_kernel_compiles_to_ptx():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    out = proc.stdout.strip()
    if out.startswith("SKIP"):
        pytest.skip(out)
    assert proc.returncode == 0 and out.startswith("OK"), out + proc.stderr[-2000:]
