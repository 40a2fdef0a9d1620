"""The one place that decides how CPU kernels are compiled.

``cache=True`` keeps compiled machine code on disk, so a fresh process pays only for
loading it; ``nogil`` lets kernels overlap with Python work of another thread;
``no_cfunc_wrapper``: no kernel is ever called through a C function pointer (a first-class
function), so the wrapper Numba would otherwise compile for every kernel and helper is
skipped (~5% of a cold first fit). Every kernel is lowered by :mod:`.vector_width`'s
pipeline, so that its loops use the CPU's full vector width, and every cached one keeps its
machine code through :mod:`.cache_index`, whose index several processes may add to at once.

**Specialised kernels.** An activation code is the same integer at every call of a bound
program, yet a kernel compiled for a run-time code carries every activation's branch and
helper, and a cold start compiles them all. A kernel marks such arguments with
:func:`constant_arguments`; :func:`specialised` then gives, per value, a kernel compiled with
the value as a constant. Numba prunes the other branches before it types them, through
every helper that branches on the argument, because those helpers are
:func:`switch_kernel` s: in a specialised kernel they are inlined as Numba IR (a helper
compiled on its own would see a run-time argument again); elsewhere they are ordinary
kernels (inlining them everywhere made every generic kernel slower to compile). Called with
a run-time code, as tests and plugins may, a kernel still compiles every branch.

Use ``parallel_kernel`` sparingly: with Numba's default OpenMP layer, workers keep spinning
after a ``prange`` region on the cores OpenBLAS needs for the next GEMM, which made a
wide-MLP training step ~2.5x slower (docs/performance.md). No built-in kernel uses it.

Numba's cache checks only each kernel's own source file: after editing a helper that other
kernel modules inline, clear ``__pycache__/*.nbi``/``*.nbc`` (or set ``NUMBA_CACHE_DIR``).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import os
import sys
import threading
import types
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from numba import njit

from nexec.kernels import sources_stamp
from nexec.kernels.cache_index import share_cache
from nexec.kernels.vector_width import WideVectorPipeline

__all__ = ["kernel", "fma_kernel", "inline_kernel", "switch_kernel", "inline_switch_kernel",
           "parallel_kernel",
           "uncached_kernel",
           "constant_arguments",
           "specialised", "specialising", "compile_helpers", "generic_kernels",
           "cached_on_disk", "cache_root", "kernel_folders", "write_module"]


def _jit(**options: Any) -> Callable[[Any], Any]:
    """``njit`` with nexec's options (and ``options``) as a decorator."""
    # Numba's own annotations of ``njit`` omit ``no_cfunc_wrapper`` (a documented option).
    merged = {"nogil": True, "no_cfunc_wrapper": True, "pipeline_class": WideVectorPipeline,
              **options}
    decorate: Callable[[Any], Any] = njit(**merged)
    if not merged.get("cache"):
        return decorate
    return lambda fn: share_cache(decorate(fn))


kernel = _jit(cache=True)
#: Inlined as Numba IR into every kernel that calls it, not left to LLVM: for small helpers
#: that take many arrays (each a dozen arguments when called; Winograd's transforms).
inline_kernel = _jit(cache=True, inline="always")
#: A kernel whose loops may fuse ``a * b + c`` into one FMA (rounding once, not twice): only
#: those that say so (the float32 elementary functions, the direct convolution's sums).
fma_kernel = _jit(cache=True, fastmath={"contract"})
#: For closures and functions generated per model that Numba cannot or need not cache.
uncached_kernel = _jit()


def switch_kernel(fn: Any) -> Any:
    """A kernel that branches on a :func:`constant_arguments` argument: an ordinary kernel,
    inlined (with the switch kernels it calls) into specialised kernels (:func:`inline_twin`)."""
    made = kernel(fn)
    made.nexec_switch = True
    return made


def inline_switch_kernel(fn: Any) -> Any:
    """A :func:`switch_kernel` inlined as Numba IR into every caller, not only specialised
    ones: for a short helper around other kernels (Dense's ``linear_rows``), which as a
    kernel of its own made every generic kernel calling it re-optimise one more level
    (Dense and Conv2D compiled 10-30% longer)."""
    made = inline_kernel(fn)
    made.nexec_switch = True
    return made


parallel_kernel = _jit(cache=True, parallel=True)


def cache_root() -> Path:
    """Where nexec keeps generated modules (and Numba's cache of them): ``NEXEC_CACHE_DIR``,
    else ``$XDG_CACHE_HOME/nexec`` (``~/.cache/nexec``)."""
    base = os.environ.get("NEXEC_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "nexec")
    return Path(base)


def constant_arguments(*names: str) -> Callable[[Any], Any]:
    """Marks ``names`` as arguments a bound program passes as one integer every call (an
    activation code), so that :func:`specialised` may compile the kernel per value."""
    def mark(fn: Any) -> Any:
        params = list(inspect.signature(fn.py_func).parameters)
        missing = [n for n in names if n not in params]
        if missing:
            raise TypeError(f"{fn.py_func.__qualname__} has no argument(s) {missing}")
        fn.nexec_constants = tuple(params.index(n) for n in names)
        return fn
    return mark


_made: dict[tuple, Any] = {}
_inlined: dict[Any, Any] = {}
_lock = threading.Lock()


def inline_twin(fn: Any) -> Any:
    """``fn``'s Python function as an inline kernel whose :func:`switch_kernel` globals are
    inline twins too (what a specialised kernel calls, so the constant reaches every
    switch)."""
    with _lock:
        twin = _inlined.get(fn)
    if twin is not None:
        return twin
    py = fn.py_func
    names = py.__code__.co_names
    scope = dict(py.__globals__)
    for name in names:
        value = scope.get(name)
        if getattr(value, "nexec_switch", False) and value is not fn:
            scope[name] = inline_twin(value)
    clone = types.FunctionType(py.__code__, scope, py.__name__, py.__defaults__,
                               py.__closure__)
    clone.__qualname__ = py.__qualname__
    twin = inline_kernel(clone)
    with _lock:
        return _inlined.setdefault(fn, twin)


#: Helper processes at most by default: each also compiles the helpers its kernels share.
MAX_COMPILE_HELPERS = 3


def compile_helpers() -> int:
    """How many helper processes may compile kernels beside this one
    (``runtime/compile_workers.py``): ``NEXEC_COMPILE_PROCESSES``, by default one fewer than
    the CPUs this process may use (at most :data:`MAX_COMPILE_HELPERS`); none where no
    Python interpreter can be started (an embedded or frozen application)."""
    if not sys.executable or getattr(sys, "frozen", False):
        return 0
    value = os.environ.get("NEXEC_COMPILE_PROCESSES", "").strip()
    if value:
        try:
            return max(0, int(value))
        except ValueError:
            return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(0, min(MAX_COMPILE_HELPERS, cpus - 1))


def specialising() -> bool:
    """Whether :func:`specialised` makes kernels: ``NEXEC_SPECIALISE`` (``1``/``0``; the test
    suite and ``nexec warmup`` set ``0``: they compile the kernels for every value), by
    default where helper processes compile beside this one (:func:`compile_helpers`): a
    model with several activations per kernel compiles more, smaller kernels, which pays
    only when they compile in parallel (docs/performance.md, "First run"). Kernels made
    before stay in use either way (:func:`specialised`)."""
    switch = _switch()
    return compile_helpers() > 0 if switch is None else switch


def _switch() -> bool | None:
    """``NEXEC_SPECIALISE`` as a boolean (``None``: not set)."""
    value = os.environ.get("NEXEC_SPECIALISE", "").strip().lower()
    return None if not value else value not in ("0", "false", "no")


@contextlib.contextmanager
def generic_kernels() -> Iterator[None]:
    """Within it, :func:`specialised` makes no kernels: ``nexec warmup`` compiles each kernel
    for every value, so that models it did not build find theirs in the cache too."""
    saved = os.environ.get("NEXEC_SPECIALISE")
    os.environ["NEXEC_SPECIALISE"] = "0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("NEXEC_SPECIALISE", None)
        else:
            os.environ["NEXEC_SPECIALISE"] = saved


def cached_on_disk(fn: Any, types: tuple) -> bool:
    """Whether Numba's cache on disk holds ``fn`` for argument ``types`` (so compiling it
    only loads it)."""
    try:
        cache = fn._cache
        key = cache._index_key(types, fn.targetctx.codegen())
        return key in cache._cache_file._load_index()
    except Exception:  # noqa: BLE001 - no cache, or another Numba: count it as not cached
        return False


def specialised(fn: Any, args: tuple) -> Any:
    """The kernel to call for ``fn(*args)``: ``fn`` compiled for the values ``args`` give its
    :func:`constant_arguments` (a kernel of its own per value, made once per process and
    cached on disk by Numba), unless ``fn`` itself is compiled or cached for these argument
    types (after ``nexec warmup``, or in a process that compiled it anyway); ``fn`` when it
    marks no argument, a value is not a plain integer, or :func:`specialising` is off."""
    where = getattr(fn, "nexec_constants", None)
    if not where or len(args) <= max(where) or _switch() is False:
        return fn
    values = tuple(args[i] for i in where)
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
               for v in values):
        return fn
    if _generic_ready(fn, args):
        return fn
    key = (fn, tuple(int(v) for v in values))
    with _lock:
        made = _made.get(key)
    if made is None:
        if not specialising():  # kernels made before stay in use
            return fn
        try:
            made = _generate(fn, dict(zip(where, key[1])))
        except OSError:  # the cache folder cannot be written: the kernel for every value
            return fn
        with _lock:
            made = _made.setdefault(key, made)
    return made


def _generic_ready(fn: Any, args: tuple) -> bool:
    """Whether ``fn`` itself is compiled, or in Numba's cache, for the types of ``args``
    (untypeable arguments count as ready: the checks before the first step name them)."""
    try:
        types = tuple(fn.typeof_pyval(a) for a in args)
    except Exception:  # noqa: BLE001
        return True
    return types in fn.overloads or cached_on_disk(fn, types)


def kernel_folders() -> list[str]:
    """Folders of the modules :func:`specialised` generated (for a process that imports
    them by name, ``runtime/compile_workers.py``'s helpers)."""
    return [str(cache_root() / "kernels")] if _made else []


def _generate(fn: Any, constants: dict[int, int]) -> Any:
    py = fn.py_func
    params = list(inspect.signature(py).parameters)
    passed = [str(constants[i]) if i in constants else p for i, p in enumerate(params)]
    named = ", ".join(f"{params[i]}={v}" for i, v in constants.items())
    source = "\n".join([
        f'"""Generated by nexec.kernels.jit: {py.__module__}.{py.__name__} with {named}."""',
        "from nexec.kernels.jit import inline_twin, kernel",
        f"from {py.__module__} import {py.__name__} as _generic",
        "",
        "_body = inline_twin(_generic)",
        "",
        "",
        "@kernel",
        f"def {py.__name__}({', '.join(params)}):",
        f"    return _body({', '.join(passed)})",
        "",
    ])
    own = Path(inspect.getfile(py)).stat()  # a plugin's kernel: its own file too
    stamp = f"{sources_stamp()}:{own.st_size}:{own.st_mtime_ns}"
    digest = hashlib.sha256(f"{stamp}\n{source}".encode()).hexdigest()[:20]
    name = f"nexec_kernel_{py.__name__}_{digest}"
    path = cache_root() / "kernels" / f"{name}.py"
    module = sys.modules.get(name)
    if module is None:
        write_module(path, source)
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # Numba's cache finds the globals again by module name
        spec.loader.exec_module(module)
    made = getattr(module, py.__name__)
    made.nexec_generic = fn
    return made


def write_module(path: Path, source: str) -> None:
    """Writes generated ``source`` to ``path`` unless it already holds it, atomically:
    another process may be reading it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != source:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            tmp.write_text(source)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)  # left only when writing failed
