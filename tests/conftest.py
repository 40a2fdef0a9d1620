"""Every test starts from a fresh session: predictable auto-names and seeded weights."""
import atexit
import os
import shutil
import tempfile

import pytest

import nexec


# Compiled whole steps are cached on disk (runtime/wholestep.py): not in the user's home.
if "NEXEC_CACHE_DIR" not in os.environ:
    os.environ["NEXEC_CACHE_DIR"] = tempfile.mkdtemp(prefix="nexec-test-cache-")
    atexit.register(shutil.rmtree, os.environ["NEXEC_CACHE_DIR"], True)


# Kernels compile in this process only (runtime/compile_workers.py): the suite runs one
# pytest worker per CPU instead (README's test command); tests of the helpers set it.
os.environ.setdefault("NEXEC_COMPILE_PROCESSES", "0")
# Each kernel compiled once for every activation (kernels/jit.py), not once per activation a
# test uses: the suite would compile several times more; tests of specialised kernels set it.
os.environ.setdefault("NEXEC_SPECIALISE", "0")


@pytest.fixture(autouse=True)
def fresh_session():
    nexec.clear_session()
    nexec.set_random_seed(1234)
    yield
    nexec.clear_session()
