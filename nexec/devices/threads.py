"""Intra-op threads: one op's work split into shards that run at the same time.

Why: the CPU kernels call BLAS (which threads itself) but also do serial passes around it
(im2col, col2im, epilogues). A convolution split over the images of the batch, one shard
per core with BLAS at one thread, keeps every core busy in every pass: the CNN benchmark's
convolutions ran 1.0-1.5x faster, its whole forward 1.23x, than with serial passes around
two-thread GEMMs (docs/performance.md).

* ``set_num_threads(n)`` / ``get_num_threads()``, as ``torch.set_num_threads``. The default
  is ``NEXEC_NUM_THREADS``, else ``OMP_NUM_THREADS``, else the cores this process may use
  (its affinity mask, capped by a container's CPU quota: ``cpu_quota()``).
  A new count takes effect at the next batch.
* ``single_threaded_blas()``: during each step of a program with shards, every BLAS library
  is held at one thread (threadpoolctl), so that shards do not each start BLAS threads and
  no BLAS worker thread spins on the core a shard wants. Holding it only around each
  sharded op measured about 2x slower on the CNN benchmark (95 instead of 48 ms per
  forward): after any two-thread GEMM between them, OpenBLAS's worker keeps spinning for a
  while (its ``THREAD_TIMEOUT``). Programs without shards (small or dense-only models)
  leave BLAS its own threads.
* Under load (``devices/load.py``) nexec runs with the cores other processes leave free,
  never more than ``set_num_threads`` allows: shards of one op are grouped onto fewer
  threads, and programs without shards hold BLAS at that many threads. So does a
  ``set_num_threads`` below BLAS's own count, as ``torch.set_num_threads`` limits its BLAS:
  a process told to use one core (a Ray replica) does not run two-thread GEMMs.
* ``run_shards(calls)`` runs ``calls[0]`` in the calling thread and the others on worker
  threads (created on first use, daemons), and returns when all are done. Kernels release
  the GIL (``nogil``), so the shards really run in parallel. An exception in any shard is
  raised in the caller. If another thread is already running shards, this one runs its
  shards one after the other instead of waiting. A forked child starts its own workers.
  Once its own shards are done the caller runs any shard a worker has not started yet (a
  worker thread descheduled on a busy machine), so a step never waits for a thread that has
  not begun; which thread runs a shard does not change its result.
* ``fork_safe_step()`` surrounds every CPU step: ``os.fork()`` from any thread waits until
  the steps running in other threads have finished (new ones wait for the fork). A fork in
  the middle of a kernel would copy BLAS's internal locks held by a thread that does not
  exist in the child, whose first GEMM then hangs forever; a step is milliseconds, so the
  fork waits that long, and no lock is held across it. BLAS calls outside a step (the data's
  finiteness check) are wrapped too: OpenBLAS shuts its threads down at a fork, and a
  threaded call in flight in the parent then spins forever.
  A ``KeyboardInterrupt`` (Ctrl-C, Jupyter's interrupt) is held back while the main thread
  runs shards and raised once every worker of the call is idle (``interrupts_held``): one
  raised between taking a lock and entering the block that releases it would leave the lock
  held and hang the next call. Each call has its own completion state, so later calls never
  see an earlier call's leftovers.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Iterator

from nexec.devices.load import CpuAvailability

__all__ = ["get_num_threads", "set_num_threads", "set_adaptive_threads", "usable_threads",
           "single_threaded_blas", "adapt_blas_to_load", "run_shards", "fork_safe_step",
           "interrupts_held"]

_threads: int | None = None
_adaptive = os.environ.get("NEXEC_ADAPT_THREADS", "1").strip() not in ("0", "false", "False")
_availability: CpuAvailability | None = None
#: Read once: ``os.cpu_count()`` reads sysfs (~6 µs), and a step checks it (adapt_blas_to_load).
_MACHINE_CPUS = os.cpu_count() or 1


def _default_threads() -> int:
    for var in ("NEXEC_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = cpu_quota()
    return max(1, min(cores, int(quota))) if quota is not None else cores


def cpu_quota(root: str = "/sys/fs/cgroup") -> float | None:
    """The CPUs a container's quota allows (cgroup v2 ``cpu.max``, or v1
    ``cpu.cfs_quota_us``/``cpu.cfs_period_us``), or None without a quota.

    A container limited to 2 CPUs on a 64-core host still sees 64 cores in its affinity
    mask; 64 threads there would take turns on two CPUs' worth of time slices, each
    waiting on the others at every shard barrier.
    """
    def read(*parts: str) -> str | None:
        try:
            with open(os.path.join(root, *parts)) as f:
                return f.read().strip()
        except OSError:
            return None

    v2 = read("cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        if quota != "max" and quota.isdigit() and period.isdigit() and int(period) > 0:
            return max(int(quota) / int(period), 1.0)
        return None
    v1_quota, v1_period = read("cpu", "cpu.cfs_quota_us"), read("cpu", "cpu.cfs_period_us")
    if v1_quota and v1_period and v1_quota.lstrip("-").isdigit() and v1_period.isdigit():
        if int(v1_quota) > 0 and int(v1_period) > 0:
            return max(int(v1_quota) / int(v1_period), 1.0)
    return None


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


def set_adaptive_threads(enabled: bool) -> None:
    """Whether nexec uses fewer threads while other processes keep its cores busy (default
    True, or ``NEXEC_ADAPT_THREADS=0`` for False); results are the same either way."""
    global _adaptive
    if not isinstance(enabled, bool):
        raise TypeError(f"set_adaptive_threads needs True or False, got {enabled!r}")
    _adaptive = enabled


def usable_threads() -> int:
    """The threads to use now: ``get_num_threads()``, less the cores other processes hold."""
    global _availability
    n = get_num_threads()
    if n == 1 or not _adaptive:
        return n
    if _availability is None:
        _availability = CpuAvailability()
    free = _availability.update()
    return n if free is None else min(n, free)


class _Worker:
    """A daemon thread that runs bound calls, one at a time, in the order given.

    Its state (``pending`` calls, ``active`` while one runs) is guarded by one condition, so
    the caller can wait until it is idle: the truth of "nothing of mine still runs" whatever
    was or was not queued when an interrupt landed. Each call carries its own error list,
    so nothing one call leaves behind is seen by the next.
    """

    def __init__(self) -> None:
        # ``with`` takes the C lock itself, as the fork gate's: a Condition's __enter__ is
        # Python code, where an interrupt can land with the lock taken but not yet guarded.
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.pending: list[tuple[Any, tuple, list[BaseException]]] = []
        self.active = False
        threading.Thread(target=self._loop, daemon=True, name="nexec-shard").start()

    def submit(self, fn: Any, args: tuple, errors: list[BaseException]) -> None:
        with self.lock:
            self.pending.append((fn, args, errors))
            self.cond.notify_all()

    def take(self) -> tuple[Any, tuple, list[BaseException]] | None:
        """Removes and returns the oldest call this worker has not started, or None."""
        with self.lock:
            return self.pending.pop(0) if self.pending else None

    def wait_idle(self) -> None:
        """Returns once every call given to this worker has finished."""
        with self.lock:
            self.cond.notify_all()  # wakes the worker should an interrupt have skipped a notify
            while self.pending or self.active:
                self.cond.wait(0.1)

    def _loop(self) -> None:
        while True:
            with self.lock:
                while not self.pending:
                    self.cond.wait()
                fn, args, errors = self.pending.pop(0)
                self.active = True
            try:
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                errors.append(exc)
            finally:
                with self.lock:
                    self.active = False
                    self.cond.notify_all()


_workers: list[_Worker] = []
_busy = threading.Lock()
_blas_lock = threading.Lock()
_blas_holds = 0
_blas_limit: Any = None  # threadpoolctl's limiter while held
_load_limit: Any = None  # threadpoolctl's limiter while BLAS is held below its own count
_load_threads = 0  # the thread count _load_limit holds BLAS at (adapt_blas_to_load)
_controller: Any = None
_blas_own = 1  # BLAS's own thread count, read when the controller is made


def _blas_controller() -> Any:
    global _controller, _blas_own
    if _controller is None:
        import scipy.linalg.cython_blas  # noqa: F401 - the BLAS Numba's np.dot calls
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
        # Read before nexec first holds BLAS: every hold goes through this controller.
        _blas_own = max((i["num_threads"] for i in _controller.info()
                         if i["user_api"] == "blas"), default=1)
    return _controller


def _blas_own_threads() -> int:
    """How many threads BLAS runs by its own settings (``OPENBLAS_NUM_THREADS``, the cores)."""
    _blas_controller()
    return _blas_own


def adapt_blas_to_load() -> None:
    """Before a step without shards: holds BLAS at ``usable_threads()`` while that is below
    BLAS's own thread count (a lower ``set_num_threads``, as a Ray replica's CPUs, or cores
    other processes keep busy), and gives BLAS its own count back when it no longer is."""
    global _load_limit, _load_threads
    usable = usable_threads()
    # 0: BLAS's own count. The controller (a scan of the loaded libraries) is made only when
    # a hold is possible: BLAS never runs more threads than the machine's CPUs by default.
    below = usable < _MACHINE_CPUS and usable < _blas_own_threads()
    wanted = usable if below else 0
    if wanted == _load_threads:
        return
    with _blas_lock:
        if _blas_holds:  # another thread's sharded step holds BLAS at one thread: later
            return
        if _load_limit is not None:
            _load_limit.restore_original_limits()
            _load_limit = None
        if wanted:
            _load_limit = _blas_controller().limit(limits=wanted, user_api="blas")
        _load_threads = wanted


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Holds every loaded BLAS at one thread inside, when nexec uses more than one."""
    global _blas_holds, _blas_limit
    if get_num_threads() == 1:
        yield
        return
    with _blas_lock:
        if _blas_holds == 0:
            _blas_limit = _blas_controller().limit(limits=1, user_api="blas")
        _blas_holds += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_holds -= 1
            if _blas_holds == 0:
                _blas_limit.restore_original_limits()
                _blas_limit = None


# Steps take the gate's lock itself, a C lock: ``with`` on the Condition runs its Python
# __enter__, where a KeyboardInterrupt can land after the lock is taken and before the block
# that releases it begins, leaving it held for good (a hang, seen in the interrupt tests).
_gate_lock = threading.Lock()
_gate = threading.Condition(_gate_lock)
_in_step: dict[int, int] = {}  # thread id -> how many steps it is inside (they nest)
_forking = False


class fork_safe_step:  # noqa: N801 - used as a function: ``with fork_safe_step(): ...``
    """One step (or any BLAS call outside a step) that a fork waits for, and that waits for
    a fork in progress. A plain class: entered on every step, a ``contextlib`` generator
    costs several times as much."""

    __slots__ = ("_me",)

    def __enter__(self) -> None:
        self._me = me = threading.get_ident()
        with _gate_lock:
            while _forking:
                _gate.wait()
            _in_step[me] = _in_step.get(me, 0) + 1

    def __exit__(self, *exc: object) -> None:
        me = self._me
        with _gate_lock:
            if _in_step[me] == 1:
                del _in_step[me]
                _gate.notify_all()
            else:
                _in_step[me] -= 1


def _before_fork() -> None:
    """Waits until no other thread is inside a step; steps that start now wait for the
    fork. The forking thread's own steps (a fork from inside one) are not waited for."""
    global _forking
    me = threading.get_ident()
    with _gate:
        _forking = True
        while any(t != me for t in _in_step):
            _gate.wait()


def _after_fork_in_parent() -> None:
    global _forking
    with _gate:
        _forking = False
        _gate.notify_all()


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's threads: start afresh, or shards would wait
    forever on workers that do not exist."""
    global _workers, _busy, _blas_lock, _gate_lock, _gate, _in_step, _forking, _availability
    global _holding
    _workers = []
    _availability = None  # the child's own CPU time starts from zero
    _busy = threading.Lock()
    _blas_lock = threading.Lock()
    _gate_lock = threading.Lock()
    _gate = threading.Condition(_gate_lock)
    _in_step = {}
    _forking = False
    if _holding:  # the parent held Ctrl-C: the child's own interrupts raise again
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGINT, signal.default_int_handler)
    _holding = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)


def _wait_for(workers: list[_Worker]) -> BaseException | None:
    """Waits until ``workers`` are idle, even through interrupts; returns the first
    interrupt (re-raised by the caller once nothing of this call runs any more)."""
    interrupt: BaseException | None = None
    for worker in workers:
        while True:
            try:
                worker.wait_idle()
                break
            except BaseException as exc:  # noqa: BLE001 - a KeyboardInterrupt: finish first
                interrupt = interrupt or exc
    return interrupt


_holding = False  # an interrupts_held block is open (in the main thread)


class interrupts_held:  # noqa: N801 - used as a function: ``with interrupts_held():``
    """Holds Ctrl-C back in its block and raises it at the end: SIGINT with Python's default
    handler, in the main thread (the only one it interrupts); elsewhere, and nested, it does
    nothing. Sharded steps run in one (``CpuDevice.step_guard``), so ~8 µs of handler swaps
    are paid once a step, not once a sharded op.

    Why: a ``KeyboardInterrupt`` can land between any two bytecodes, also where a lock is
    taken but the block that releases it has not begun (a Python ``__enter__``,
    ``Condition.wait``'s own code), leaving the lock held and the next step hung; holding the
    signal closes every such window at once (tests/runtime/test_threads.py's random
    interrupts found two).
    """

    __slots__ = ("caught", "held")

    def __enter__(self) -> None:
        global _holding
        self.caught = False
        self.held = not _holding and threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        if self.held:
            signal.signal(signal.SIGINT, self._catch)
            _holding = True

    def _catch(self, signum: int, frame: Any) -> None:
        self.caught = True

    def __exit__(self, kind: Any, *exc: object) -> None:
        global _holding
        if self.held:
            _holding = False
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if self.caught and kind is None:
                raise KeyboardInterrupt


def run_shards(calls: tuple) -> None:
    """Runs the ``(function, args)`` pairs of ``calls`` in parallel; see the module notes.

    Interrupt safety: however a ``KeyboardInterrupt`` lands (while queueing, in the caller's
    own shard, or while waiting), this returns or raises only after every worker it used is
    idle, so no shard writes into the arena afterwards and the next call starts clean.
    """
    threads = min(len(calls), usable_threads())
    if threads == 1:
        for fn, args in calls:
            fn(*args)
        return
    with interrupts_held():
        _run_threaded(calls, threads)


def _run_threaded(calls: tuple, threads: int) -> None:
    """:func:`run_shards` on ``threads`` threads, or serially while another thread runs
    shards."""
    if not _busy.acquire(blocking=False):
        for fn, args in calls:
            fn(*args)
        return
    try:
        while len(_workers) < threads - 1:
            _workers.append(_Worker())
        used = _workers[:threads - 1]
        errors: list[BaseException] = []  # this call's own: stale failures cannot leak in
        error: BaseException | None = None
        with single_threaded_blas():  # already held inside fit/predict: only a count
            try:
                for i, worker in enumerate(used, start=1):  # thread i runs calls i, i+t, ...
                    for fn, args in calls[i::threads]:
                        worker.submit(fn, args, errors)
                for fn, args in calls[::threads]:
                    fn(*args)
                for worker in reversed(used):  # shards whose thread has not started them
                    while (stolen := worker.take()) is not None:  # (descheduled) run here
                        stolen[0](*stolen[1])
            except BaseException as exc:  # noqa: BLE001 - raised after the others finish
                error = exc
            interrupt = _wait_for(used)
        error = error or interrupt or (errors[0] if errors else None)
        if error is not None:
            raise error
    finally:
        _busy.release()
