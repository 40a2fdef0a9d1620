"""Learning-rate schedules with Keras 3's names, arguments and formulas.

A schedule maps the optimizer's step count (``iterations`` before the step, starting at 0)
to the learning rate of that step, as ``keras.optimizers.schedules``. The optimizer writes
the value into the kernel's ``hyper[1]`` just before each update, so the update and the
decoupled weight decay both use it, as Keras'. Values are computed in float64 Python
arithmetic (Keras computes them in float32; the difference is below float32 resolution).

Example:
    >>> from nexec.optimizers import schedules
    >>> schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)(20)
    0.025
"""
from __future__ import annotations

import math
from typing import Any

__all__ = ["LearningRateSchedule", "ExponentialDecay", "PiecewiseConstantDecay",
           "PolynomialDecay", "InverseTimeDecay", "CosineDecay", "serialize", "deserialize",
           "BUILTIN_SCHEDULES"]


def _number(cls: str, arg: str, value: Any, *, positive: bool = False,
            non_negative: bool = False) -> float:
    """``value`` as a float, or a ValueError naming the argument and what is accepted."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(float(value))
    if ok and positive:
        ok = value > 0
    if ok and non_negative:
        ok = value >= 0
    if not ok:
        want = "a finite number > 0" if positive else \
            "a finite number >= 0" if non_negative else "a finite number"
        raise ValueError(f"{cls}: argument `{arg}` must be {want}. Received: {arg}={value!r}")
    return float(value)


class LearningRateSchedule:
    """Base: ``schedule(step) -> learning rate`` for ``step`` = updates taken so far."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(step)")

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} must implement get_config()")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LearningRateSchedule:
        return cls(**config)


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (floored with
    ``staircase``).

    Args:
        initial_learning_rate: Rate at step 0.
        decay_steps: Steps per factor ``decay_rate``; > 0.
        decay_rate: Factor per ``decay_steps``.
        staircase: Decay in whole intervals.
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float,
                 staircase: bool = False, name: str = "ExponentialDecay") -> None:
        n = type(self).__name__
        self.initial_learning_rate = _number(n, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _number(n, "decay_steps", decay_steps, positive=True)
        self.decay_rate = _number(n, "decay_rate", decay_rate)
        self.staircase = bool(staircase)
        self.name = name

    def __call__(self, step: int) -> float:
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p

    def get_config(self) -> dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i-1] < step <= boundaries[i]``, ``values[-1]`` after the last boundary.

    Args:
        boundaries: Increasing step counts.
        values: One more rate than boundaries.
    """

    def __init__(self, boundaries: list[int], values: list[float],
                 name: str = "PiecewiseConstant") -> None:
        n = type(self).__name__
        if len(boundaries) != len(values) - 1:
            raise ValueError(f"{n}: `boundaries` must have one element fewer than `values`. "
                             f"Received: boundaries={boundaries} of length {len(boundaries)}, "
                             f"values={values} of length {len(values)}.")
        self.boundaries = [_number(n, "boundaries", b) for b in boundaries]
        self.values = [_number(n, "values", v) for v in values]
        if any(b >= c for b, c in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(f"{n}: `boundaries` must be strictly increasing. "
                             f"Received: boundaries={boundaries}")
        self.name = name

    def __call__(self, step: int) -> float:
        for b, v in zip(self.boundaries, self.values):
            if step <= b:
                return v
        return self.values[-1]

    def get_config(self) -> dict[str, Any]:
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """``(initial - end) * (1 - step / decay_steps) ** power + end``, the step held at
    ``decay_steps`` (or, with ``cycle``, ``decay_steps`` stretched to the next multiple).

    Args:
        initial_learning_rate: Rate at step 0.
        decay_steps: Steps to reach ``end_learning_rate``; > 0.
        end_learning_rate: Default 0.0001.
        power: Default 1.0.
        cycle: Restart the decay after ``decay_steps``.
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int,
                 end_learning_rate: float = 0.0001, power: float = 1.0, cycle: bool = False,
                 name: str = "PolynomialDecay") -> None:
        n = type(self).__name__
        self.initial_learning_rate = _number(n, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _number(n, "decay_steps", decay_steps, positive=True)
        self.end_learning_rate = _number(n, "end_learning_rate", end_learning_rate)
        self.power = _number(n, "power", power)
        self.cycle = bool(cycle)
        self.name = name

    def __call__(self, step: int) -> float:
        s = float(step)
        steps = self.decay_steps
        if self.cycle:
            steps = steps * (1.0 if s == 0 else math.ceil(s / self.decay_steps))
        else:
            s = min(s, steps)
        p = s / steps
        return (self.initial_learning_rate - self.end_learning_rate) * (1 - p) ** self.power \
            + self.end_learning_rate

    def get_config(self) -> dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "end_learning_rate": self.end_learning_rate,
                "power": self.power, "cycle": self.cycle, "name": self.name}


class InverseTimeDecay(LearningRateSchedule):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)`` (floored with
    ``staircase``).

    Args:
        initial_learning_rate: Rate at step 0.
        decay_steps: > 0.
        decay_rate: Default none; Keras requires it.
        staircase: Decay in whole intervals.
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float,
                 staircase: bool = False, name: str = "InverseTimeDecay") -> None:
        n = type(self).__name__
        self.initial_learning_rate = _number(n, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _number(n, "decay_steps", decay_steps, positive=True)
        self.decay_rate = _number(n, "decay_rate", decay_rate)
        self.staircase = bool(staircase)
        self.name = name

    def __call__(self, step: int) -> float:
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate / (1.0 + self.decay_rate * p)

    def get_config(self) -> dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Cosine decay from the rate to ``alpha`` times it over ``decay_steps``, after an
    optional linear warmup from ``initial_learning_rate`` to ``warmup_target`` over
    ``warmup_steps`` (Keras 3: with a ``warmup_target`` the decay starts from it).

    Args:
        initial_learning_rate: Rate at step 0.
        decay_steps: Steps of the cosine part; > 0.
        alpha: Final fraction of the rate; default 0.0.
        warmup_target: Rate reached at the end of the warmup; None: no warmup.
        warmup_steps: Steps of the warmup; default 0.
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int, alpha: float = 0.0,
                 name: str = "CosineDecay", warmup_target: float | None = None,
                 warmup_steps: int = 0) -> None:
        n = type(self).__name__
        self.initial_learning_rate = _number(n, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _number(n, "decay_steps", decay_steps, positive=True)
        self.alpha = _number(n, "alpha", alpha)
        self.name = name
        self.warmup_target = None if warmup_target is None else \
            _number(n, "warmup_target", warmup_target)
        self.warmup_steps = _number(n, "warmup_steps", warmup_steps, non_negative=True)

    def _decay(self, step: float, decay_from: float) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * (step / self.decay_steps)))
        return decay_from * ((1 - self.alpha) * cosine + self.alpha)

    def __call__(self, step: int) -> float:
        s = float(step)
        if self.warmup_target is None:
            return self._decay(min(s, self.decay_steps), self.initial_learning_rate)
        s = min(s, self.decay_steps + self.warmup_steps)
        if s < self.warmup_steps:
            delta = self.warmup_target - self.initial_learning_rate
            return delta * (s / self.warmup_steps) + self.initial_learning_rate
        return self._decay(s - self.warmup_steps, self.warmup_target)

    def get_config(self) -> dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha, "name": self.name,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


BUILTIN_SCHEDULES: dict[str, type[LearningRateSchedule]] = {c.__name__: c for c in (
    ExponentialDecay, PiecewiseConstantDecay, PolynomialDecay, InverseTimeDecay, CosineDecay)}


def serialize(schedule: LearningRateSchedule) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}`` (JSON-serialisable), as Keras writes it."""
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config: dict[str, Any]) -> LearningRateSchedule:
    """The schedule :func:`serialize` wrote."""
    name = config.get("class_name")
    cls: Any = BUILTIN_SCHEDULES.get(str(name))
    if cls is None:
        raise ValueError(f"Unknown learning-rate schedule {name!r}; known: "
                         f"{sorted(BUILTIN_SCHEDULES)}.")
    return cls.from_config(dict(config["config"]))
