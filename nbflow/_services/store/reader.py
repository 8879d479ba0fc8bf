"""Reading the run store: plain SQL into plain dicts (``nbflow.runs`` turns them into models).

Every function takes a connection; none writes. Run references typed by people (ids, id prefixes,
run names) are resolved here, with one clear error when nothing or more than one run matches.
"""

from __future__ import annotations

import logging
import pickle
import re
import sqlite3
from heapq import merge
from operator import itemgetter
from typing import Any

from nbflow._core.events import ENGINE_LOGGER, closing_text
from nbflow._core.states import State, StateType
from nbflow._services.store.history import parse_history
from nbflow.exceptions import ParametersNotStoredError, RunNotFoundError

__all__ = [
    "resolve_flow_run", "flow_runs", "flow_run", "task_runs", "task_run", "logs", "closing_lines", "lines", "edges",
    "subflow_runs", "parse_history", "load_parameters", "state_words", "FLOW_COLUMNS", "TASK_COLUMNS",
]

FLOW_COLUMNS = (
    "id", "name", "flow_name", "flow_ref", "parameters", "parent_flow_run_id", "parent_task_run_id", "tags",
    "deployment_id", "rerun_of", "state_type", "state_name", "state_message", "state_timestamp", "history",
    "created", "start_time", "end_time", "run_count", "pid", "host", "heartbeat",
)
TASK_COLUMNS = (
    "id", "flow_run_id", "name", "task_name", "task_key", "cache_key", "tags", "state_type", "state_name",
    "state_message", "state_timestamp", "history", "start_time", "end_time", "run_count", "closing_at",
)
_FLOW_SELECT = f"SELECT {', '.join(FLOW_COLUMNS)} FROM flow_runs"
_TASK_SELECT = f"SELECT {', '.join(TASK_COLUMNS)} FROM task_runs"
_HEX = re.compile(r"[0-9a-f]{1,32}")
_STATE_TYPES = frozenset(t.value for t in StateType)
_TIMESTAMP = itemgetter(4)  # of a log row


def _flow_dict(row: tuple) -> dict[str, Any]:
    return dict(zip(FLOW_COLUMNS, row))


def resolve_flow_run(conn: sqlite3.Connection, ref: str) -> str:
    """The id of the one flow run whose id is ``ref``, starts with ``ref``, or whose name is ``ref``."""
    ref = ref.strip()
    if not ref:
        raise RunNotFoundError("Give a flow run id, a unique prefix of one, or a run name.")
    if conn.execute("SELECT 1 FROM flow_runs WHERE id = ?", (ref,)).fetchone():
        return ref
    matches: list[tuple[str, str]] = []
    if _HEX.fullmatch(ref.lower()):  # GLOB is case-sensitive, so it can use the primary key index
        matches = conn.execute(
            "SELECT id, name FROM flow_runs WHERE id GLOB ? ORDER BY created DESC LIMIT 6", (ref.lower() + "*",)
        ).fetchall()
    if not matches:
        matches = conn.execute(
            "SELECT id, name FROM flow_runs WHERE name = ? ORDER BY created DESC LIMIT 6", (ref,)
        ).fetchall()
    if len(matches) == 1:
        return str(matches[0][0])
    if not matches:
        raise RunNotFoundError(f"No flow run has the id, id prefix or name {ref!r}. List runs with `nbflow flow-run ls`.")
    listed = ", ".join(f"{run_id[:12]} ({name})" for run_id, name in matches[:5])
    more = " and more" if len(matches) > 5 else ""
    raise RunNotFoundError(f"{ref!r} matches several flow runs: {listed}{more}. Give more characters of the id.")


def state_words() -> tuple[list[str], list[str]]:
    """``(types, names)`` a state filter knows: ``failed``... and the named states ``Cached``..."""
    from nbflow._core import states as _states

    types = [t.value.lower() for t in StateType]
    named = [n for n in _states.__all__ if n not in ("State", "StateType") and n.upper() not in _STATE_TYPES]
    return types, named


def _state_filter(state: str) -> tuple[str, tuple[str, ...]]:
    """A state type (``failed``) matches by type; anything else (``Cached``, ``TimedOut``) by name."""
    if state.upper() in _STATE_TYPES:
        return "state_type = ?", (state.upper(),)
    return "lower(state_name) = ?", (state.lower(),)


def flow_runs(conn: sqlite3.Connection, *, flow_name: str | None = None, state: str | None = None,
              limit: int | None = 20, parent: str | None = None, before: float | None = None,
              id_prefix: str | None = None, top_level: bool = False) -> list[dict[str, Any]]:
    """Flow runs, newest first, optionally of one flow, in one state, or under one parent run."""
    where: list[str] = []
    args: list[Any] = []
    if id_prefix is not None:
        prefix = id_prefix.strip().lower()
        if not _HEX.fullmatch(prefix):
            return []
        where.append("id GLOB ?")
        args.append(prefix + "*")
    if top_level:
        where.append("parent_flow_run_id IS NULL")
    if flow_name is not None:
        where.append("flow_name = ?")
        args.append(flow_name)
    if state is not None:
        clause, values = _state_filter(state)
        where.append(clause)
        args.extend(values)
    if parent is not None:
        where.append("parent_flow_run_id = ?")
        args.append(parent)
    if before is not None:
        where.append("created < ?")
        args.append(before)
    sql = _FLOW_SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created DESC, rowid DESC"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    return [_flow_dict(row) for row in conn.execute(sql, args)]


def flow_run(conn: sqlite3.Connection, ref: str) -> dict[str, Any]:
    """One flow run by id, unique id prefix or name."""
    run_id = resolve_flow_run(conn, ref)
    row = conn.execute(_FLOW_SELECT + " WHERE id = ?", (run_id,)).fetchone()
    return _flow_dict(row)


def subflow_runs(conn: sqlite3.Connection, flow_run_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(_FLOW_SELECT + " WHERE parent_flow_run_id = ? ORDER BY created, rowid", (flow_run_id,))
    return [_flow_dict(row) for row in rows]


def task_runs(conn: sqlite3.Connection, flow_run_id: str) -> list[tuple]:
    """Rows (``TASK_COLUMNS``) of the task runs of one flow run, in the order they were created."""
    return conn.execute(_TASK_SELECT + " WHERE flow_run_id = ? ORDER BY rowid", (flow_run_id,)).fetchall()


def task_run(conn: sqlite3.Connection, task_run_id: str, flow_run_id: str | None = None) -> dict[str, Any]:
    """One task run by its full id. Task run ids are not indexed (see the schema): without
    ``flow_run_id`` this reads the whole table, which is fine for a person asking, not for a loop."""
    if flow_run_id is not None:
        row = conn.execute(_TASK_SELECT + " WHERE flow_run_id = ? AND id = ?", (flow_run_id, task_run_id)).fetchone()
    else:
        row = conn.execute(_TASK_SELECT + " WHERE id = ?", (task_run_id,)).fetchone()
    if row is None:
        raise RunNotFoundError(f"No task run has the id {task_run_id!r}.")
    return dict(zip(TASK_COLUMNS, row))


def logs(conn: sqlite3.Connection, flow_run_id: str, *, task_run_id: str | None = None, after: int = 0,
         limit: int | None = None) -> list[tuple]:
    """``(id, flow_run_id, task_run_id, level, timestamp, logger, message)`` rows of one flow run (its own
    lines and its task runs'), or of one of its task runs, oldest first; ``after`` a log id (for follow)."""
    sql = ("SELECT id, flow_run_id, task_run_id, level, timestamp, COALESCE(logger, 'nbflow.engine'), message"
           " FROM logs WHERE flow_run_id = ? AND id > ?")
    args: list[Any] = [flow_run_id, after]
    if task_run_id is not None:
        sql += " AND task_run_id = ?"
        args.append(task_run_id)
    sql += " ORDER BY id"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    return conn.execute(sql, args).fetchall()


def closing_lines(conn: sqlite3.Connection, flow_run_id: str, *, task_run_id: str | None = None,
                  since: float | None = None) -> list[tuple]:
    """The closing lines kept in task run rows (schema: ``closing_at``), as ``logs`` rows with no id,
    oldest first; ``since``: only those written at that time or later."""
    sql = ("SELECT id, state_type, state_name, state_message, state_timestamp, closing_at FROM task_runs"
           " WHERE flow_run_id = ? AND closing_at IS NOT NULL")
    args: list[Any] = [flow_run_id]
    if task_run_id is not None:
        sql += " AND id = ?"
        args.append(task_run_id)
    if since is not None:
        sql += " AND closing_at >= ?"
        args.append(since)
    rows = conn.execute(sql + " ORDER BY closing_at", args).fetchall()
    return [(None, flow_run_id, id_, logging.INFO, at, ENGINE_LOGGER,
             closing_text(State(StateType(type_), name, message, timestamp=timestamp)))
            for id_, type_, name, message, timestamp, at in rows]


def lines(conn: sqlite3.Connection, flow_run_id: str, *, task_run_id: str | None = None, after: int = 0,
          since: float | None = None) -> list[tuple]:
    """Every log line of a flow run (or of one of its task runs): ``logs`` rows (``after`` a log id)
    and the closing lines kept in task run rows (``since`` a time), in time order (rows of ``logs``
    keep their own order)."""
    return list(merge(logs(conn, flow_run_id, task_run_id=task_run_id, after=after),
                      closing_lines(conn, flow_run_id, task_run_id=task_run_id, since=since), key=_TIMESTAMP))


def edges(conn: sqlite3.Connection, flow_run_id: str) -> list[tuple[str, str]]:
    """``(upstream_id, downstream_id)`` pairs of one flow run, in the order they were found."""
    return conn.execute(
        "SELECT upstream_id, downstream_id FROM edges WHERE flow_run_id = ? ORDER BY rowid", (flow_run_id,)
    ).fetchall()


def task_names(conn: sqlite3.Connection, flow_run_id: str) -> dict[str, str]:
    return dict(conn.execute("SELECT id, name FROM task_runs WHERE flow_run_id = ?", (flow_run_id,)).fetchall())


def load_parameters(conn: sqlite3.Connection, flow_run_id: str) -> dict[str, Any]:
    """The real parameter values a flow run was called with (for reruns)."""
    row = conn.execute(
        "SELECT name, parameters_pickle, parameters_error FROM flow_runs WHERE id = ?", (flow_run_id,)
    ).fetchone()
    if row is None:
        raise RunNotFoundError(f"No flow run has the id {flow_run_id!r}.")
    name, blob, error = row
    if blob is None:
        why = error or "they were not recorded"
        raise ParametersNotStoredError(
            f"The parameters of flow run {name!r} were not stored ({why}); pass them again explicitly."
        )
    try:
        return dict(pickle.loads(blob))
    except Exception as exc:
        raise ParametersNotStoredError(
            f"The parameters of flow run {name!r} cannot be loaded in this process ({type(exc).__name__}: {exc}): "
            "values defined in a notebook load only in that notebook's kernel. Pass them again explicitly."
        ) from None
