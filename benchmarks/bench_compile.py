"""Time to first result in a fresh process: import nexec, build, compile and fit the seed MLP
for one epoch (n=1000, batch 128).

* cold: ``NUMBA_CACHE_DIR`` is a new empty directory, so every kernel the first fit needs is
  compiled by LLVM (what a user pays once per install, and after a kernel source changes);
* warm: Numba's cache (wherever the environment puts it; by default ``__pycache__`` beside
  the kernel sources) has been filled by an untimed run in ``setup``, so kernels are only
  loaded (what a user pays on every later run);
* import: ``import nexec`` alone, the floor of both.

The timed code is the ``stmt`` asv runs in a new interpreter; the ``setup`` part (run in that
interpreter before the timer starts) only points Numba at its cache directory.
"""
import shutil
import subprocess
import sys
import tempfile

FIRST_FIT = """
import numpy as np
import nexec
from nexec import Input, Model, layers, optimizers
nexec.set_random_seed(0)
i = Input(shape=(64,))
x = layers.Dense(32, activation="relu")(i)
x = layers.Dense(32, activation="relu")(x)
model = Model(i, layers.Dense(10, activation="softmax")(x))
model.compile(optimizer=optimizers.RMSprop(1e-3), loss="categorical_crossentropy")
rng = np.random.default_rng(0)
model.fit(rng.random((1000, 64), dtype=np.float32), rng.random((1000, 10), dtype=np.float32),
          epochs=1, batch_size=128, verbose=0)
"""

_FRESH_CACHE = """
import os, tempfile
os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(dir={base!r})
"""


def run_code(stmt, setup="", env=None, timeout=600):
    """Runs ``setup`` then ``stmt`` in a new interpreter (as asv does for ``timeraw_``)."""
    proc = subprocess.run([sys.executable, "-c", setup + "\n" + stmt], env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"subprocess failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


class TimerawColdFirstFit:
    number = 1
    repeat = (1, 3, 60.0)
    timeout = 600

    def setup(self):
        self.base = tempfile.mkdtemp(prefix="nexec-bench-numba-")

    def teardown(self):
        shutil.rmtree(self.base, ignore_errors=True)

    def timeraw_cold_first_fit(self):
        return FIRST_FIT, _FRESH_CACHE.format(base=self.base)


class TimerawWarmFirstFit:
    number = 1
    repeat = (1, 5, 30.0)
    timeout = 600

    def setup(self):
        # Fill (or refresh, after kernel sources changed) the cache the timed run loads.
        run_code(FIRST_FIT)

    def timeraw_warm_first_fit(self):
        return FIRST_FIT


def timeraw_import_nexec():
    return "import nexec"
