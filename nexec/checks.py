"""Argument checks shared by public entry points: each error names the argument, the value
received and what is accepted, and is raised before any kernel runs.

Why a module of its own: layers, models, the trainer and the optimizers validate the same
kinds of arguments (positive counts, finite positive rates); one wording keeps errors alike.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

from nexec.errors import NexecError

__all__ = ["ArgumentError", "ArgumentTypeError", "positive_int", "optional_positive_int",
           "positive_finite_float"]


class ArgumentError(NexecError, ValueError):
    """An argument of a public function has a value it cannot take (a ``ValueError``)."""


class ArgumentTypeError(NexecError, TypeError):
    """An argument of a public function has a type it cannot take (a ``TypeError``)."""


def _where(where: str) -> str:
    return f"{where}: " if where else ""


def positive_int(value: Any, name: str, where: str = "") -> int:
    """``value`` as an int when it is an integer >= 1 (a NumPy integer too; bool refused).

    Args:
        value: What the user passed.
        name: The argument's name, for the message.
        where: The function or layer it was passed to, for the message.

    Raises:
        ArgumentTypeError: Not an integer (a float such as 2.5, a string, a bool).
        ArgumentError: An integer below 1.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{_where(where)}{name} must be a positive int, got "
                                f"{value!r} ({type(value).__name__}).")
    if value < 1:
        raise ArgumentError(f"{_where(where)}{name} must be a positive int (1 or more), "
                            f"got {value!r}.")
    return int(value)


def optional_positive_int(value: Any, name: str, where: str = "") -> int | None:
    """As :func:`positive_int`, with ``None`` meaning "the default" (returned as is)."""
    return None if value is None else positive_int(value, name, where)


def positive_finite_float(value: Any, name: str, where: str = "",
                          allow_zero: bool = False) -> float:
    """``value`` as a float when it is a finite real number > 0 (>= 0 with ``allow_zero``);
    bool refused.

    Raises:
        ArgumentTypeError: Not a real number.
        ArgumentError: Negative (or zero), NaN or infinite.
    """
    accepted = "a finite number >= 0" if allow_zero else "a positive finite number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{_where(where)}{name} must be {accepted}, got {value!r} "
                                f"({type(value).__name__}).")
    f = float(value)
    if not math.isfinite(f) or f < 0 or (f == 0 and not allow_zero):
        raise ArgumentError(f"{_where(where)}{name} must be {accepted}, got {value!r}.")
    return f
