"""How each worker reaches the training arrays without the driver copying them per step.

An array backed by a file (``np.memmap``, or a contiguous view of one such as a
``validation_split`` slice) travels as its path, offset, dtype and shape: every worker maps
the same file (on a cluster the path must be on a shared file system). Any other array is put
into Ray's object store once per ``fit``; workers on one node read that one copy through
shared memory, without copying it. Per step only row indices travel.
"""
from __future__ import annotations

import weakref
from typing import Any

import numpy as np

__all__ = ["Sources", "open_source"]


def _memmap_of(a: np.ndarray) -> np.memmap | None:
    """The file mapping ``a``'s memory belongs to, if any."""
    b: Any = a
    while b is not None:
        if isinstance(b, np.memmap) and getattr(b, "filename", None):
            return b
        b = getattr(b, "base", None)
    return None


def describe(a: np.ndarray, put: Any) -> tuple:
    """What a worker needs to open ``a``: ``("memmap", path, offset, dtype, shape)`` for a
    C-contiguous view of a file, else ``("object", ref)`` with ``ref = put(a)``."""
    m = _memmap_of(a)
    if m is not None and a.flags.c_contiguous:
        offset = int(m.offset) + (a.ctypes.data - m.ctypes.data)
        return ("memmap", str(m.filename), offset, a.dtype.str, tuple(a.shape))
    return ("object", put(a))


def open_source(spec: tuple, get: Any) -> np.ndarray:
    """The worker's read-only array for one :func:`describe` entry."""
    if spec[0] == "memmap":
        _, path, offset, dtype, shape = spec
        return np.memmap(path, dtype=np.dtype(dtype), mode="r", offset=offset, shape=shape)
    return get(spec[1])


class Sources:
    """The descriptions of the arrays of the current ``fit``, remade only when they change.

    The arrays are held by weak references: a new ``fit`` over new arrays (or arrays the
    user dropped) gets new descriptions, and the old object-store copies are released.
    """

    def __init__(self) -> None:
        self._refs: list[weakref.ref] = []
        self.specs: list[tuple] = []
        self.key = 0

    def update(self, arrays: list[np.ndarray], put: Any) -> bool:
        """Describes ``arrays`` unless they are the ones already described; returns whether
        the descriptions changed (workers then need them again)."""
        if len(arrays) == len(self._refs) and all(
                r() is a for r, a in zip(self._refs, arrays)):
            return False
        self._refs = [weakref.ref(a) for a in arrays]
        self.specs = [describe(a, put) for a in arrays]
        self.key += 1
        return True
