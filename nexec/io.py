"""Files written atomically: readers see the old file or the new one, never half of one.

A leaf module (standard library only), so that saving, plotting and the planner's pictures
share one way of writing files without importing each other.

The temporary file is ``.nexec-<pid>-<random>.tmp`` in the folder of the file finally
written (a symlink's target: the link stays a link). It is removed on every error path; one
left by a killed save (its writer's pid is gone, or it is over an hour old) is swept by the
next save into that folder. Errors name the user's path, never the temporary's.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
import time
from typing import IO, Callable

__all__ = ["atomic_write", "is_zip_file", "sweep_stale_temporaries"]

_TMP = re.compile(r"^\.nexec-(?:(\d+)-)?[^/]*\.tmp$")
STALE_AFTER_S = 3600.0  # a temporary this old is stale whoever wrote it


def atomic_write(path: str, write: Callable[[IO[bytes]], object]) -> None:
    """Calls ``write(binary_file)`` on a temporary file next to ``path``'s target, then
    renames it over the target: readers see the old file or the new one, never half of one.

    Args:
        path: The file to (re)write; a symlink is followed and stays a link.
        write: Writes the whole content into the binary file it is given.

    Raises:
        IsADirectoryError: ``path`` is a directory.
        OSError: ``path`` exists but is not a regular file (a device such as ``/dev/full``,
            a FIFO, a socket), or the folder is missing, read-only or full; the error's
            ``filename`` is ``path``.
    """
    target = os.path.realpath(path)
    _check_target(path, target)
    folder = os.path.dirname(target)
    sweep_stale_temporaries(folder)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".nexec-{os.getpid()}-", suffix=".tmp", dir=folder)
        os.chmod(tmp, _file_mode(target))  # mkstemp makes 0600; keep what open() gives
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        tmp = None
        _fsync_folder(folder)
    except OSError as e:
        if e.errno is None:
            raise
        raise type(e)(e.errno, e.strerror, path) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _check_target(path: str, target: str) -> None:
    """Refuses an existing target that a rename would destroy rather than update."""
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory; give a file path to save to",
                                path)
    if not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, "is not a regular file (a device, FIFO or socket); nexec "
                      "saves only to regular files", path)


def sweep_stale_temporaries(folder: str, max_age_s: float = STALE_AFTER_S) -> list[str]:
    """Removes ``.nexec-*.tmp`` files that killed saves left in ``folder``: those whose
    writer's pid no longer runs, and any older than ``max_age_s``. Best effort: a file that
    cannot be removed is left. Returns the paths removed."""
    removed: list[str] = []
    now = time.time()
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = _TMP.match(name)
        if m is None:
            continue
        full = os.path.join(folder, name)
        try:
            old = now - os.lstat(full).st_mtime > max_age_s
        except OSError:
            continue
        pid = int(m.group(1)) if m.group(1) else None
        if old or (pid is not None and pid != os.getpid() and not _alive(pid)):
            with contextlib.suppress(OSError):
                os.unlink(full)
                removed.append(full)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, as another user's
        return True
    return True


def _fsync_folder(folder: str) -> None:
    """Makes the rename itself durable (where the platform allows opening a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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
