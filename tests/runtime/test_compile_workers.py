"""Kernels compiled by helper processes: shared out, saved to the one cache this process then
loads from, and compiled here whenever a helper does not deliver.

The kernels are written to a fresh module per test (cached beside it by Numba), so each
test starts from kernels no process has compiled.
"""
from __future__ import annotations

import importlib
import io
import json
import os
import sys
import subprocess
import textwrap
import time

import numpy as np
import pytest
from numba import typeof

from nexec.kernels import jit
from nexec.kernels.jit import cached_on_disk
from nexec.runtime import compile_workers as cw

SOURCE = textwrap.dedent('''
    from numba import njit

    from nexec.kernels.jit import kernel

    @kernel
    def scale(a, x, y):
        for i in range(x.shape[0]):
            y[i] = a * x[i]

    @kernel
    def shift(a, x, y):
        for i in range(x.shape[0]):
            y[i] = x[i] + a

    @kernel
    def square(a, x, y):
        for i in range(x.shape[0]):
            y[i] = x[i] * x[i] * a

    @njit(cache=True)
    def numbas_index(x):
        return x + 1

    def not_a_kernel():
        pass
''')


@pytest.fixture
def kernels(tmp_path, monkeypatch):
    """A module of three cached kernels nothing has compiled (importable by helpers)."""
    name = f"nexec_test_kernels_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    yield module
    sys.modules.pop(name, None)


def _todo(module):
    x = np.arange(4.0)
    types = (typeof(2.0), typeof(x), typeof(x))
    return [(module.scale, types), (module.shift, types), (module.square, types)]


def _check(module):
    x = np.arange(4.0)
    for fn, want in [(module.scale, 2.0 * x), (module.shift, x + 2.0),
                     (module.square, 2.0 * x * x)]:
        y = np.zeros(4)
        fn(2.0, x, y)
        np.testing.assert_array_equal(y, want)


def test_helpers_compile_what_they_take_and_this_process_loads_it(kernels, monkeypatch):
    monkeypatch.setenv("NEXEC_COMPILE_PROCESSES", "2")
    todo = _todo(kernels)
    assert not any(cached_on_disk(fn, types) for fn, types in todo)
    assert cw.compile_all(todo, share=False) == 3
    for fn, types in todo:
        assert types in fn.overloads
        assert fn.stats.cache_hits[types] == 1 and not fn.stats.cache_misses  # loaded
        assert cached_on_disk(fn, types)  # in this process's cache: the next process loads it
    _check(kernels)


def test_shared_out_or_not_everything_is_compiled_once(kernels, monkeypatch):
    monkeypatch.setenv("NEXEC_COMPILE_PROCESSES", "1")
    todo = _todo(kernels)
    helped = cw.compile_all(todo)
    assert 0 <= helped <= 2  # this process took the first kernel at least
    for fn, types in todo:
        assert list(fn.overloads) == [types]
        assert fn.stats.cache_hits[types] + fn.stats.cache_misses[types] == 1
    assert sum(fn.stats.cache_hits[types] for fn, types in todo) == helped
    _check(kernels)


def test_a_helper_that_dies_leaves_its_kernels_to_this_process(kernels, monkeypatch):
    monkeypatch.setenv("NEXEC_COMPILE_PROCESSES", "1")
    monkeypatch.setattr(cw._Helper, "COMMAND", [sys.executable, "-c", "import sys; sys.exit(3)"])
    todo = _todo(kernels)
    assert cw.compile_all(todo, share=False) == 0
    for fn, types in todo:
        assert fn.stats.cache_misses[types] == 1  # compiled here
    _check(kernels)


def test_cached_or_unimportable_kernels_start_no_helper(kernels, monkeypatch):
    monkeypatch.setenv("NEXEC_COMPILE_PROCESSES", "2")
    started = []
    monkeypatch.setattr(cw, "_Helper", lambda *a: started.append(a))
    todo = _todo(kernels)
    assert cw.compile_all(todo[:1]) == 0  # one kernel: nothing to share
    assert cw.compile_all(todo[:1] + todo[:1]) == 0  # compiled now, and on disk
    assert started == []
    from numba import njit

    local = [(njit(lambda x: x + 1), (typeof(1.0),)), (njit(lambda x: x - 1), (typeof(1.0),))]
    assert [cw._address(fn) for fn, _ in local] == [None, None]  # not importable by a helper
    # Numba's own index is not safe to write from two processes: not shared out either.
    assert cw._address(kernels.numbas_index) is None
    assert cw._address(kernels.scale) == f"{kernels.__name__}:scale"
    assert cw.compile_all(local) == 0 and started == []
    assert all(len(fn.overloads) == 1 for fn, _ in local)


def test_the_helper_answers_each_request_with_what_it_compiled(kernels):
    x = np.arange(4.0)
    types = (typeof(2.0), typeof(x), typeof(x))
    tasks = [{"kernel": cw._address(kernels.shift), "types": _encoded(types)},
             {"kernel": f"{kernels.__name__}:missing", "types": _encoded(types)}]
    out = io.StringIO()
    cw.main(io.StringIO(json.dumps(tasks) + "\n0\n1\n-1\n"), out)
    assert out.getvalue().split("\n") == ["next -1 1", "next 0 1", "next 1 0", ""]
    assert types in kernels.shift.overloads


def _encoded(types):
    import base64
    import pickle

    return base64.b64encode(pickle.dumps(types)).decode()


@pytest.mark.parametrize("value, want", [("0", 0), ("2", 2), (" 5 ", 5), ("-1", 0),
                                         ("many", 0)])
def test_helper_count_reads_the_environment(monkeypatch, value, want):
    monkeypatch.setenv("NEXEC_COMPILE_PROCESSES", value)
    assert jit.compile_helpers() == want


def test_helper_count_defaults_to_the_spare_cpus(monkeypatch):
    monkeypatch.delenv("NEXEC_COMPILE_PROCESSES", raising=False)
    monkeypatch.setattr(jit.os, "sched_getaffinity", lambda _: set(range(8)), raising=False)
    assert jit.compile_helpers() == jit.MAX_COMPILE_HELPERS
    monkeypatch.setattr(jit.os, "sched_getaffinity", lambda _: {0, 1}, raising=False)
    assert jit.compile_helpers() == 1
    monkeypatch.setattr(jit.os, "sched_getaffinity", lambda _: {0}, raising=False)
    assert jit.compile_helpers() == 0


def test_no_helpers_without_an_interpreter_to_start(monkeypatch):
    monkeypatch.setenv("NEXEC_COMPILE_PROCESSES", "2")
    monkeypatch.setattr(jit.sys, "frozen", True, raising=False)
    assert jit.compile_helpers() == 0
    monkeypatch.delattr(jit.sys, "frozen")
    monkeypatch.setattr(jit.sys, "executable", "")
    assert jit.compile_helpers() == 0


def test_kernels_are_specialised_by_default_only_where_helpers_compile(monkeypatch):
    monkeypatch.delenv("NEXEC_SPECIALISE", raising=False)
    monkeypatch.setenv("NEXEC_COMPILE_PROCESSES", "1")
    assert jit.specialising()
    monkeypatch.setenv("NEXEC_COMPILE_PROCESSES", "0")
    assert not jit.specialising()
    monkeypatch.setenv("NEXEC_SPECIALISE", "1")
    assert jit.specialising()
    monkeypatch.setenv("NEXEC_SPECIALISE", "no")
    monkeypatch.setenv("NEXEC_COMPILE_PROCESSES", "2")
    assert not jit.specialising()


STUCK = ("import sys, time; sys.stdin.readline(); print('next -1 1', flush=True); "
         "time.sleep(60 if int(sys.stdin.readline()) >= 0 else 0)")  # never finishes a task


def test_a_process_that_compiled_before_does_not_wait_for_a_helper(kernels, monkeypatch):
    monkeypatch.setenv("NEXEC_COMPILE_PROCESSES", "1")
    monkeypatch.setattr(cw._Helper, "COMMAND", [sys.executable, "-c", STUCK])
    monkeypatch.setattr(cw, "_compiled", True)
    todo = _todo(kernels)
    t0 = time.perf_counter()
    assert cw.compile_all(todo) == 0
    assert time.perf_counter() - t0 < cw._EXIT_WAIT_S  # the stuck helper was killed
    for fn, types in todo:
        assert fn.stats.cache_misses[types] == 1  # every one compiled here
    _check(kernels)


def test_a_helper_of_another_nexec_compiles_nothing(monkeypatch):
    monkeypatch.setenv("NEXEC_COMPILE_PACKAGE", "/nowhere/nexec")
    out = io.StringIO()
    cw.main(io.StringIO('[{"kernel": "x:y", "types": ""}]\n0\n-1\n'), out)
    assert out.getvalue() == ""
    monkeypatch.setenv("NEXEC_COMPILE_PACKAGE", cw._package())
    out = io.StringIO()
    cw.main(io.StringIO("[]\n-1\n"), out)
    assert out.getvalue() == "next -1 1\n"


def test_the_helper_imports_this_nexec_not_one_in_its_working_directory(tmp_path):
    """A ``nexec`` folder in the working directory (a source checkout) is not imported."""
    fake = tmp_path / "nexec"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise SystemExit('the wrong nexec')\n")
    env = dict(os.environ, NEXEC_COMPILE_PACKAGE=cw._package(),
               PYTHONPATH=os.pathsep.join(os.path.abspath(p or os.curdir) for p in sys.path))
    done = subprocess.run(cw._Helper.COMMAND, input="[]\n-1\n", capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=120)
    assert done.stdout == "next -1 1\n", done.stderr
