"""Fork safety for nbflow's SQLite work on other threads.

``os.fork()`` copies a process with only the thread that called it. If another thread was inside
SQLite at that moment (a writer writing a batch, a reader reading, a thread closing its connection),
the child inherits SQLite's mutexes locked by a thread that no longer exists: its per-connection
mutex, and global ones (the allocator's, taken by every ``sqlite3_malloc``; the unix VFS's, taken by
every open and close). The child's next SQLite call of any kind then hangs. So nbflow does all its
SQLite work inside a ``ForkGuard``, and a fork first waits for the guarded work in progress to end (it
takes milliseconds; the wait is bounded in case another process holds a database).
``multiprocessing`` with the ``fork`` start method is covered the same way.

The child must also never close a connection it inherited: SQLite says an inherited connection must
not be used, and closing one takes its mutex and may checkpoint the WAL from the parent's stale
state. CPython itself frees the other threads' thread-locals in the child (before any after-fork
hook), so a connection that only a thread-local held would be closed there. ``keep`` holds
inherited connections for the rest of the child's life, interpreter exit included.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from types import TracebackType
from typing import Any

__all__ = ["ForkGuard", "FORK_WAIT_S", "keep"]

FORK_WAIT_S = 5.0
"""How long a fork waits for the guarded SQLite work in progress, in all; after that it forks anyway.
(A writer waiting for another process's lock holds its guard only for a short slice of that wait.)"""


class ForkGuard:
    """``with guard:`` around SQLite work that a fork must not cut in half (re-entrant)."""

    __slots__ = ("lock", "_held_for_fork", "__weakref__")

    def __init__(self, *, innermost: bool = False, outermost: bool = False) -> None:
        """``innermost``: held inside other guards, never around one (closing connections, which a
        garbage collection may do inside any guarded block); a fork takes these last, so the two
        never wait for each other. ``outermost``: held around work that takes other guards (building
        the default runtime, which imports modules and opens the store); a fork takes these first."""
        # Re-entrant: a reader may nest, and a fork from inside a guarded block of its own thread
        # must not wait for itself. ``with guard.lock:`` is the same guard, cheaper (hot paths).
        self.lock = threading.RLock()
        self._held_for_fork = False
        (_innermost if innermost else _outermost if outermost else _guards).add(self)

    def __enter__(self) -> None:
        self.lock.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.lock.release()

    def _before_fork(self, deadline: float) -> None:
        self._held_for_fork = self.lock.acquire(timeout=max(0.0, deadline - time.monotonic()))

    def _after_fork(self, child: bool) -> None:
        """The parent's threads go on. In the child the guard is free: released, or, if the fork gave up
        waiting for a thread that is gone now, replaced (that thread's work is kept, never finished)."""
        if self._held_for_fork:
            self._held_for_fork = False
            self.lock.release()
        elif child:
            self.lock = threading.RLock()


_guards: weakref.WeakSet[ForkGuard] = weakref.WeakSet()
_innermost: weakref.WeakSet[ForkGuard] = weakref.WeakSet()
_outermost: weakref.WeakSet[ForkGuard] = weakref.WeakSet()
_forking = threading.Lock()  # one fork at a time: the guards' flags belong to the thread that forks
_kept: list[Any] = []


def keep(obj: Any) -> None:
    """In a forked child: hold ``obj`` (an inherited connection) so it is never freed, not even at exit.

    Module globals are freed at interpreter exit, so a list alone would close the connections then;
    one reference that nobody owns keeps them (a connection is a few kilobytes and a file descriptor).
    """
    if obj is None:
        return
    import ctypes

    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
    _kept.append(obj)  # and visible, for tests and post-mortems


def _before_fork() -> None:
    _forking.acquire()
    deadline = time.monotonic() + FORK_WAIT_S
    for guard in [*_outermost, *_guards, *_innermost]:
        guard._before_fork(deadline)


def _after_fork(child: bool = False) -> None:
    for guard in [*_outermost, *_guards, *_innermost]:
        guard._after_fork(child)
    _forking.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork, after_in_child=lambda: _after_fork(True))
