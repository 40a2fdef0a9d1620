"""Numba's on-disk cache of a kernel, safe when several processes add to it at once.

Numba keeps one index file per function (signature -> data file) and names a new data file
after the entries it has just read from the index. Two processes that compile different
signatures of one kernel at the same time (two test workers, two notebooks, a Ray worker per
core, models of different dtypes) can both read the same index, both pick the same data file
name, and leave the index pairing one signature with the other's machine code: a later
process then runs the wrong code. Each process can also drop the other's entry.

:class:`SharedIndexFile` keeps Numba's format and changes two things: a data file is named
after a digest of its key, so different signatures never share a file; and the index is
re-read and rewritten under an exclusive lock on the cache folder, after the data file is in
place, so the index never names a missing or foreign file and no entry is lost. Numba's
numbered files were overwritten after a source edit; named by key they would not be, so the
first save after an edit deletes the data files of the stale index. Where the
platform has no ``fcntl`` (Windows) or the file system refuses locks (some network mounts),
the names alone still rule out a wrong pairing; an entry can then be lost (compiled again).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
from typing import Any, Iterator

from numba.core.caching import IndexDataCacheFile

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["SharedIndexFile", "share_cache"]


class SharedIndexFile(IndexDataCacheFile):
    """Numba's index and data files, with data files named by key and a locked index."""

    def save(self, key: Any, data: Any) -> None:
        name = self._data_name_for(key)
        self._save_data(name, data)  # first: the index never names a file not yet written
        with self._locked():
            stamp, overloads = self._read_index()  # under the lock: keep others' entries
            if stamp != self._source_stamp:  # of other sources: its data files go
                for stale in set(overloads.values()) - {name}:
                    with contextlib.suppress(OSError):
                        os.unlink(self._data_path(stale))
                overloads = {}
            if overloads.get(key) != name:
                overloads[key] = name
                self._save_index(overloads)

    def _read_index(self) -> tuple[Any, dict]:
        """The index's source stamp and entries, as Numba's ``_load_index`` reads them but
        whatever the stamp; ``(None, {})`` for none, another Numba's or an unreadable one."""
        try:
            with open(self._index_path, "rb") as f:
                if pickle.load(f) != self._version:
                    return None, {}
                return pickle.loads(f.read())
        except Exception:  # noqa: BLE001 - no index, or unreadable: start a new one
            return None, {}

    def _data_name_for(self, key: Any) -> str:
        # A key is (signature, target, digests of the bytecode): its repr names every type
        # in full, so it is stable across processes and distinct keys get distinct files.
        digest = hashlib.sha256(repr(key).encode()).hexdigest()[:20]
        return self._data_name_pattern.replace("{number:d}", digest)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            folder = os.open(self._cache_path, os.O_RDONLY) if fcntl is not None else -1
        except OSError:  # a folder that cannot be opened for reading: save unlocked
            folder = -1
        try:
            if folder >= 0:
                with contextlib.suppress(OSError):  # no locks here: see the module docstring
                    fcntl.flock(folder, fcntl.LOCK_EX)  # released when the descriptor closes
            yield
        finally:
            if folder >= 0:
                os.close(folder)


def share_cache(dispatcher: Any) -> Any:
    """Gives a ``cache=True`` Numba dispatcher the shared-safe index; returns it."""
    cache = getattr(dispatcher, "_cache", None)
    cache_file = getattr(cache, "_cache_file", None)
    if type(cache_file) is IndexDataCacheFile:
        # Same state, same format: only save() and the data file names differ.
        cache_file.__class__ = SharedIndexFile
    return dispatcher
