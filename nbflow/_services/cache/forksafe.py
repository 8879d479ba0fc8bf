"""diskcache's ``Cache`` whose per-thread SQLite connections are closed only where a fork waits for it.

diskcache opens one connection per thread (in a ``threading.local``) and closes it when that thread
ends, or when it first sees a new process id after a fork. Both are SQLite calls that a fork must not
cut in half, or that the child must not make (see ``nbflow._core.forkguard``): a thread that ends closes
its connection inside the cache's ``ForkGuard`` here, and a forked child keeps every connection it
inherited, its own thread's and (as CPython frees the other threads' thread-locals in the child) the
gone threads', without closing them.

This module (``Cache._con`` and ``_local``) and ``disk.py`` (the ``Cache`` table) are the only ones in
nbflow that touch diskcache's private parts; ``tests/test_checks_diskcache.py`` checks what both rely on.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from typing import Any

import diskcache  # type: ignore[import-untyped]

from nbflow._core.forkguard import ForkGuard, keep

__all__ = ["GuardedCache"]


_CLOSING = ForkGuard(innermost=True)  # a garbage collection may free a thread's locals anywhere
_CLOSE_WAIT_S = 10.0  # a close takes milliseconds; longer means its holder is gone


class _Closer:
    """Stored after a thread's connection in its locals; freed with them (after the connection's own
    entry: a dict frees its items in order), it holds the last reference and closes it, guarded."""

    __slots__ = ("con", "pid")

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con: sqlite3.Connection | None = con
        self.pid = os.getpid()

    def __del__(self, getpid: Any = os.getpid, error: Any = sqlite3.ProgrammingError, guard: Any = _CLOSING,
                finalizing: Any = sys.is_finalizing) -> None:
        # (defaults: this can run at interpreter exit, after the module's globals are gone)
        if self.con is None:
            return
        if getpid() != self.pid:
            keep(self.con)  # a forked child freeing the parent's threads' locals: never close
            return
        # At interpreter exit a daemon thread that lets go of the GIL in ``close`` is stopped for good
        # when it wants it back, still holding the guard (but no SQLite lock: ``close`` has returned):
        # waiting for the guard then would hang the exit. No fork can come after exit has begun.
        unguarded = finalizing() or not guard.lock.acquire(timeout=_CLOSE_WAIT_S)
        try:
            con, self.con = self.con, None
            try:
                con.close()  # type: ignore[union-attr]
            except error:
                pass  # freed on another thread (the whole cache was dropped): freeing it closes it
            del con
        finally:
            if not unguarded:
                guard.lock.release()


class GuardedCache(diskcache.Cache):  # type: ignore[misc]
    """``diskcache.Cache`` that never closes an inherited connection, and whose threads' connections
    are closed under a ``ForkGuard``. Use it inside a guard (connections open on first use)."""

    @property
    def _con(self) -> sqlite3.Connection:
        local = self._local
        con = getattr(local, "con", None)
        if con is not None and local.pid == os.getpid():
            return con  # the hot path: as cheap as diskcache's own check
        con = diskcache.Cache._con.fget(self)  # a new process or thread: diskcache opens one
        old = getattr(local, "closer", None)
        if old is not None:  # its connection was closed (or kept) by ``close``, inside the caller's guard
            old.con = None
            del local.closer  # so that the new one goes after ``con``
        local.closer = _Closer(con)
        return con

    def close(self) -> None:
        local = self._local
        con = getattr(local, "con", None)
        if con is not None and getattr(local, "pid", None) != os.getpid():
            keep(con)  # inherited from the parent process: forget it, never close it
            del local.con
            return
        super().close()
