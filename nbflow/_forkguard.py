"""Fork safety for nbflow's background writer threads.

``os.fork()`` copies a process with only the thread that called it. If another thread was inside
SQLite at that moment (the run store's or the result cache's writer, writing a batch), the child
inherits SQLite's internal mutexes locked by a thread that no longer exists, and its first write
hangs. So a writer does its disk work inside a ``ForkGuard``, and a fork first waits for the guarded
work in progress to end (a batch takes milliseconds; the wait is bounded in case another process
holds the database). ``multiprocessing`` with the ``fork`` start method is covered the same way.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from types import TracebackType

__all__ = ["ForkGuard", "FORK_WAIT_S"]

FORK_WAIT_S = 5.0
"""How long a fork waits for the writers' batches in progress, in all; after that it forks anyway.
(A writer waiting for another process's lock holds its guard only for a short slice of that wait.)"""


class ForkGuard:
    """``with guard:`` around disk work that a fork must not cut in half."""

    __slots__ = ("_lock", "_held_for_fork", "__weakref__")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held_for_fork = False
        _guards.add(self)

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._lock.release()

    def _before_fork(self, deadline: float) -> None:
        self._held_for_fork = self._lock.acquire(timeout=max(0.0, deadline - time.monotonic()))

    def _after_fork(self) -> None:
        """Both sides: the parent's writer goes on; the child's starts over on a free guard."""
        if self._held_for_fork:
            self._held_for_fork = False
            self._lock.release()


_guards: weakref.WeakSet[ForkGuard] = weakref.WeakSet()
_forking = threading.Lock()  # one fork at a time: the guards' flags belong to the thread that forks


def _before_fork() -> None:
    _forking.acquire()
    deadline = time.monotonic() + FORK_WAIT_S
    for guard in list(_guards):
        guard._before_fork(deadline)


def _after_fork() -> None:
    for guard in list(_guards):
        guard._after_fork()
    _forking.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork)
