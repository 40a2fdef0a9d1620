"""Compiling a program's kernels in helper processes, at the same time as this one.

Numba compiles one function at a time in a process (one global compiler lock), so the cold
first fit of a model compiles its dozen or more kernels one after another on one core while
the others idle. When at least two of the kernels a program needs are neither compiled in
this process nor in Numba's cache on disk, :func:`compile_all` starts helper processes. Each
helper and this process take the next kernel from one shared list until it is empty; a
helper compiles into the same Numba cache, and this process then loads each helper's result
from there, as from any cache (and so the helper functions it compiled on the way). Only
kernels whose cache index is safe for several writers (``kernels/cache_index.py``: every
kernel made by ``kernels/jit.py``) are shared out.

A helper that fails or dies costs only time: what it did not deliver is compiled here. So
is what a helper is still compiling once this process has compiled kernels before (see
``_compiled``). A helper imports nexec from this process's path, not from its working
directory, and one that finds another nexec than this process's compiles nothing: its
machine code would enter the cache under this nexec's kernels (seen with a source checkout
beside an installed nexec: the checkout then loaded code that imported modules it lacks).
``NEXEC_COMPILE_PROCESSES`` sets how many helpers may run (``nexec.kernels.jit.compile_helpers``:
by default one fewer than the CPUs this process may use, at most 3; ``0``: none, as in the
test suite).
"""
from __future__ import annotations

import base64
import collections
import importlib
import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

__all__ = ["compile_all", "main"]

#: Seconds a finished helper gets to exit before it is killed.
_EXIT_WAIT_S = 5.0
#: Whether this process has compiled kernels. A helper starts with nothing compiled; once
#: this process has the helper functions most kernels share, it compiles a kernel a helper
#: is still at itself rather than wait for it (docs/performance.md, "First run").
_compiled = False


def _address(fn: Any) -> str | None:
    """``module:name`` of a module-level Numba kernel with a disk cache that a helper may
    write while this process does (what a helper can import and this process can load),
    else ``None``."""
    from nexec.kernels.cache_index import SharedIndexFile
    from nexec.runtime.wholestep import importable

    cache_file = getattr(getattr(fn, "_cache", None), "_cache_file", None)
    if not isinstance(cache_file, SharedIndexFile):
        return None
    return importable(fn)


def _compile(fn: Any, types: tuple) -> None:
    try:
        fn.compile(types)
    except Exception:  # noqa: BLE001 - e.g. a kernel that needs literal arguments: its
        pass  # first call compiles it as Numba would have anyway (and raises there)


class _Helper:
    """One helper process and the thread that hands it work."""

    #: ``-m`` would put the working directory first on the helper's path, where another
    #: nexec (a source checkout) may sit; the helper takes this process's path instead.
    COMMAND = [sys.executable, "-c", "import runpy, sys; sys.path.pop(0); "
               "runpy.run_module('nexec.runtime.compile_workers', run_name='__main__')"]

    def __init__(self, tasks: list[dict], queue: collections.deque, lock: threading.Lock,
                 done: list[threading.Event], ok: list[bool]) -> None:
        from nexec.kernels.jit import kernel_folders

        env = dict(os.environ)
        env.update(NEXEC_COMPILE_PROCESSES="0", NEXEC_COMPILE_PACKAGE=_package(),
                   OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join([p or os.getcwd() for p in sys.path]
                                              + kernel_folders()))
        self.proc = subprocess.Popen(
            self.COMMAND, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True, bufsize=1)
        self.queue, self.lock, self.done, self.ok = queue, lock, done, ok
        self.current = -1  # the task it compiles now (-1: none)
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(tasks) + "\n")
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        """Answers each of the helper's requests with the next task (``-1``: none left) and
        records what it finished; a helper that dies leaves its task to this process."""
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            for line in proc.stdout:
                parts = line.split()
                if len(parts) != 3 or parts[0] != "next":
                    break
                finished, good = int(parts[1]), parts[2] == "1"
                if finished >= 0:
                    self.ok[finished] = good
                    self.done[finished].set()
                with self.lock:
                    self.current = self.queue.popleft() if self.queue else -1
                proc.stdin.write(f"{self.current}\n")
                if self.current < 0:
                    break
        except (OSError, ValueError):
            pass
        finally:
            if self.busy():
                self.done[self.current].set()  # ok stays False: this process compiles it

    def busy(self) -> bool:
        """Whether it compiles a task it has not finished."""
        return self.current >= 0 and not self.done[self.current].is_set()

    def close(self) -> None:
        """Ends the helper (it exits at the end of its input; one still compiling what is
        no longer wanted is killed) and its thread."""
        if self.busy():
            self.proc.kill()
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(_EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.thread.join(_EXIT_WAIT_S)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def compile_all(todo: list[tuple[Any, tuple]], share: bool = True) -> int:
    """Compiles every ``(dispatcher, argument types)`` of ``todo``, with helper processes
    where at least two that a helper can compile are not in Numba's cache.

    Args:
        todo: What to compile, in the order of first use.
        share: ``False``: this process takes none of the helpers' list until they are gone
            (for tests; each helper then compiles what it takes).

    Returns:
        How many kernels the helpers compiled.
    """
    global _compiled
    from nexec.kernels.jit import cached_on_disk, compile_helpers

    missing = [(fn, types) for fn, types in todo if not cached_on_disk(fn, types)]
    warm, _compiled = _compiled, _compiled or bool(missing)
    shared = [(fn, types, where) for fn, types in missing
              for where in [_address(fn)] if where is not None]
    helpers = min(compile_helpers(), len(shared) if not share else len(shared) - 1)
    if helpers <= 0:
        for fn, types in todo:
            _compile(fn, types)
        return 0
    keys = {(id(fn), types) for fn, types, _ in shared}
    own = [(fn, types) for fn, types in todo if (id(fn), types) not in keys]
    tasks = [{"kernel": where, "types": base64.b64encode(pickle.dumps(types)).decode()}
             for _, types, where in shared]
    queue = collections.deque(range(len(shared)))
    lock = threading.Lock()
    done = [threading.Event() for _ in shared]
    ok = [False] * len(shared)
    started: list[_Helper] = []
    try:
        for _ in range(helpers):
            try:
                started.append(_Helper(tasks, queue, lock, done, ok))
            except (OSError, ValueError):  # no helper: this process compiles everything
                break
        for fn, types in own:  # cached ones load in a moment; the rest compile here
            _compile(fn, types)
        if not share:
            for helper in started:
                helper.thread.join()
        mine = []
        while True:
            with lock:
                i = queue.popleft() if queue else -1
            if i < 0:
                break
            mine.append(i)
            _compile(shared[i][0], shared[i][1])
        helped = 0
        for i in sorted(set(range(len(shared))) - set(mine)):
            fn, types, _ = shared[i]
            if warm and share and not done[i].is_set():
                _compile(fn, types)  # see _compiled: not waited for
                continue
            done[i].wait()  # a helper that dies sets it too
            _compile(fn, types)  # loads what the helper saved (or compiles, if it failed)
            helped += ok[i]
        return helped
    finally:
        for helper in started:
            helper.close()


def _package() -> str:
    """The folder of the nexec package this process runs."""
    return str(Path(__file__).resolve().parent.parent)


def _kernel(address: str) -> Any:
    module, name = address.split(":")
    return getattr(importlib.import_module(module), name)


def main(stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> None:
    """A helper process: reads the task list, then compiles one task per request until
    told ``-1``; replies ``next <task> <1 if compiled>``."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    parent = os.environ.get("NEXEC_COMPILE_PACKAGE")
    if parent is not None and parent != _package():
        # Another nexec than the parent's: what it compiled would sit in the shared cache
        # under the parent's kernels. Answer nothing: the parent compiles everything itself.
        return
    tasks = json.loads(stdin.readline())
    finished, good = -1, 1
    while True:
        stdout.write(f"next {finished} {good}\n")
        stdout.flush()
        line = stdin.readline()
        if not line or int(line) < 0:
            return
        finished = int(line)
        try:
            task = tasks[finished]
            _kernel(task["kernel"]).compile(pickle.loads(base64.b64decode(task["types"])))
            good = 1
        except Exception:  # noqa: BLE001 - reported as not compiled: the parent compiles it
            good = 0


if __name__ == "__main__":
    main()
