"""Numba kernels: functions over arrays that write into given outputs.

Kernels know nothing of layers or graphs. ``cpu/`` and ``cuda/`` hold one module per op
family with the same file names.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["sources_stamp"]

_stamp: str | None = None


def sources_stamp() -> str:
    """A digest of every kernel module's name, size and modification time (this package,
    ``jit.py`` and ``vector_width.py`` included): what is compiled or measured from kernels
    is reused only while it is unchanged. Numba's own cache watches each kernel's file
    alone, not the helpers of other modules it inlines (a specialised kernel's), nor
    timings (the conv algorithm measurements). Plain Python: the planner reads it too."""
    global _stamp
    if _stamp is None:
        root = Path(__file__).resolve().parent
        parts = [f"{p.relative_to(root)}:{s.st_size}:{s.st_mtime_ns}"
                 for p in sorted(root.rglob("*.py")) for s in [p.stat()]]
        _stamp = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return _stamp
