"""Per-key locks shared by threads and processes, for ``cache_policy=...configure(lock=True)``.

A lock is an ``flock`` on ``$NBFLOW_HOME/cache-locks/<key>.lock``: the operating system releases it
when its holder dies, so a killed process can never leave a key locked. The holder deletes the file
before unlocking; a waiter that wins the lock on a file that is no longer the one at the path
(deleted meanwhile) lets go and tries again, so two holders can never exist at once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from nbflow._core.home import make_private_dir

try:
    import fcntl
except ImportError:  # Windows: locking is skipped there, with a warning from the caller
    fcntl = None  # type: ignore[assignment]

__all__ = ["KeyLocks", "LOCKS_SUPPORTED", "same_file"]

LOCKS_SUPPORTED = fcntl is not None


class KeyLocks:
    """Locks on cache keys under one folder."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def _path(self, key: str) -> str:
        return str(self.directory / f"{key}.lock")

    def acquire(self, key: str, timeout: float | None = None, sleep=time.sleep, monotonic=time.monotonic) -> int | None:
        """Block until ``key`` is ours; returns a handle for ``release``, or None on timeout."""
        assert fcntl is not None
        path = self._path(key)
        deadline = None if timeout is None else monotonic() + timeout
        delay = 0.001
        while True:
            make_private_dir(Path(self.directory))
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if deadline is None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                else:
                    while True:
                        try:
                            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                            break
                        except BlockingIOError:
                            if monotonic() >= deadline:
                                os.close(fd)
                                return None
                            sleep(delay)
                            delay = min(delay * 2, 0.05)
                if same_file(fd, path):
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # the holder before us deleted the file: lock the new one

    def release(self, key: str, handle: int) -> None:
        try:
            os.unlink(self._path(key))
        except OSError:
            pass
        os.close(handle)  # closing the descriptor drops the flock


def same_file(fd: int, path: str) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not removed, nor replaced by another)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)
