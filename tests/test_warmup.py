"""``nexec warmup`` fills Numba's cache so that a later process's first fit compiles nothing.

Runs in fresh interpreters with an empty ``NUMBA_CACHE_DIR`` (the only honest way to see a
first run); on the ``seed`` group only, to keep CI fast. Every group is exercised by
``nexec warmup`` itself in the docs' measurements.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nexec.checks import ArgumentError
from nexec.precompile import GROUPS, cache_locations, warmup

REPO = Path(__file__).resolve().parents[1]

QUICKSTART_FIT = """
import numpy as np
from numba.core.dispatcher import Dispatcher
import nexec
from nexec import Input, Model, layers
i = Input(shape=(64,))
x = layers.Dense(32, activation="relu")(layers.Dense(32, activation="relu")(i))
model = Model(i, layers.Dense(10, activation="softmax")(x))
model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
rng = np.random.default_rng(0)
x, y = rng.random((1000, 64), dtype=np.float32), rng.random((1000, 10), dtype=np.float32)
model.fit(x, y, batch_size=128, epochs=1, verbose=1)
model.predict(x[:10], verbose=0)
t = model._trainer
kernels = {fn for ex in (t.train_executor, t.predictor.executor)
           for prog in ex._programs.values() for calls in prog.calls.values()
           for fn, _ in calls if isinstance(fn, Dispatcher)}
print("kernels", len(kernels))
print("compiled", sum(sum(fn.stats.cache_misses.values()) for fn in kernels))
print("loaded", sum(sum(fn.stats.cache_hits.values()) for fn in kernels))
"""


def _run(args, cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), NEXEC_COMPILE_NOTICE_AFTER="0",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def _counts(out):
    return {k: int(v) for k, v in (line.split() for line in out.splitlines()
                                   if line.split()[:1] in (["kernels"], ["compiled"],
                                                           ["loaded"]))}


def test_after_warmup_a_first_fit_compiles_nothing(tmp_path):
    cache = tmp_path / "numba-cache"
    out = _run(["-m", "nexec", "warmup", "--group", "seed"], cache)
    assert "[1/1] seed (float32) compiled in" in out
    assert str(cache) in out  # says where the cache is
    out = _run(["-c", QUICKSTART_FIT], cache)
    counts = _counts(out)
    assert counts["kernels"] >= 5 and counts["compiled"] == 0 and counts["loaded"] > 0, out
    assert "compiling nexec kernels" not in out

    # The check above can fail: with the optimizer module's cache gone, the same fit compiles
    # its update kernel (and says so) and loads the rest. Cheaper than a second cold fit.
    gone = [f for f in cache.rglob("optimizer.*") if f.is_file()]
    assert any(f.suffix == ".nbi" for f in gone), sorted(f.name for f in cache.rglob("*"))
    for f in gone:
        f.unlink()
    out = _run(["-c", QUICKSTART_FIT], cache)
    counts = _counts(out)
    assert 1 <= counts["compiled"] < counts["kernels"] and counts["loaded"] > 0, out
    assert "compiling nexec kernels" in out


def test_bad_arguments_are_refused_before_compiling():
    with pytest.raises(ArgumentError, match="groups must be names from"):
        warmup(["dense", "nope"], verbose=0)
    with pytest.raises(ArgumentError, match="dtypes must be 'float32' and/or 'float64'"):
        warmup(["seed"], dtypes=["int8"], verbose=0)
    assert list(GROUPS)[0] == "seed"


def test_cache_locations_name_folders():
    where = cache_locations()
    assert set(where) == {"numba", "wholestep"} and all(where.values())
