"""Checks of bound kernel calls, so a broken plugin kernel fails with nexec's error naming it.

A third-party op kernel returns ``(function, args)`` pairs that every step runs. When the
function takes another number of arguments, or Numba cannot type it for the arrays given, the
user would otherwise see a Numba traceback from inside a step. Two checks run instead:

- at binding (:func:`check_arity`), each call's argument count against the function's Python
  signature where it can be inspected (a Numba dispatcher's ``py_func``, a plain function);
- before the first step of each program phase (:func:`check_types`), each Numba CPU call is
  typed for its arguments without running (``dispatcher.compile``, which the first call would
  do anyway), so a typing error comes before any kernel of the step ran. Calls that cannot be
  typed in advance (CUDA launchers, sharded runners, Python steps) are run once through
  :func:`run_checked`, which turns a typing or arity error into the same message.

Either way :class:`~nexec.errors.PluginError` names the plugin package, the layer (name and
class), the kernel function and each argument's shape and dtype, with Numba's message as
``__cause__``. Later steps run the plain loop: the checks cost nothing per step.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
from numba import typeof
from numba.core.dispatcher import Dispatcher
from numba.core.errors import NumbaError

from nexec.errors import PluginError

__all__ = ["Origin", "check_arity", "check_types", "run_checked", "describe_args"]


@dataclass(frozen=True)
class Origin:
    """Who contributed a bound call: what the error messages name.

    Attributes:
        plugin: The plugin package that registered it (``None``: not from a plugin).
        what: The contribution and where it is used, e.g. ``"kernel Spy/cpu (forward) of
            layer 'spy' (Spy)"``.
        part: What the call's time counts towards in a profile (``runtime/profiling.py``):
            ``"layer 'spy' (Spy)"``, ``"loss 'mse' of output 0"``, ``"optimizer 'adam'"``.
    """

    plugin: str | None
    what: str
    part: str = ""

    def __str__(self) -> str:
        owner = f"plugin '{self.plugin}'" if self.plugin else "code outside any plugin"
        return f"{self.what}, from {owner}"


def _name(fn: Any) -> str:
    py = getattr(fn, "py_func", fn)
    return getattr(py, "__qualname__", None) or getattr(py, "__name__", None) or repr(fn)


def _describe(a: Any) -> str:
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        return f"{np.dtype(a.dtype).name} array {tuple(int(n) for n in a.shape)}"
    if isinstance(a, tuple):
        return "tuple(" + ", ".join(_describe(v) for v in a) + ")"
    if a is None or isinstance(a, (bool, int, float, np.generic)):
        return f"{type(a).__name__} {a!r}"
    return type(a).__name__


def describe_args(args: Iterable[Any]) -> str:
    """Each argument's shape and dtype (arrays) or type and value (scalars), numbered."""
    return "; ".join(f"#{i} {_describe(a)}" for i, a in enumerate(args)) or "no arguments"


def _error(origin: Origin | None, fn: Any, args: tuple, why: str) -> PluginError:
    where = str(origin) if origin is not None else "a bound call"
    return PluginError(f"{where}: its function '{_name(fn)}' {why}. It was bound with "
                       f"{len(args)} argument(s): {describe_args(args)}.")


def _signature(fn: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(getattr(fn, "py_func", fn))
    except (TypeError, ValueError):  # a builtin or a C function: nothing to inspect
        return None


def check_arity(calls: Iterable[tuple[Any, tuple, Origin | None]]) -> None:
    """Raises :class:`PluginError` for the first call whose arguments its function's
    signature cannot take.

    Args:
        calls: ``(function, args, origin)`` triples as bound.
    """
    for fn, args, origin in calls:
        sig = _signature(fn)
        if sig is None:
            continue
        try:
            sig.bind(*args)
        except TypeError as e:
            raise _error(origin, fn, args, f"takes {sig} but cannot be called with "
                                           f"these arguments ({e})") from e


def _typeable(fn: Any) -> bool:
    return isinstance(fn, Dispatcher) and getattr(fn, "_can_compile", False)


def check_types(calls: Iterable[tuple[Any, tuple, Origin | None]]) -> bool:
    """Types every Numba CPU call for its arguments without running it.

    Returns:
        Whether every call was checked (``False``: some must go through
        :func:`run_checked` once).

    Raises:
        PluginError: Numba cannot compile a call for its arguments (``__cause__``: Numba's
            error).
    """
    complete = True
    for fn, args, origin in calls:
        if not _typeable(fn):
            complete = False
            continue
        try:
            fn.compile(tuple(typeof(a) for a in args))
        except NumbaError as e:
            raise _error(origin, fn, args, "cannot be compiled by Numba for these argument "
                                           f"types ({type(e).__name__}: "
                                           f"{_first_line(e)})") from e
    return complete


def run_checked(calls: Iterable[tuple[Any, tuple, Origin | None]]) -> None:
    """Runs the calls in order, turning a Numba typing error or a wrong-arity ``TypeError``
    of one into :class:`PluginError` naming its origin (earlier calls of the step ran)."""
    for fn, args, origin in calls:
        try:
            fn(*args)
        except NumbaError as e:
            raise _error(origin, fn, args, f"failed in Numba ({type(e).__name__}: "
                                           f"{_first_line(e)})") from e
        except TypeError as e:
            raise _error(origin, fn, args, f"raised TypeError ({e})") from e


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = " ".join(lines[:3])
    return text if len(text) <= 300 else text[:297] + "..."
