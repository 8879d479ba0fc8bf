"""The crash sweep: flow runs left ``Running`` by a process that is gone become ``Crashed``.

Run by every process when it opens the store. Same host: the recorded pid is dead, a zombie, or now
belongs to a process that started at another time (a reused pid). Another host: no heartbeat for
``crash_after_seconds``. Marking is a conditional UPDATE, so when two processes sweep at once each
run is marked (and its ``on_crashed`` hooks called) by exactly one of them.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import sqlite3
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

from nbflow._core.forkguard import ForkGuard
from nbflow._core.records import HOST
from nbflow._core.threads import start_thread
from nbflow._services.store import db
from nbflow._services.store.history import FINAL_SQL, history_entry
from nbflow._services.store.processes import is_alive

__all__ = ["sweep", "owed_hooks", "CrashedRun", "run_crash_hooks"]

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
             1 if _importable(flow_ref) else None, run_id),
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


# --- on_crashed hooks ---------------------------------------------------------------------------

def _importable(ref: str | None) -> tuple[str, str] | None:
    if not ref or ":" not in ref:
        return None
    module, _, qualname = ref.rpartition(":")
    # Notebooks, scripts (recorded by path) and closures: not importable without running someone's
    # script here, so their hooks are skipped, silently.
    path_like = module.endswith(".py") or "/" in module or "\\" in module
    if not module or module == "__main__" or path_like or "<" in qualname:
        return None
    return module, qualname


def _load_flow(module: str, qualname: str) -> Any:
    from nbflow._engine.flow import Flow

    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj if isinstance(obj, Flow) else None


def run_crash_hooks(path: Any, crashed: list[CrashedRun]) -> threading.Thread | None:
    """Call the ``on_crashed`` hooks of importable flows, on a thread (imports can be slow).

    A hook's failure is logged to the run; it never stops the sweep or the process.
    """
    todo = [(run, spec) for run in crashed if (spec := _importable(run.flow_ref)) is not None]
    if not todo:
        return None
    thread = threading.Thread(target=_call_hooks, args=(path, todo), name="nbflow-crash-hooks", daemon=True)
    start_thread(thread)
    return thread


def _call_hooks(path: Any, todo: list[tuple[CrashedRun, tuple[str, str]]]) -> None:
    from nbflow._core.records import FlowRun
    from nbflow._core.states import Crashed

    with _GUARD:  # SQLite work: a fork waits for it (see ``_forkguard``)
        conn = db.connect(path)
    lines: list[tuple] = []
    try:
        for run, (module, qualname) in todo:
            if not _claim(conn, run.id):
                continue  # another process that runs flows called them
            try:
                flow = _load_flow(module, qualname)
            except Exception:
                continue  # moved, renamed, or needs what this process lacks: nothing to call
            hooks = tuple(getattr(getattr(flow, "options", None), "on_crashed", ()) or ())
            if not hooks:
                continue
            with _GUARD:
                parameters = _parameters(conn, run.id)
            flow_run = FlowRun(run.name, run.flow_name, parameters, id=run.id)
            state = Crashed(run.message, timestamp=run.timestamp)
            flow_run.state, flow_run.end_time = state, run.timestamp
            for hook in hooks:
                name = getattr(hook, "__name__", repr(hook))
                try:
                    hook(flow, flow_run, state)
                except Exception as exc:
                    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                    message = f"An error was encountered while running hook {name!r}: {exc!r}\n{trace}"
                    lines.append((run.id, logging.ERROR, time.time(), message))
                else:
                    lines.append((run.id, logging.INFO, time.time(), f"Hook {name!r} finished running successfully"))
        if lines:
            db.write(conn, lambda c: c.executemany(
                "INSERT INTO logs (flow_run_id, task_run_id, level, timestamp, logger, message)"
                " VALUES (?, NULL, ?, ?, 'nbflow.sweep', ?)", lines), _GUARD)
    except Exception as exc:  # the store went away under us: say so, never raise in a thread
        print(f"nbflow: on_crashed hooks could not finish: {exc!r}", file=sys.stderr)
    finally:
        with _GUARD:
            conn.close()


def _claim(conn: sqlite3.Connection, run_id: str) -> bool:
    """Take the hooks of ``run_id`` for this process: exactly one process calls them."""
    return bool(db.write(conn, lambda c: c.execute(
        "UPDATE flow_runs SET crash_hooks_owed = NULL WHERE id = ? AND crash_hooks_owed = 1", (run_id,)).rowcount,
        _GUARD))


def _parameters(conn: sqlite3.Connection, run_id: str) -> dict[str, Any]:
    row = conn.execute("SELECT parameters_pickle FROM flow_runs WHERE id = ?", (run_id,)).fetchone()
    if row and row[0] is not None:
        try:
            return dict(pickle.loads(row[0]))
        except Exception:
            pass
    return {}
