"""The planner: pure Python, runs no kernels. Each module is one stage.

``order`` (topological order) -> ``lowering`` (flat op list, nested models inlined)
-> ``shapes`` (shape inference) -> ``fusion`` (activations into producers)
-> ``memory`` (liveness and arena offsets) -> ``plan`` (the printable result).
"""
from nexec.planner.plan import Plan, make_plan

__all__ = ["Plan", "make_plan"]
