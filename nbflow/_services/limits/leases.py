"""Lease renewal: one background thread per process keeps this process's slots and tickets alive.

A held slot (and a place in the queue) counts only until its ``expires`` time. While the process
lives, this thread pushes that time forward every third of a lease; when the process dies (even by
SIGKILL) nobody renews, and the slots come back to everyone else one lease later.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

from nbflow._core.threads import start_thread, starting

__all__ = ["Renewer"]


class Renewer:
    """Renews the registered leases and tickets every ``lease_seconds / 3``; also reaps expired rows.

    ``renew(lease_ids, tickets)`` and ``reap()`` are the storage calls, supplied by the service so
    this class knows nothing of SQL. The thread starts with the first registration and is a daemon:
    it never keeps a process alive.
    """

    def __init__(self, lease_seconds: float, renew: Callable[[list[str], list[int]], Any], reap: Callable[[], Any]) -> None:
        self.interval = lease_seconds / 3.0
        self._renew = renew
        self._reap = reap
        self._leases: set[str] = set()
        self._tickets: set[int] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._reported = False

    def add_lease(self, lease_id: str) -> None:
        with self._lock:
            self._leases.add(lease_id)
            self._start()

    def remove_lease(self, lease_id: str) -> None:
        with self._lock:
            self._leases.discard(lease_id)

    def add_ticket(self, ticket: int) -> None:
        with self._lock:
            self._tickets.add(ticket)
            self._start()

    def remove_ticket(self, ticket: int) -> None:
        with self._lock:
            self._tickets.discard(ticket)

    def held(self) -> tuple[list[str], list[int]]:
        """The leases and tickets this process holds now (a snapshot)."""
        with self._lock:
            return list(self._leases), list(self._tickets)

    def stop(self) -> None:
        self._stop.set()

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            with starting():  # started and recorded together (see nbflow._core.threads)
                self._thread = threading.Thread(target=self._loop, name="nbflow-lease-renewer", daemon=True)
                start_thread(self._thread)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            leases, tickets = self.held()
            try:
                if leases or tickets:
                    self._renew(leases, tickets)
                self._reap()
            except Exception as exc:  # a locked or vanished database: try again next round
                if not self._reported:
                    self._reported = True
                    print(f"nbflow: could not renew concurrency slot leases: {exc!r}", file=sys.stderr)
            else:
                self._reported = False
