"""Ops: how each layer type runs on each device.

An op kernel (``Kernel``) is the bridge between a layer description and kernel functions:
given the arrays the executor planned, it returns the bound calls to run. Layers never see
kernels; kernel functions never see layers.
"""
from nexec.ops.base import BoundCall, Call, Kernel, Workspace, rows

__all__ = ["Kernel", "Call", "BoundCall", "Workspace", "rows"]
