"""The crash sweep: flow runs left ``Running`` by a process that is gone become ``Crashed``.

Run by every process when it opens the store. Same host: the recorded pid is dead, a zombie, or now
belongs to a process that started at another time (a reused pid). Another host: no heartbeat for
``crash_after_seconds``. Marking is a conditional UPDATE, so when two processes sweep at once each
run is marked by exactly one of them. The sweep returns the runs it marked; calling their
``on_crashed`` hooks is the business of the layer above (``nbflow._app.crash_hooks``), which claims
each run's hooks here (``HookLedger``) so that exactly one process calls them.
"""

from __future__ import annotations

import logging
import os
import pickle
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from nbflow._core.entrypoints import importable
from nbflow._core.forkguard import ForkGuard
from nbflow._core.records import HOST
from nbflow._services.database import db
from nbflow._services.store.history import FINAL_SQL, history_entry
from nbflow._services.store.processes import is_alive

__all__ = ["CrashedRun", "HookLedger", "owed_hooks", "sweep"]

_GUARD = ForkGuard()  # the crash-hook thread's SQLite work


@dataclass(frozen=True)
class CrashedRun:
    """A flow run this process marked ``Crashed``."""

    id: str
    name: str
    flow_name: str
    flow_ref: str | None
    message: str
    timestamp: float


def _verdict(row: sqlite3.Row | tuple, now: float, crash_after: float) -> str | None:
    """Why the run's process is gone, or None while it may be alive."""
    _id, _name, _flow, _ref, pid, pid_start, host, heartbeat, start = row
    last_sign = heartbeat or start or now
    if host == HOST and pid is not None:
        if pid == os.getpid():
            return None  # ours: running in this very process
        alive = is_alive(pid, pid_start)
        if alive is False:
            return f"its process (pid {pid} on {host}) is gone"
        if alive is True:
            return None
        # Alive, but we cannot tell a reused pid from the original: fall back to the heartbeat.
    if now - last_sign > crash_after:
        return f"no heartbeat from its process (pid {pid} on {host}) for {now - last_sign:.0f} seconds"
    return None


def sweep(conn: sqlite3.Connection, crash_after_seconds: float, now: float | None = None) -> list[CrashedRun]:
    """Mark dead processes' running flow runs (and their unfinished task runs) ``Crashed``.

    Cheap when there is nothing to do: one indexed query.
    """
    now = time.time() if now is None else now
    rows = conn.execute(
        "SELECT id, name, flow_name, flow_ref, pid, pid_start, host, heartbeat, start_time"
        " FROM flow_runs WHERE state_type = 'RUNNING'"
    ).fetchall()
    dead = [(row, why) for row in rows if (why := _verdict(row, now, crash_after_seconds)) is not None]
    if not dead:
        return []
    return db.write(conn, lambda c: _mark(c, dead, now))


def owed_hooks(conn: sqlite3.Connection) -> list[CrashedRun]:
    """Crashed runs whose ``on_crashed`` hooks no process has called yet (one indexed query)."""
    rows = conn.execute(
        "SELECT id, name, flow_name, flow_ref, state_message, state_timestamp FROM flow_runs"
        " WHERE crash_hooks_owed = 1"
    ).fetchall()
    return [CrashedRun(*row) for row in rows]


def _mark(conn: sqlite3.Connection, dead: list[tuple[Any, str]], now: float) -> list[CrashedRun]:
    from nbflow._core.states import Crashed

    append = "history = COALESCE(history || ',', '') || ?"
    marked = []
    for row, why in dead:
        run_id, name, flow_name, flow_ref = row[0], row[1], row[2], row[3]
        message = f"Flow run crashed: {why}"
        changed = conn.execute(
            "UPDATE flow_runs SET state_type = 'CRASHED', state_name = 'Crashed', state_message = ?,"
            f" state_timestamp = ?, end_time = ?, {append}, crash_hooks_owed = ?"
            " WHERE id = ? AND state_type = 'RUNNING'",
            (message, now, now, history_entry(Crashed(message, timestamp=now)),
             1 if importable(flow_ref) else None, run_id),
        ).rowcount
        if not changed:
            continue  # another process swept it first
        conn.execute(
            "INSERT INTO logs (flow_run_id, task_run_id, level, timestamp, logger, message)"
            " VALUES (?, NULL, ?, ?, 'nbflow.sweep', ?)",
            (run_id, logging.ERROR, now, f"{message}; marked Crashed by pid {os.getpid()} on {HOST}"),
        )
        task_message = "Task run crashed: its flow run's process is gone"
        entry = history_entry(Crashed(task_message, timestamp=now))
        conn.execute(
            "UPDATE task_runs SET state_type = 'CRASHED', state_name = 'Crashed', state_message = ?,"
            f" state_timestamp = ?, end_time = ?, {append}"
            f" WHERE flow_run_id = ? AND (state_type IS NULL OR state_type NOT IN {FINAL_SQL})",
            (task_message, now, now, entry, run_id),
        )
        marked.append(CrashedRun(run_id, name, flow_name, flow_ref, message, now))
    return marked


# --- the on_crashed hooks owed ---------------------------------------------------------------------

class HookLedger:
    """The crash-hook thread's own connection: claim a run's hooks, read its parameters, log results.

    Every call holds a fork guard (see ``nbflow._core.forkguard``): a fork waits for its SQLite work.
    """

    def __init__(self, path: Any) -> None:
        with _GUARD:
            self._conn = db.connect(path)

    def claim(self, run_id: str) -> bool:
        """Take the hooks of ``run_id`` for this process: exactly one process calls them."""
        return bool(db.write(self._conn, lambda c: c.execute(
            "UPDATE flow_runs SET crash_hooks_owed = NULL WHERE id = ? AND crash_hooks_owed = 1", (run_id,)).rowcount,
            _GUARD))

    def parameters(self, run_id: str) -> dict[str, Any]:
        """The run's recorded parameters ({} when they cannot be unpickled here)."""
        with _GUARD:
            row = self._conn.execute("SELECT parameters_pickle FROM flow_runs WHERE id = ?", (run_id,)).fetchone()
        if row and row[0] is not None:
            try:
                return dict(pickle.loads(row[0]))
            except Exception:
                pass
        return {}

    def log(self, lines: list[tuple[str, int, float, str]]) -> None:
        """Add ``(flow_run_id, level, timestamp, message)`` lines to the runs' logs."""
        if lines:
            db.write(self._conn, lambda c: c.executemany(
                "INSERT INTO logs (flow_run_id, task_run_id, level, timestamp, logger, message)"
                " VALUES (?, NULL, ?, ?, 'nbflow.sweep', ?)", lines), _GUARD)

    def close(self) -> None:
        with _GUARD:
            self._conn.close()
