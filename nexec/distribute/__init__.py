"""Data-parallel training across processes and machines, on Ray.

``compile(..., distribute=RayDataParallel(num_workers=4))`` makes ``fit`` train on Ray
workers (docs/distributed.md). Importing this package does not import Ray; the strategy
imports it when ``fit`` first needs workers (``pip install 'nexec[ray]'``).
"""
from __future__ import annotations

from nexec.distribute.errors import WorkerError
from nexec.distribute.strategy import RayDataParallel

__all__ = ["RayDataParallel", "WorkerError"]
