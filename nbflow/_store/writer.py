"""The store's subscriber: queue run events at emit time, write them in batches on a background thread.

The hot path (every task run emits three events) copies what the store needs of a task run's
event into a flat tuple of strings and numbers and appends it to a deque; it never keeps the engine's
objects. Holding them (the run, its states, its parameters) until the next batch would keep every
task's objects alive across garbage collections: the collector then promotes them to its oldest
generation and runs full collections, which cost a chain of small tasks more than the writing itself.
The thread wakes every ``BATCH_SECONDS`` while events arrive, writes everything queued in one
``BEGIN IMMEDIATE`` transaction of multi-row statements (SQLite works without the GIL, so the engine
keeps running), and sleeps until the next event, or the next heartbeat, when there is nothing to do.
One row per task run (its states in a ``history`` column, its closing line's time in ``closing_at``) and
one per other log line: that is the whole cost of a task.
"""

from __future__ import annotations

import atexit
import json
import os
import sqlite3
import sys
import threading
import time
import weakref
from collections import deque
from itertools import chain
from pathlib import Path
from typing import Any

from nbflow._context import FlowRunContext, current
from nbflow._events import ENGINE_LOGGER, EdgesAdded, FlowRunFinished, LogEmitted, RunCreated, StateChanged
from nbflow._forkguard import ForkGuard, keep
from nbflow._runs import FlowRun, TaskRun
from nbflow._states import FINAL_TYPE_NAMES, FINAL_TYPES, State, StateType
from nbflow._store import db
from nbflow._store.history import entry_text, history_entry
from nbflow._store.processes import own_start_time
from nbflow._store.render import pickle_parameters, render_parameters
from nbflow._threads import start_thread

__all__ = ["Writer", "BATCH_SECONDS"]

# Fewer, larger transactions cost the writer less CPU (fewer GIL hand-offs, the same index pages
# rewritten to the WAL less often: -15 % measured), and CPU is what a busy machine runs short of.
# Another process sees a run's progress at most this late; this process's readers flush first.
BATCH_SECONDS = 0.1
MAX_BATCH = 20_000  # events per transaction: keeps other processes' waits for the write lock short
MAX_MESSAGE = 100_000  # characters of one log line kept
FLUSH_TIMEOUT_S = 60.0
FLOW_END_WAIT_S = 5.0
WRITER_BUSY_SLICE_MS = 200
_CHECKPOINT_PAGES = 10_000
CHECKPOINT_IDLE_S = 1.0
_RUNNING = StateType.RUNNING
_TYPE_NAME = {t: t.value for t in StateType}  # as stored in state_type
_INFO = 20
# What a queued tuple is, by its first item.
_TASK_CREATED, _TASK_STATE, _LOG, _EDGE = range(4)


class _FlowCreated:
    """A flow run announced; its parameters rendered and pickled now, before the flow can mutate them."""

    __slots__ = ("run", "state", "parameters", "blob", "error", "heartbeat")

    def __init__(self, run: FlowRun, state: State) -> None:
        self.run, self.state = run, state
        self.parameters = render_parameters(run.parameters)
        self.blob, self.error = pickle_parameters(run.parameters)
        self.heartbeat = time.time()


class _FlowRef:
    """Where the flow of a run can be imported from, for ``on_crashed`` hooks after a crash."""

    __slots__ = ("run_id", "ref")

    def __init__(self, run_id: str, ref: str) -> None:
        self.run_id, self.ref = run_id, ref


class Writer:
    """Subscribe it to a bus; ``flush()`` returns once everything emitted before the call is committed."""

    def __init__(self, path: Path, *, level: int, heartbeat_seconds: float) -> None:
        self.path = path
        self.level = level
        self.heartbeat_seconds = heartbeat_seconds
        self._reset()
        self._closed = False
        self._reported = False
        _writers.add(self)

    def _reset(self) -> None:
        """Fresh queue and no thread: also what a forked child needs (threads do not survive a fork).

        In a child, the gone thread's connection is kept, never closed (see ``_forkguard``)."""
        keep(getattr(self, "_conn", None))
        self._conn: sqlite3.Connection | None = None  # the thread's connection, while it runs
        self._queue: deque[Any] = deque()
        self._append = self._queue.append
        self._wake = threading.Event()
        self._idle = True  # the thread is asleep (or not started): the next event must wake it
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._active: dict[str, None] = {}  # flow runs of this process now running: they get heartbeats
        self._rowids: dict[str, int] = {}  # task runs written but not final: where to update them
        self._stopping = False
        self._finalizer: Any = None  # multiprocessing's exit hook, when there is one
        self._guard = ForkGuard()  # held around SQLite work: a fork waits for it

    # --- emit side (any thread) ---------------------------------------------------------------
    def on_event(self, event: Any) -> None:
        """The subscriber (a bound method: cheaper to call than the instance). Task runs' events,
        the vast majority, take the first test of each branch and become one tuple."""
        cls = event.__class__
        if cls is StateChanged:
            run = event.run
            state = event.state
            if run.__class__ is TaskRun:
                # A final state that stands for the closing line dates it in the row (schema: closing_at).
                self._append((_TASK_STATE, run.id, run.flow_run_id, _TYPE_NAME[state.type], state.name,
                              state.message, state.timestamp, run.start_time, run.end_time, run.run_count,
                              run.cache_key, event.closing_at if self.level <= _INFO else None))
            else:
                if state.type is _RUNNING and run.run_count == 0:
                    self._flow_started(run)
                self._append(event)  # flow runs are few: their live record is read by the writer
        elif cls is LogEmitted:
            if event.level < self.level:
                return
            run = event.run
            logger = None if event.logger == ENGINE_LOGGER else event.logger  # stored as NULL: the most common
            if run.__class__ is TaskRun:
                self._append((_LOG, run.flow_run_id, run.id, event.level, event.timestamp, logger, event.message))
            else:
                self._append((_LOG, run.id, None, event.level, event.timestamp, logger, event.message))
        elif cls is RunCreated:
            run = event.run
            state = event.state
            if run.__class__ is TaskRun:
                tags = json.dumps(list(run.tags)) if run.tags else None
                self._append((_TASK_CREATED, run.id, run.flow_run_id, run.name, run.task_name, run.task_key, tags,
                              _TYPE_NAME[state.type], state.name, state.message, state.timestamp))
            else:
                self._append(_FlowCreated(run, state))
        elif cls is EdgesAdded:
            self._append((_EDGE, event.flow_run_id, event.upstream_ids, event.downstream_id))
        elif cls is FlowRunFinished:
            if event.run.parent_flow_run_id is None:
                # The caller of the flow sees its run committed when the call returns; another
                # process holding the database's lock delays the call FLOW_END_WAIT_S at most.
                self.flush(FLOW_END_WAIT_S)
            return
        if self._idle:
            self._wake_up()

    __call__ = on_event

    def _flow_started(self, run: FlowRun) -> None:
        """Record where the flow is defined (reruns and crash hooks import it); the context knows."""
        ctx = current.get()
        if ctx.__class__ is FlowRunContext and ctx.flow_run is run:  # type: ignore[union-attr]
            from nbflow._flows import flow_entrypoint  # the one spelling reruns read back

            self._append(_FlowRef(run.id, flow_entrypoint(ctx.flow.fn)))  # type: ignore[union-attr]

    def _wake_up(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._closed:
                    thread = threading.Thread(target=self._loop, name="nbflow-store-writer", daemon=True)
                    start_thread(thread)
                    self._thread = thread
                    self._write_at_exit()
        self._wake.set()

    def flush(self, timeout: float | None = FLUSH_TIMEOUT_S) -> bool:
        """Block until every event queued before this call is written (or failed to be). False on timeout."""
        thread = self._thread
        if thread is None or not thread.is_alive() or threading.current_thread() is thread:
            return True
        done = threading.Event()
        self._append(done)
        self._wake.set()
        if done.wait(timeout):
            return True
        print(f"nbflow: the run store {self.path} is busy (locked by another process?); "
              "run history will be written when it frees up.", file=sys.stderr)
        return False

    def close(self, timeout: float | None = FLUSH_TIMEOUT_S) -> None:
        """Write what is queued and stop the thread; later events are dropped."""
        self._closed = True
        thread = self._thread
        if thread is None:
            return
        self._stopping = True
        self._wake.set()
        thread.join(timeout)
        atexit.unregister(self._at_exit)
        if self._finalizer is not None:
            self._finalizer.cancel()

    def _write_at_exit(self) -> None:
        """Write what is queued when the process ends: at interpreter exit, and when a multiprocessing
        child ends (it leaves with ``os._exit``, which skips atexit, right after its target returns)."""
        atexit.register(self._at_exit)
        util = sys.modules.get("multiprocessing.util")  # loaded in every multiprocessing child
        if util is not None:
            self._finalizer = util.Finalize(None, self._at_exit, exitpriority=0)

    def _at_exit(self) -> None:
        self.flush(timeout=10.0)

    # --- writer thread ------------------------------------------------------------------------
    def _loop(self) -> None:
        with self._guard:
            conn = self._conn = db.connect(self.path)
            # Wait for another process's lock in short slices, the pauses between them outside the
            # fork guard (db.write retries): a fork never waits long for a writer that only waits.
            conn.execute(f"PRAGMA busy_timeout={WRITER_BUSY_SLICE_MS}")
            conn.execute("PRAGMA cache_size=-16000")  # 16 MB: index pages of big runs stay in memory
            # Copying the WAL back into the database (a checkpoint, with an fsync) is done once nothing
            # has been written for CHECKPOINT_IDLE_S, not in the commit of a batch while flows run; a
            # long burst still checkpoints once the WAL reaches ~40 MB.
            conn.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
            conn.execute("PRAGMA journal_size_limit=67108864")  # and the WAL file shrinks back to 64 MB
        dirty = False
        next_beat = time.monotonic() + self.heartbeat_seconds
        queue = self._queue
        try:
            while True:
                self._idle = False
                popleft = queue.popleft  # only this thread pops, so len() is a floor
                batch = [popleft() for _ in range(min(len(queue), MAX_BATCH))]
                if batch:
                    self._write(conn, batch)
                    dirty = True
                if time.monotonic() >= next_beat:
                    self._heartbeat(conn)
                    next_beat = time.monotonic() + self.heartbeat_seconds
                if self._stopping and not queue:
                    return
                if batch:
                    self._wake.wait(BATCH_SECONDS)
                    self._wake.clear()
                    continue
                self._idle = True
                if queue:
                    continue
                timeout = max(0.0, next_beat - time.monotonic()) if self._active else None
                if dirty:
                    timeout = CHECKPOINT_IDLE_S if timeout is None else min(timeout, CHECKPOINT_IDLE_S)
                woke = self._wake.wait(timeout)
                self._wake.clear()
                if dirty and not woke and not queue:  # quiet for a while: fold the WAL back now
                    self._checkpoint(conn)
                    dirty = False
        finally:
            with self._guard:
                conn.close()
                self._conn = None

    def _write(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        markers = []
        try:
            rows = _Rows(self._rowids)
            markers = rows.collect(batch, self._active)
            db.write(conn, rows.execute, self._guard)
            self._rowids.update(rows.assigned)
        except Exception as exc:  # never let the writer die: report once, drop the batch, go on
            self._report(exc)
        finally:
            for marker in markers:
                marker.set()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            with self._guard:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # never waits for readers or other writers
        except sqlite3.Error:
            pass  # busy or closing: the next idle moment (or another connection) checkpoints

    def _heartbeat(self, conn: sqlite3.Connection) -> None:
        if not self._active:
            return
        now = time.time()
        ids = [(now, run_id) for run_id in list(self._active)]
        try:
            db.write(conn, lambda c: c.executemany("UPDATE flow_runs SET heartbeat = ? WHERE id = ?", ids), self._guard)
        except Exception as exc:
            self._report(exc)

    def _report(self, exc: BaseException) -> None:
        if not self._reported:
            self._reported = True
            print(f"nbflow: could not write to the run store {self.path}: {type(exc).__name__}: {exc}. "
                  "Runs go on; their history may be incomplete.", file=sys.stderr)


_writers: weakref.WeakSet[Writer] = weakref.WeakSet()


def _after_fork() -> None:
    """A forked child has the parent's queues but not its threads: each writer starts over, empty."""
    for writer in list(_writers):
        writer._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


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


class _Rows:
    """One batch of events turned into rows, then written in one transaction (``execute``)."""

    def __init__(self, rowids: dict[str, int]) -> None:
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
                if kind == _TASK_STATE:
                    text = entry_text(item[3], item[4], item[5], item[6])
                    entry = tasks.get(item[1])
                    if entry is None:
                        tasks[item[1]] = [None, item, [text]]
                    else:
                        entry[1] = item
                        entry[2].append(text)
                elif kind == _LOG:
                    row = item[1:]
                    if len(row[5]) > MAX_MESSAGE:
                        row = (*row[:5], _truncated(row[5]))
                    logs.append(row)
                elif kind == _TASK_CREATED:
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
            elif cls is _FlowCreated:
                run, state = item.run, item.state
                flows[run.id] = [run, state.timestamp, state, [history_entry(state)]]
                self.new_flows.append((
                    run.id, run.name, run.flow_name, item.parameters, item.blob, item.error,
                    run.parent_flow_run_id, run.parent_task_run_id, json.dumps(list(run.tags)) if run.tags else None,
                    run.deployment_id, run.rerun_of, run.pid, own_start_time() if run.pid == os.getpid() else None,
                    run.host, item.heartbeat,
                ))
            elif cls is _FlowRef:
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
