"""Starting nbflow's own threads so that Ctrl-C and a kernel interrupt reach the main thread.

A signal sent to a process may be handed to any of its threads that does not block it (Linux
prefers the main thread; macOS does not). Python runs signal handlers only in the main thread, between
two bytecodes: a SIGINT that lands on an idle worker thread sets Python's flag, but a main thread
blocked in ``time.sleep`` or a socket read is not woken to see it, so a Ctrl-C or a kernel interrupt
is noticed only when that call returns. Every thread nbflow starts blocks SIGINT and SIGTERM, so
they reach the main thread and interrupt its call.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

__all__ = ["start_thread", "renew_after_fork"]

_SIGNALS = frozenset(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)
_CAN_MASK = hasattr(signal, "pthread_sigmask")


def start_thread(thread: threading.Thread) -> threading.Thread:
    """``thread.start()``, the new thread blocking SIGINT and SIGTERM (a new thread inherits the mask
    of the thread that creates it; the caller's own mask is put back at once, and a signal that
    arrives meanwhile waits for it)."""
    if not _CAN_MASK:
        thread.start()
        return thread
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return thread


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
