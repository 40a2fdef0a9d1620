"""Files written atomically: readers see the old file or the new one, never half of one.

A leaf module (standard library only), so that saving, plotting and the planner's pictures
share one way of writing files without importing each other.
"""
from __future__ import annotations

import os
import tempfile
from typing import IO, Callable

__all__ = ["atomic_write", "is_zip_file"]


def atomic_write(path: str, write: Callable[[IO[bytes]], object]) -> None:
    """Calls ``write(binary_file)`` on a temporary file next to ``path``, then renames it
    over ``path``: readers see the old file or the new one, never half of one.

    Args:
        path: The file to (re)write.
        write: Writes the whole content into the binary file it is given.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".nexec-", suffix=".tmp", dir=folder)
    try:
        os.chmod(tmp, _file_mode(path))  # mkstemp makes 0600; keep what a plain open() gives
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _file_mode(path: str) -> int:
    """The existing file's permissions, or those ``open(path, "w")`` would give."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def is_zip_file(path: str) -> bool:
    """Whether ``path`` starts as every zip, so every ``.npz`` and saved model, does."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"
