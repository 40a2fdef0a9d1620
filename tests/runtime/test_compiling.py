"""Kernels compile at bind time: timed onto a clock, announced when slow, quiet on request.

The in-process tests use a fresh (uncached) Numba function, so something really compiles
whatever other tests compiled before; the model-level tests run in a fresh interpreter with
an empty Numba cache, as a new user's first run.
"""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from numba import njit

from nexec.runtime import compiling
from nexec.training.progress import ProgressBar

REPO = Path(__file__).resolve().parents[2]


def _fresh_kernel():
    """A Numba function no process has compiled yet (not cached on disk)."""
    @njit
    def axpy(a, x, y):
        for i in range(x.shape[0]):
            y[i] += a * x[i]
    return axpy


def test_compile_calls_compiles_every_new_signature_once(monkeypatch):
    monkeypatch.setenv("NEXEC_COMPILE_NOTICE_AFTER", "0")
    fn = _fresh_kernel()
    x32, y32 = np.ones(3, np.float32), np.zeros(3, np.float32)
    x64, y64 = np.ones(3), np.zeros(3)
    calls = [(fn, (2.0, x32, y32)), (fn, (2.0, x32, y32)), (fn, (2.0, x64, y64)),
             (print, ("not a dispatcher",))]
    assert len(compiling.pending(calls)) == 2
    out = io.StringIO()
    before = compiling.compile_seconds()
    with compiling.notices(True, out):
        seconds = compiling.compile_calls(calls)
    assert seconds > 0 and len(fn.overloads) == 2
    # The clock the progress bar reads moved by exactly what was returned (it used to be
    # timed apart, and the notice's start and stop, slow under load, made them differ).
    assert compiling.compile_seconds() - before == seconds
    assert out.getvalue().startswith(compiling.NOTICE)
    assert re.search(r"done in \d+\.\ds\n$", out.getvalue())
    # Compiled now: nothing left to do, no notice, no time on the clock.
    assert compiling.pending(calls) == []
    again = io.StringIO()
    with compiling.notices(True, again):
        assert compiling.compile_calls(calls) == 0.0
    assert again.getvalue() == ""
    fn(2.0, x64, y64)
    np.testing.assert_array_equal(y64, [2.0, 2.0, 2.0])


def test_notices_off_and_under_the_threshold_are_quiet(monkeypatch):
    monkeypatch.setenv("NEXEC_COMPILE_NOTICE_AFTER", "0")
    out = io.StringIO()
    fn = _fresh_kernel()
    with compiling.notices(False, out):  # verbose=0
        assert compiling.compile_calls([(fn, (1.0, np.ones(2), np.zeros(2)))]) > 0
    assert out.getvalue() == ""
    monkeypatch.setenv("NEXEC_COMPILE_NOTICE_AFTER", "600")
    fn = _fresh_kernel()
    with compiling.notices(True, out):  # a compile shorter than the threshold
        assert compiling.compile_calls([(fn, (1.0, np.ones(2), np.zeros(2)))]) > 0
    assert out.getvalue() == ""


def test_a_load_that_compiles_nothing_is_not_announced(monkeypatch):
    monkeypatch.setenv("NEXEC_COMPILE_NOTICE_AFTER", "0")
    out = io.StringIO()
    with compiling.notices(True, out), compiling.compiling(real=lambda: False):
        pass
    assert out.getvalue() == ""
    with compiling.notices(True, out), compiling.compiling(real=lambda: True):
        pass
    assert out.getvalue().startswith(compiling.NOTICE)


def test_the_progress_bar_leaves_compile_time_out(monkeypatch):
    out = io.StringIO()
    bar = ProgressBar(4, verbose=2, stream=out)
    clock = [compiling.compile_seconds()]
    monkeypatch.setattr("nexec.training.progress.compile_seconds", lambda: clock[0])
    bar.start -= 5.0          # five seconds have passed ...
    clock[0] += 4.9           # ... of which 4.9 compiling kernels
    assert 0.1 <= bar.elapsed() < 1.0
    bar.finish({"loss": 1.0})
    assert re.match(r"4/4 - 0s - \d+ms/step - loss: 1\.0000\n", out.getvalue()), out.getvalue()


FIRST_FIT = """
import numpy as np, nexec
from nexec import Input, Model, layers
from nexec.runtime import compiling

def fit(units, verbose):
    i = Input(shape=(12,))
    model = Model(i, layers.Dense(3, activation="softmax")(
        layers.Dense(units, activation="relu")(i)))
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.fit(rng.random((64, 12), dtype=np.float32),
              np.eye(3, dtype=np.float32)[rng.integers(0, 3, 64)],
              batch_size=16, epochs=1, verbose=verbose)
    return model

fit(8, 2)
print("clock", compiling.compile_seconds())
print("second model")
fit(5, 2)
"""


def _python(code, cache, notice_after="0"):
    # As a user's: one helper process compiling beside it (runtime/compile_workers.py), the
    # kernels specialised for each activation (kernels/jit.py).
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), NEXEC_COMPILE_NOTICE_AFTER=notice_after,
               NEXEC_COMPILE_PROCESSES="1", NEXEC_SPECIALISE="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_first_fit_announces_compiling_once_and_the_bar_shows_real_steps(tmp_path):
    out = _python(FIRST_FIT, tmp_path / "numba-cache")
    first, second = out.split("second model")
    assert first.count(compiling.NOTICE) == 1, out
    spent = float(re.search(r"done in (\d+\.\d)s", first).group(1))
    clock = float(re.search(r"clock (\S+)", first).group(1))
    assert clock >= spent - 0.05 > 0
    # The epoch line's time excludes the compile (4 steps of a tiny model: well under it).
    epoch = float(re.search(r"4/4 - (\d+)s - ", first).group(1))
    assert epoch < spent or spent < 1, out
    assert compiling.NOTICE not in second, out  # same kernels, same types: nothing compiles
