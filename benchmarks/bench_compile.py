"""Time to first result in a fresh process: import nexec, build, compile and fit one epoch of
the seed MLP (n=1000, batch 128) or the demo CNN (``nexec.demo.digits_cnn``, n=512, batch 32).

* cold: ``NUMBA_CACHE_DIR`` is a new empty directory, so every kernel the first fit needs is
  compiled by LLVM (what a user pays once per install, and after a kernel source changes);
* warm: Numba's cache (wherever the environment puts it; by default ``__pycache__`` beside
  the kernel sources) has been filled by an untimed run in ``setup``, so kernels are only
  loaded (what a user pays on every later run, and after ``nexec warmup``);
* import: ``import nexec`` alone, the floor of both.

The timed code is the ``stmt`` asv runs in a new interpreter; the ``setup`` part (run in that
interpreter before the timer starts) only points Numba at its cache directory. In the smoke
test (``models.small()``) the CNN is cut to one convolution, and the cold benchmark's
statements are not run (``tests/test_benchmarks_smoke.py``: only its setup is checked).
"""
import shutil
import subprocess
import sys
import tempfile

from benchmarks import models

SEED_MLP = """
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
FIRST_FIT = SEED_MLP  # the name earlier results were recorded under

DEMO_CNN = """
import numpy as np
import nexec
from nexec.demo import digits_cnn
nexec.set_random_seed(0)
model = digits_cnn()
model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
rng = np.random.default_rng(0)
model.fit(rng.random((512, 8, 8, 1), dtype=np.float32),
          np.eye(10, dtype=np.float32)[rng.integers(0, 10, 512)],
          epochs=1, batch_size=32, verbose=0)
"""

_SMALL_CNN = """
import numpy as np
import nexec
from nexec import Input, Model, layers
i = Input(shape=(8, 8, 1))
model = Model(i, layers.Dense(10, activation="softmax")(layers.Flatten()(
    layers.Conv2D(4, 3, padding="same", activation="relu")(i))))
model.compile(optimizer="rmsprop", loss="categorical_crossentropy")
rng = np.random.default_rng(0)
model.fit(rng.random((64, 8, 8, 1), dtype=np.float32),
          np.eye(10, dtype=np.float32)[rng.integers(0, 10, 64)],
          epochs=1, batch_size=32, verbose=0)
"""


def first_fit(model: str) -> str:
    """The timed code for ``model`` ("seed_mlp" or "demo_cnn")."""
    if model == "seed_mlp":
        return SEED_MLP
    return _SMALL_CNN if models.small() else DEMO_CNN

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
    params = ["seed_mlp", "demo_cnn"]
    param_names = ["model"]
    number = 1
    repeat = (1, 3, 120.0)
    timeout = 900

    def setup(self, model):
        self.base = tempfile.mkdtemp(prefix="nexec-bench-numba-")

    def teardown(self, model):
        shutil.rmtree(self.base, ignore_errors=True)

    def timeraw_cold_first_fit(self, model):
        return first_fit(model), _FRESH_CACHE.format(base=self.base)


class TimerawWarmFirstFit:
    params = ["seed_mlp", "demo_cnn"]
    param_names = ["model"]
    number = 1
    repeat = (1, 5, 30.0)
    timeout = 600

    def setup(self, model):
        # Fill (or refresh, after kernel sources changed) the cache the timed run loads.
        run_code(first_fit(model))

    def timeraw_warm_first_fit(self, model):
        return first_fit(model)


def timeraw_import_nexec():
    return "import nexec"
