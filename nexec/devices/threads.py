"""Intra-op threads: one op's work split into shards that run at the same time.

Why: the CPU kernels call BLAS (which threads itself) but also do serial passes around it
(im2col, col2im, epilogues). A convolution split over the images of the batch, one shard
per core with BLAS at one thread, keeps every core busy in every pass: the CNN benchmark's
convolutions ran 1.0-1.5x faster, its whole forward 1.23x, than with serial passes around
two-thread GEMMs (docs/performance.md).

* ``set_num_threads(n)`` / ``get_num_threads()``, as ``torch.set_num_threads``. The default
  is ``NEXEC_NUM_THREADS``, else ``OMP_NUM_THREADS``, else the cores this process may use.
  A new count takes effect at the next batch.
* ``single_threaded_blas()``: during each step of a program with shards, every BLAS library
  is held at one thread (threadpoolctl), so that shards do not each start BLAS threads and
  no BLAS worker thread spins on the core a shard wants. Holding it only around each
  sharded op measured about 2x slower on the CNN benchmark (95 instead of 48 ms per
  forward): after any two-thread GEMM between them, OpenBLAS's worker keeps spinning for a
  while (its ``THREAD_TIMEOUT``). Programs without shards (small or dense-only models)
  leave BLAS its own threads.
* ``run_shards(calls)`` runs ``calls[0]`` in the calling thread and the others on worker
  threads (created on first use, daemons), and returns when all are done. Kernels release
  the GIL (``nogil``), so the shards really run in parallel. An exception in any shard is
  raised in the caller. If another thread is already running shards, this one runs its
  shards one after the other instead of waiting. A forked child starts its own workers.
"""
from __future__ import annotations

import contextlib
import os
import queue
import threading
from typing import Any, Iterator

__all__ = ["get_num_threads", "set_num_threads", "single_threaded_blas", "run_shards"]

_threads: int | None = None


def _default_threads() -> int:
    for var in ("NEXEC_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def get_num_threads() -> int:
    """How many threads one op may use (shards of a convolution)."""
    global _threads
    if _threads is None:
        _threads = _default_threads()
    return _threads


def set_num_threads(n: int) -> None:
    """Sets how many threads one op may use; 1 runs every kernel in the calling thread."""
    global _threads
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads needs a positive int, got {n!r}")
    _threads = n


class _Worker:
    """A daemon thread that runs one bound call at a time."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.done: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._loop, daemon=True, name="nexec-shard").start()

    def _loop(self) -> None:
        while True:
            fn, args = self.jobs.get()
            try:
                fn(*args)
                self.done.put(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                self.done.put(exc)


_workers: list[_Worker] = []
_busy = threading.Lock()
_blas_lock = threading.Lock()
_blas_holds = 0
_blas_limit: Any = None  # threadpoolctl's limiter while held
_controller: Any = None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Holds every loaded BLAS at one thread inside, when nexec uses more than one."""
    global _blas_holds, _blas_limit, _controller
    if get_num_threads() == 1:
        yield
        return
    with _blas_lock:
        if _blas_holds == 0:
            if _controller is None:
                import scipy.linalg.cython_blas  # noqa: F401 - the BLAS Numba's np.dot calls
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController()
            _blas_limit = _controller.limit(limits=1, user_api="blas")
        _blas_holds += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_holds -= 1
            if _blas_holds == 0:
                _blas_limit.restore_original_limits()
                _blas_limit = None


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's threads: start afresh, or shards would wait
    forever on workers that do not exist."""
    global _workers, _busy, _blas_lock
    _workers = []
    _busy = threading.Lock()
    _blas_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def run_shards(calls: tuple) -> None:
    """Runs the ``(function, args)`` pairs of ``calls`` in parallel; see the module notes."""
    if len(calls) == 1 or not _busy.acquire(blocking=False):
        for fn, args in calls:
            fn(*args)
        return
    try:
        while len(_workers) < len(calls) - 1:
            _workers.append(_Worker())
        with single_threaded_blas():  # already held inside fit/predict: only a count
            for worker, call in zip(_workers, calls[1:]):
                worker.jobs.put(call)
            error = None
            try:
                fn, args = calls[0]
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - raised after the others finish
                error = exc
            for worker, _ in zip(_workers, calls[1:]):
                failure = worker.done.get()
                error = error or failure
        if error is not None:
            raise error
    finally:
        _busy.release()
