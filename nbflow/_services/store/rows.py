"""A batch of run events as rows of the run store, and the ways to write them.

``Rows.execute`` is the fast path: a few multi-row statements in the writer's transaction.
``Rows.execute_each`` is the slow path for a batch SQLite refused: one savepoint per row, text that
is not valid UTF-8 (lone surrogates from ``surrogateescape``) replaced, so one bad row is the only
row lost. A batch's rows are plain values, so a batch that cannot be written before the process
exits can be spooled to a file (``to_spool`` / ``from_spool``) and written by another process.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import threading
import time
from itertools import chain
from typing import Any

from nbflow._core.events import StateChanged
from nbflow._core.records import FlowRun
from nbflow._core.states import FINAL_TYPE_NAMES, FINAL_TYPES, State, StateType
from nbflow._services.database import db
from nbflow._services.store.history import entry_text, history_entry
from nbflow._services.store.processes import own_start_time
from nbflow._services.store.render import pickle_parameters, render_parameters

__all__ = ["Rows", "FlowCreated", "FlowRef", "TASK_CREATED", "TASK_STATE", "LOG", "EDGE", "MAX_MESSAGE",
           "insert_rows", "clean_text"]

MAX_MESSAGE = 100_000  # characters of one log line kept
_RUNNING = StateType.RUNNING
# What a queued tuple is, by its first item.
TASK_CREATED, TASK_STATE, LOG, EDGE = range(4)


class FlowCreated:
    """A flow run announced; its parameters rendered and pickled now, before the flow can mutate them."""

    __slots__ = ("run", "state", "parameters", "blob", "error", "heartbeat")

    def __init__(self, run: FlowRun, state: State) -> None:
        self.run, self.state = run, state
        self.parameters = render_parameters(run.parameters)
        self.blob, self.error = pickle_parameters(run.parameters)
        self.heartbeat = time.time()


class FlowRef:
    """Where the flow of a run can be imported from, for ``on_crashed`` hooks after a crash."""

    __slots__ = ("run_id", "ref")

    def __init__(self, run_id: str, ref: str) -> None:
        self.run_id, self.ref = run_id, ref


_INSERT_FLOW = (
    "INSERT OR IGNORE INTO flow_runs (id, name, flow_name, parameters, parameters_pickle, parameters_error,"
    " parent_flow_run_id, parent_task_run_id, tags, deployment_id, rerun_of, pid, pid_start, host, heartbeat)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_UPDATE_FLOW = (
    "UPDATE flow_runs SET state_type = ?, state_name = ?, state_message = ?, state_timestamp = ?,"
    " history = COALESCE(history || ',', '') || ?, created = COALESCE(created, ?), start_time = ?,"
    " end_time = ?, run_count = ? WHERE id = ?"
)
_INSERT_TASK = (
    "INSERT INTO task_runs (id, flow_run_id, name, task_name, task_key, cache_key, tags, state_type,"
    " state_name, state_message, state_timestamp, history, start_time, end_time, run_count, closing_at)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_SET_TASK = (
    "UPDATE task_runs SET state_type = ?, state_name = ?, state_message = ?, state_timestamp = ?,"
    " history = COALESCE(history || ',', '') || ?, start_time = ?, end_time = ?, run_count = ?, cache_key = ?,"
    " closing_at = ?"
)
# Many rows per statement: UPDATE ... FROM (VALUES (...), (...)) joined on rowid. The id must match
# too: a remembered rowid can be stale (its row deleted by `flow-run delete` and the rowid reused by
# another process), and then the update is lost rather than written over someone else's task run.
_UPDATE_TASKS = (
    "UPDATE task_runs SET state_type = v.column1, state_name = v.column2, state_message = v.column3,"
    " state_timestamp = v.column4, history = COALESCE(history || ',', '') || v.column5, start_time = v.column6,"
    " end_time = v.column7, run_count = v.column8, cache_key = v.column9, closing_at = v.column10 FROM (",
    "(?,?,?,?,?,?,?,?,?,?,?,?)",
    ") AS v WHERE task_runs.rowid = v.column11 AND task_runs.id = v.column12",
)
_UPDATE_TASK_BY_ID = _SET_TASK + " WHERE flow_run_id = ? AND id = ?"  # a run the writer lost track of
_INSERT_LOG = "INSERT INTO logs (flow_run_id, task_run_id, level, timestamp, logger, message) VALUES (?,?,?,?,?,?)"
_INSERT_EDGE = "INSERT INTO edges (flow_run_id, upstream_id, downstream_id) VALUES (?,?,?)"

# Rows per statement. A few fixed sizes, so each statement is compiled once and then reused from the
# connection's cache: compiling a 500-row INSERT costs ten times running it.
_SIZES = (500, 100, 20, 5, 1)  # x 16 columns: well under SQLite's 32,766 parameters per statement
_multi: dict[tuple[str, int], str] = {}


def _chunked(conn: sqlite3.Connection, head: str, one: str, tail: str, rows: list[tuple]) -> None:
    """``head VALUES one, one, ... tail`` for all ``rows``, as few statements as the sizes allow.

    ``executemany`` lets go of the GIL around every row and must win it back from the running flow
    each time (up to 5 ms when the flow is busy); one statement per 500 rows does that much SQLite
    work, in parallel with the engine, per hand-over.
    """
    start, total = 0, len(rows)
    for size in _SIZES:
        while total - start >= size:
            sql = _multi.get((head, size))
            if sql is None:
                sql = _multi[(head, size)] = f"{head} VALUES {','.join([one] * size)}{tail}"
            conn.execute(sql, list(chain.from_iterable(rows[start:start + size])))
            start += size


def insert_rows(conn: sqlite3.Connection, insert: str, rows: list[tuple]) -> None:
    """``executemany(insert, rows)``, 500 rows per statement."""
    head, _, one = insert.partition(" VALUES ")
    _chunked(conn, head, one, "", rows)


def _truncated(message: str) -> str:
    return f"{message[:MAX_MESSAGE]}\n... [{len(message) - MAX_MESSAGE} more characters not stored]"


class Rows:
    """One batch of events turned into rows, then written in one transaction (``execute``)."""

    _LISTS = ("new_flows", "flow_updates", "refs", "new_tasks", "task_updates", "lost_updates", "logs", "edges")

    def __init__(self, rowids: dict[str, int]) -> None:
        self.committed = False  # set by the writer once its transaction is committed
        self.dropped: list[str] = []  # rows SQLite refused even one by one: what they were, and why
        self.rowids = rowids  # task run id -> rowid, for task runs written but not final yet
        self.assigned: dict[str, int] = {}  # rowids of this batch's open task runs, kept once committed
        self.new_flows: list[tuple] = []
        self.flow_updates: list[tuple] = []
        self.new_tasks: list[tuple] = []
        self.open_tasks: list[tuple[int, str]] = []  # (index in new_tasks, id) of those not final
        self.task_updates: list[tuple] = []
        self.lost_updates: list[tuple] = []
        self.logs: list[tuple] = []
        self.edges: list[tuple] = []
        self.refs: list[tuple] = []

    def collect(self, batch: list[Any], active: dict[str, None]) -> list[threading.Event]:
        """Fill the row lists from ``batch``; returns the flush markers found in it.

        A run's row is written once per batch with its latest state and the states it went through:
        a task run created and finished within one batch costs one INSERT.
        """
        markers: list[threading.Event] = []
        tasks: dict[str, list[Any]] = {}  # task run id -> [its creation if in this batch, latest state, history]
        flows: dict[str, list[Any]] = {}  # flow run id -> [run, first state's timestamp, latest state, history]
        logs = self.logs
        for item in batch:
            if item.__class__ is tuple:
                kind = item[0]
                if kind == TASK_STATE:
                    text = entry_text(item[3], item[4], item[5], item[6])
                    entry = tasks.get(item[1])
                    if entry is None:
                        tasks[item[1]] = [None, item, [text]]
                    else:
                        entry[1] = item
                        entry[2].append(text)
                elif kind == LOG:
                    row = item[1:]
                    if len(row[5]) > MAX_MESSAGE:
                        row = (*row[:5], _truncated(row[5]))
                    logs.append(row)
                elif kind == TASK_CREATED:
                    tasks[item[1]] = [item, None, [entry_text(item[7], item[8], item[9], item[10])]]
                else:
                    _, flow_run_id, upstream_ids, downstream_id = item
                    self.edges.extend([(flow_run_id, up, downstream_id) for up in upstream_ids])
                continue
            cls = item.__class__
            if cls is StateChanged:
                run = item.run
                state = item.state
                text = history_entry(state)
                entry = flows.get(run.id)
                if entry is None:
                    flows[run.id] = [run, state.timestamp, state, [text]]
                else:
                    entry[2] = state
                    entry[3].append(text)
            elif cls is FlowCreated:
                run, state = item.run, item.state
                flows[run.id] = [run, state.timestamp, state, [history_entry(state)]]
                self.new_flows.append((
                    run.id, run.name, run.flow_name, item.parameters, item.blob, item.error,
                    run.parent_flow_run_id, run.parent_task_run_id, json.dumps(list(run.tags)) if run.tags else None,
                    run.deployment_id, run.rerun_of, run.pid, own_start_time() if run.pid == os.getpid() else None,
                    run.host, item.heartbeat,
                ))
            elif cls is FlowRef:
                self.refs.append((item.ref, item.run_id))
            else:
                markers.append(item)
        self._task_rows(tasks)
        for run_id, (run, first, state, history) in flows.items():
            self.flow_updates.append((state.type.value, state.name, state.message, state.timestamp, ",".join(history),
                                      first, run.start_time, run.end_time, run.run_count, run_id))
            if state.type in FINAL_TYPES:
                active.pop(run_id, None)
            elif state.type is _RUNNING and run.pid == os.getpid():
                active[run_id] = None
        return markers

    def _task_rows(self, tasks: dict[str, list[Any]]) -> None:
        rowids = self.rowids
        new_tasks = self.new_tasks
        final = FINAL_TYPE_NAMES
        for created, state, history in tasks.values():
            if state is None:  # created, in its first state: a row to fill in later
                self.open_tasks.append((len(new_tasks), created[1]))
                new_tasks.append((*created[1:6], None, *created[6:11], history[0], None, None, 0, None))
                continue
            _, run_id, flow_run_id, type_, name, message, timestamp, start, end, run_count, cache_key, closing = state
            if created is not None:
                if type_ not in final:
                    self.open_tasks.append((len(new_tasks), run_id))
                new_tasks.append((*created[1:6], cache_key, created[6], type_, name, message, timestamp,
                                  ",".join(history), start, end, run_count, closing))
                continue
            values = (type_, name, message, timestamp, ",".join(history), start, end, run_count, cache_key, closing)
            rowid = rowids.pop(run_id, None) if type_ in final else rowids.get(run_id)
            if rowid is not None:
                self.task_updates.append((*values, rowid, run_id))
            else:
                self.lost_updates.append((*values, flow_run_id, run_id))

    def execute(self, conn: sqlite3.Connection) -> None:
        many = conn.executemany
        if self.new_flows:
            many(_INSERT_FLOW, self.new_flows)
        if self.flow_updates:
            many(_UPDATE_FLOW, self.flow_updates)
        if self.refs:
            many("UPDATE flow_runs SET flow_ref = ? WHERE id = ?", self.refs)
        if self.new_tasks:
            # Without an explicit rowid SQLite gives each row max(rowid) + 1, and we hold the write
            # lock: the rows get base + 1, base + 2, ... in order. Remember those still to be updated.
            base = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM task_runs").fetchone()[0]
            insert_rows(conn, _INSERT_TASK, self.new_tasks)
            # Remembered only after COMMIT (see Writer._write): a rolled-back batch's rowids go to
            # other rows later.
            self.assigned = {run_id: base + 1 + index for index, run_id in self.open_tasks}
        if self.task_updates:
            _chunked(conn, *_UPDATE_TASKS, self.task_updates)
        if self.lost_updates:
            many(_UPDATE_TASK_BY_ID, self.lost_updates)
        if self.logs:
            insert_rows(conn, _INSERT_LOG, self.logs)
        if self.edges:
            insert_rows(conn, _INSERT_EDGE, self.edges)

    def __bool__(self) -> bool:
        return any(getattr(self, name) for name in self._LISTS)

    # --- the slow path: one row at a time ---------------------------------------------------------
    def execute_each(self, conn: sqlite3.Connection) -> None:
        """Every row in its own savepoint, in ``execute``'s order; a row SQLite refuses (after its text
        is made valid UTF-8) is left out and noted in ``dropped``. Safe to run again after a rollback."""
        self.dropped = []
        self.assigned = {}
        open_ids = {index: run_id for index, run_id in self.open_tasks}
        steps: list[tuple[str, list[tuple], Any]] = [
            (_INSERT_FLOW, self.new_flows, lambda r: f"flow run {r[1]!r} ({r[0]})"),
            (_UPDATE_FLOW, self.flow_updates, lambda r: f"a state of flow run {r[-1]}"),
            ("UPDATE flow_runs SET flow_ref = ? WHERE id = ?", self.refs, lambda r: f"where flow run {r[1]} is defined"),
            (_INSERT_TASK, self.new_tasks, lambda r: f"task run {r[2]!r} of flow run {r[1]}"),
            (_UPDATE_TASK_BY_ROWID, self.task_updates, lambda r: f"a state of task run {r[-1]}"),
            (_UPDATE_TASK_BY_ID, self.lost_updates, lambda r: f"a state of task run {r[-1]} of flow run {r[-2]}"),
            (_INSERT_LOG, self.logs, lambda r: f"a log line of flow run {r[0]}"),
            (_INSERT_EDGE, self.edges, lambda r: f"a graph edge of flow run {r[0]}"),
        ]
        for sql, rows, what in steps:
            for index, row in enumerate(rows):
                rowid = _one(conn, sql, row)
                if isinstance(rowid, BaseException):
                    self.dropped.append(f"{what(row)}: {rowid}")
                elif sql is _INSERT_TASK and index in open_ids:
                    self.assigned[open_ids[index]] = rowid

    def dropped_text(self) -> str:
        shown = "; ".join(self.dropped[:3])
        more = len(self.dropped) - 3
        return shown + (f"; and {more} more row(s)" if more > 0 else "")

    # --- spooling -----------------------------------------------------------------------------------
    def to_spool(self) -> dict[str, list[list[Any]]]:
        """The rows as JSON-ready lists (bytes, the pickled parameters, as ``{"b64": ...}``)."""
        return {name: [[_jsonable(v) for v in row] for row in getattr(self, name)] for name in self._LISTS if getattr(self, name)}

    @classmethod
    def from_spool(cls, data: dict[str, list[list[Any]]]) -> Rows:
        """Rows read back from ``to_spool``'s output; written by ``execute`` like any batch."""
        rows = cls({})
        for name in cls._LISTS:
            setattr(rows, name, [tuple(_from_json(v) for v in row) for row in data.get(name, ())])
        return rows

    def flow_run_ids(self) -> set[str]:
        """The flow runs this batch has rows of (a task run's state change alone names none)."""
        ids = {row[0] for row in self.new_flows} | {row[-1] for row in self.flow_updates}
        ids |= {row[1] for row in self.new_tasks} | {row[-2] for row in self.lost_updates}
        return ids | {row[0] for row in self.logs}


_UPDATE_TASK_BY_ROWID = _SET_TASK + " WHERE rowid = ? AND id = ?"


def clean_text(value: Any) -> Any:
    """``value`` with what UTF-8 cannot encode (lone surrogates: bytes decoded with surrogateescape)
    replaced by U+FFFD; anything but text unchanged."""
    if value.__class__ is str:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def _one(conn: sqlite3.Connection, sql: str, row: tuple) -> int | BaseException:
    """Run one statement in a savepoint: its lastrowid, or the error it was refused with (undone)."""
    for attempt in (row, tuple(clean_text(v) for v in row)):
        conn.execute("SAVEPOINT one_row")
        try:
            rowid = conn.execute(sql, attempt).lastrowid
        except UnicodeEncodeError as exc:
            error: BaseException = exc
            conn.execute("ROLLBACK TO one_row")
            conn.execute("RELEASE one_row")
            continue  # text that is not UTF-8: try once more with it replaced
        except sqlite3.DatabaseError as exc:
            conn.execute("ROLLBACK TO one_row")
            conn.execute("RELEASE one_row")
            if db.is_busy(exc) or db.is_disk_full(exc):
                raise  # the lock or the disk: the whole batch waits, no row is given up for that
            return exc
        conn.execute("RELEASE one_row")
        return rowid or 0
    return error


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        return base64.b64decode(value["b64"])
    return value
