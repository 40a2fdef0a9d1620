"""Deterministic topological order of the nodes that produce some tensors.

The walk lives in ``nexec.graph`` (a ``Function`` needs it to validate itself, and the graph
sits below the planner); the planner's first stage is that same order.
"""
from __future__ import annotations

from nexec.graph import topological_order

__all__ = ["topological_order"]
