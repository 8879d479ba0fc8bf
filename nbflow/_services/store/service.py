"""``runtime.store``: the run store of one ``NBFLOW_HOME``, its writer, and a connection for readers."""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nbflow._core.forkguard import ForkGuard, keep
from nbflow._services.database import db
from nbflow._services.store import spool
from nbflow._services.store.sweep import CrashedRun, owed_hooks, sweep
from nbflow._services.store.writer import Writer

__all__ = ["Store"]


class Store:
    """Open (and migrate) ``$NBFLOW_HOME/nbflow.db``, sweep crashed runs, and record runs as they happen.

    Opening raises ``ConfigurationError`` naming the path when the home folder or database is unusable.
    """

    def __init__(self, settings: Any, *, log_level: int = logging.INFO) -> None:
        self.settings = settings
        self.home = Path(settings.home)
        try:
            with _opening:  # migrations: a fork waits for them like for any SQLite work
                self.path: Path = db.open_database(self.home)
            full = False
        except db.DiskFullError as exc:  # keep the store and run anyway: the writer keeps the history
            print(f"nbflow: {exc}", file=sys.stderr)
            self.path, full = self.home / db.DB_NAME, True
        self.writer = Writer(self.path, level=log_level, heartbeat_seconds=float(settings.heartbeat_seconds))
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._guard = ForkGuard()  # held while the reader connection is used: a fork waits for it
        self._unsubscribe: Callable[[], None] | None = None
        # Crashed runs (marked by this process or any other, a reader included) whose ``on_crashed``
        # hooks no process has called yet: the layer above calls them (``nbflow._app.crash_hooks``).
        self.owed: list[CrashedRun] = []
        self.crashed: list[CrashedRun] = [] if full else self._sweep()
        _stores.add(self)

    @classmethod
    def attach(cls, runtime: Any) -> Store:
        """Open the store of ``runtime.settings.home`` and subscribe its writer to the runtime's events."""
        store = cls(runtime.settings, log_level=runtime.log_level)
        store._unsubscribe = runtime.bus.subscribe(store.writer.on_event)
        runtime.store = store
        return store

    def _sweep(self) -> list[CrashedRun]:
        """Write what processes spooled, then mark the runs of dead processes ``Crashed``: in that
        order, so a run whose end was spooled is not swept."""
        try:
            with self.reading() as conn, db.translate_errors(self.path):
                spool.replay(conn, self.home)
                crashed = sweep(conn, float(self.settings.crash_after_seconds))
                self.owed = owed_hooks(conn)
        except db.DiskFullError as exc:  # the sweep can wait for the next process; the runs cannot
            print(f"nbflow: {exc}", file=sys.stderr)
            return []
        return crashed

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every run event emitted so far in this process is committed."""
        return self.writer.flush() if timeout is None else self.writer.flush(timeout)

    @contextmanager
    def reading(self, flush: bool = False) -> Iterator[sqlite3.Connection]:
        """The reader connection (one per store, used by one thread at a time); ``flush`` writes first."""
        if flush:
            self.writer.flush()
        with self._lock, self._guard:
            if self._conn is None:
                with db.translate_errors(self.path):  # a full disk can refuse even a connection
                    self._conn = db.connect(self.path)
            yield self._conn

    def write(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``work(conn)`` in one write transaction (deletes, prunes), after pending events are written."""
        with self.reading(flush=True) as conn, db.translate_errors(self.path):
            return db.write(conn, work)

    def _after_fork(self) -> None:
        # The parent's connection must not be used here, nor closed (see _forkguard): kept, never
        # freed; a new one opens on demand.
        keep(self._conn)
        self._conn = None
        self._lock = threading.RLock()

    def close(self) -> None:
        """Stop recording: write what is queued, stop the writer, close connections."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.writer.close()
        with self._lock, self._guard:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"


_stores: weakref.WeakSet[Store] = weakref.WeakSet()
_opening = ForkGuard()


def _after_fork() -> None:
    for store in list(_stores):
        store._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
