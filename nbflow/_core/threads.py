"""Starting nbflow's own threads so that Ctrl-C and a kernel interrupt reach the main thread.

A signal sent to a process may be handed to any of its threads that does not block it (Linux
prefers the main thread; macOS does not). Python runs signal handlers only in the main thread, between
two bytecodes: a SIGINT that lands on an idle worker thread sets Python's flag, but a main thread
blocked in ``time.sleep`` or a socket read is not woken to see it, so a Ctrl-C or a kernel interrupt
is noticed only when that call returns. Every thread nbflow starts blocks SIGINT and SIGTERM, so
they reach the main thread and interrupt its call.

A thread that is starting a thread must not be interrupted (``PyThreadState_SetAsyncExc``) at that
moment: until the new thread has run its first line, CPython 3.11 files it under its creator's id,
so the exception can land in the new thread instead, before it says it started, and the creator
waits in ``Thread.start()`` forever. ``start_thread`` and ``interrupting`` share a lock for this;
``with starting():`` also covers recording the new thread (``self._thread = ...``), which an
interrupt between the two would leave recorded but never started.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

__all__ = ["interrupting", "on_event_loop", "renew_after_fork", "start_thread", "starting"]

_starting = threading.RLock()  # held while nbflow starts a thread; see ``interrupting``

_SIGNALS = frozenset(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)
_CAN_MASK = hasattr(signal, "pthread_sigmask")


def start_thread(thread: threading.Thread) -> threading.Thread:
    """``thread.start()``, the new thread blocking SIGINT and SIGTERM (a new thread inherits the mask
    of the thread that creates it; the caller's own mask is put back at once, and a signal that
    arrives meanwhile waits for it)."""
    with _starting:
        if not _CAN_MASK:
            thread.start()
            return thread
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return thread


def starting() -> Any:
    """Hold this while starting a thread and recording it: no interrupt lands in between."""
    return _starting


def interrupting() -> Any:
    """Hold this while raising an exception in another thread: no thread of nbflow's is starting then."""
    return _starting


def renew_after_fork(namespace: dict[str, Any], *names: str) -> None:
    """In a forked child, give the module-level locks ``names`` of ``namespace`` (a module's
    ``globals()``) back free: one that another thread held at the fork would never be released there,
    and the child's first use would hang (the first flow call of a process holds one while it builds
    the default runtime)."""
    if not hasattr(os, "register_at_fork"):
        return

    def renew() -> None:
        for name in names:
            namespace[name] = threading.Lock()

    os.register_at_fork(after_in_child=renew)


def on_event_loop() -> bool:
    """Whether this thread runs an event loop (which a blocking wait would freeze)."""
    aio = sys.modules.get("asyncio")  # not imported: no loop can be running
    if aio is None:
        return False
    try:
        aio.get_running_loop()
    except RuntimeError:
        return False
    return True



def _renew_starting() -> None:
    global _starting  # a lock another thread held at the fork is never released in the child
    _starting = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_starting)
