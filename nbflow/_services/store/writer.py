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
one per other log line: that is the whole cost of a task (the rows themselves: ``rows.py``).

What cannot be committed is never dropped for the lock or the disk: a batch that meets a full disk
(or a lock held for minutes) is kept and retried, and whatever is still unwritten when the process
exits goes to a spool file under the home (``spool.py``) for the next process to write. A batch that
SQLite refuses for any other reason is written row by row, so only the bad row is lost.
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
from pathlib import Path
from typing import Any

from nbflow._core.events import ENGINE_LOGGER, EdgesAdded, FlowRunFinished, LogEmitted, RunCreated, StateChanged
from nbflow._core.forkguard import ForkGuard, keep
from nbflow._core.records import FlowRun, TaskRun
from nbflow._core.states import StateType
from nbflow._core.threads import start_thread, starting
from nbflow._services.database import db
from nbflow._services.store import spool
from nbflow._services.store.rows import EDGE, LOG, TASK_CREATED, TASK_STATE, FlowCreated, FlowRef, Rows

__all__ = ["Writer", "BATCH_SECONDS"]

# Fewer, larger transactions cost the writer less CPU (fewer GIL hand-offs, the same index pages
# rewritten to the WAL less often: -15 % measured), and CPU is what a busy machine runs short of.
# Another process sees a run's progress at most this late; this process's readers flush first.
BATCH_SECONDS = 0.1
MAX_BATCH = 20_000  # events per transaction: keeps other processes' waits for the write lock short
FLUSH_TIMEOUT_S = 60.0
FLOW_END_WAIT_S = 5.0
MAX_KEPT_BATCHES = 3_000  # batches kept while the store cannot be written: ~5 min of a busy process
EXIT_WAIT_S = 2.0  # at exit, then what is not committed is spooled (another process holds the lock)
_REFUSALS_SHOWN = 3
RETRY_KEPT_S = 0.5  # how often batches kept back by a full disk are tried again
WRITER_BUSY_SLICE_MS = 200
_CHECKPOINT_PAGES = 10_000
CHECKPOINT_IDLE_S = 1.0
_RUNNING = StateType.RUNNING
_TYPE_NAME = {t: t.value for t in StateType}  # as stored in state_type
_INFO = 20
_TASK_CREATED, _TASK_STATE, _LOG, _EDGE = TASK_CREATED, TASK_STATE, LOG, EDGE


class _Abandoned(Exception):
    """The exit path spooled what this writer had not committed: it must not commit it too."""


class Writer:
    """Subscribe it to a bus; ``flush()`` returns once everything emitted before the call is committed."""

    def __init__(self, path: Path, *, level: int, heartbeat_seconds: float) -> None:
        self.path = path
        self.level = level
        self.heartbeat_seconds = heartbeat_seconds
        self._reset()
        self._closed = False
        self._reported = False
        self._refused = 0  # batches with rows SQLite refused, reported up to _REFUSALS_SHOWN
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
        self._handoff = threading.Lock()  # held from taking a batch off the queue until it is in _kept
        self._kept: list[Rows] = []  # batches collected but not committed yet, oldest first
        self._kept_for: str | None = None  # why they are kept ("disk full", "locked"), once reported
        self._lost_batches = 0  # kept batches dropped because too many were kept
        self._abandoned = False  # the exit path took over what is uncommitted (see _spool_unwritten)

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
                self._append(FlowCreated(run, state))
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
        """Record where the flow is defined (reruns and crash hooks import it; the engine set it)."""
        if run.entrypoint is not None:
            self._append(FlowRef(run.id, run.entrypoint))

    def _wake_up(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._closed:
                    thread = threading.Thread(target=self._loop, name="nbflow-store-writer", daemon=True)
                    with starting():  # started and recorded together (see nbflow._core.threads)
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
        print(f"nbflow: the run store {self.path} {self._why()}; run history is kept and written when it can be, "
              "or spooled for the next nbflow process if this one exits first.", file=sys.stderr)
        return False

    def _why(self) -> str:
        """Why batches are kept back, as the end of a sentence about the run store."""
        return {"disk full": "is on a full disk", "disk I/O error": "cannot be written (disk I/O error)",
                "locked": "is locked by another process"}.get(self._kept_for or "", "is busy (locked by another process?)")

    def close(self, timeout: float | None = FLUSH_TIMEOUT_S) -> None:
        """Write what is queued and stop the thread; what is still unwritten after ``timeout`` is spooled.
        Later events are dropped."""
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
        if thread.is_alive() or self._kept or self._queue:
            self._spool_unwritten()

    def _write_at_exit(self) -> None:
        """Write what is queued when the process ends: at interpreter exit, and when a multiprocessing
        child ends (it leaves with ``os._exit``, which skips atexit, right after its target returns)."""
        atexit.register(self._at_exit)
        util = sys.modules.get("multiprocessing.util")  # loaded in every multiprocessing child
        if util is not None:
            self._finalizer = util.Finalize(None, self._at_exit, exitpriority=0)

    def _at_exit(self) -> None:
        self.close(EXIT_WAIT_S)

    def _spool_unwritten(self) -> None:
        """Take over every batch not committed (the thread may still be waiting for the lock) and
        spool it, so the next process that opens the home writes it; say so on stderr."""
        with self._handoff, self._guard:  # the thread is not between taking a batch and keeping it,
            self._abandoned = True  # nor inside a transaction: from now on it commits nothing
            unwritten = [rows for rows in self._kept if not rows.committed]
            queued = [self._queue.popleft() for _ in range(len(self._queue))]
        if queued:
            rows = Rows(self._rowids)
            for marker in rows.collect(queued, {}):
                marker.set()
            unwritten.append(rows)
        unwritten = [rows for rows in unwritten if rows]
        if not unwritten:
            return
        runs = spool.count_runs(unwritten)
        why = self._why()
        try:
            where = spool.write(self.path.parent, unwritten)
        except OSError as exc:
            print(f"nbflow: the run store {self.path} {why}, and the history of {runs} run(s) could not be spooled "
                  f"either ({exc.strerror or exc}): it is lost.", file=sys.stderr)
            return
        they = "it" if runs == 1 else "they"
        print(f"nbflow: the run store {self.path} {why}: {runs} run{'' if runs == 1 else 's'} spooled to {where}; "
              f"{they} will be written by the next nbflow process that opens this home.", file=sys.stderr)

    # --- writer thread ------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection | None:
        """The writer's connection. A full or failing disk can refuse even that: the events wait in
        the queue and it is tried again (or they are spooled at exit). None: give up (reported)."""
        while True:
            conn = None
            try:
                with self._guard:
                    conn = self._conn = db.connect(self.path)
                    # Wait for another process's lock in short slices, the pauses between them outside
                    # the fork guard (db.write retries): a fork never waits long for a writer that waits.
                    conn.execute(f"PRAGMA busy_timeout={WRITER_BUSY_SLICE_MS}")
                    conn.execute("PRAGMA cache_size=-16000")  # 16 MB: index pages of big runs stay in memory
                    # Copying the WAL back into the database (a checkpoint, with an fsync) is done once
                    # nothing has been written for CHECKPOINT_IDLE_S, not in the commit of a batch while
                    # flows run; a long burst still checkpoints once the WAL reaches ~40 MB.
                    conn.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
                    conn.execute("PRAGMA journal_size_limit=67108864")  # and the WAL shrinks back to 64 MB
                return conn
            except sqlite3.Error as exc:
                if conn is not None:
                    with self._guard:
                        conn.close()
                    self._conn = None
                if not self._held_back(exc):
                    self._report(exc)
                    return None
                if self._stopping or self._abandoned:
                    return None
                self._wake.wait(RETRY_KEPT_S)
                self._wake.clear()

    def _loop(self) -> None:
        conn = self._connect()
        if conn is None:
            return  # what is queued is spooled at exit
        dirty = False
        next_beat = time.monotonic() + self.heartbeat_seconds
        queue = self._queue
        try:
            while not self._abandoned:
                self._idle = False
                popleft = queue.popleft  # only this thread pops, so len() is a floor
                with self._handoff:
                    batch = [popleft() for _ in range(min(len(queue), MAX_BATCH))]
                    markers = self._keep(batch) if batch else []
                if batch or self._kept:
                    self._write_kept(conn, markers)
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
                if self._kept:
                    timeout = RETRY_KEPT_S if timeout is None else min(timeout, RETRY_KEPT_S)
                woke = self._wake.wait(timeout)
                self._wake.clear()
                if dirty and not woke and not queue and not self._kept:  # quiet for a while: fold the WAL back
                    self._checkpoint(conn, "PASSIVE")
                    dirty = False
        finally:
            if not self._abandoned and not self._kept:
                self._checkpoint(conn, "TRUNCATE")  # leave no WAL behind (issue 12: 41 MB per process)
            with self._guard:
                conn.close()
                self._conn = None

    def _keep(self, batch: list[Any]) -> list[threading.Event]:
        """Turn ``batch`` into rows, kept until committed; returns its flush markers."""
        rows = Rows(self._rowids)
        markers = rows.collect(batch, self._active)
        self._kept.append(rows)
        if len(self._kept) > MAX_KEPT_BATCHES:  # a store that stays unwritable: memory must stay bounded
            self._kept.pop(0)
            self._lost_batches += 1
            if self._lost_batches == 1:
                print(f"nbflow: the run store {self.path} has not been writable for {MAX_KEPT_BATCHES} batches "
                      f"({self._kept_for or 'unknown reason'}); the oldest kept history is dropped from now on.",
                      file=sys.stderr)
        return markers

    def _write_kept(self, conn: sqlite3.Connection, markers: list[threading.Event]) -> None:
        """Commit the kept batches in order; stop at one the lock or the disk holds back."""
        try:
            while self._kept:
                if not self._commit(conn, self._kept[0]):
                    return
                self._kept.pop(0)
            if self._kept_for is not None:
                print(f"nbflow: the run store {self.path} can be written again; the run history kept meanwhile "
                      "is written.", file=sys.stderr)
                self._kept_for = None
        finally:
            for marker in markers:  # flush() means "written, or failed to be": a full disk must not
                marker.set()  # hold every flow's end for FLOW_END_WAIT_S

    def _commit(self, conn: sqlite3.Connection, rows: Rows) -> bool:
        """Write one batch; False if it must be kept for later (the lock, the disk, or the exit took it)."""
        # All of it at once; if SQLite refuses it for what it holds, row by row, so only bad rows are lost.
        for careful, work in enumerate((rows.execute, rows.execute_each)):
            try:
                db.write(conn, work, _Attempt(self, rows))
                break
            except _Abandoned:
                return False
            except Exception as exc:
                if self._held_back(exc):
                    return False
                if careful:
                    self._report(exc)
                    return True
        if rows.dropped:
            self._refused += 1
            if self._refused <= _REFUSALS_SHOWN:
                last = " (further refused rows are not reported)" if self._refused == _REFUSALS_SHOWN else ""
                print(f"nbflow: the run store {self.path} refused {rows.dropped_text()}; the rest of its batch "
                      f"was written{last}.", file=sys.stderr)
        self._rowids.update(rows.assigned)
        return True

    def _held_back(self, exc: BaseException) -> bool:
        """The lock (held for minutes) or the disk (full, failing): keep the batch, say so once."""
        if db.is_disk_full(exc, self.path):
            why = "disk full"
        elif db.is_busy(exc):
            why = "locked"
        elif isinstance(exc, sqlite3.OperationalError) and "disk I/O" in str(exc):
            why = "disk I/O error"
        else:
            return False
        if self._kept_for != why:
            self._kept_for = why
            if why == "disk full":
                print(f"nbflow: the disk holding the run store {self.path} is full (disk full). Runs go on; "
                      "their history is kept in memory and written when space returns (spooled if this process "
                      "exits first).", file=sys.stderr)
            elif why == "disk I/O error":
                print(f"nbflow: the run store {self.path} cannot be written (disk I/O error: {exc}). Runs go on; "
                      "their history is kept in memory and written when the disk works again (spooled if this "
                      "process exits first).", file=sys.stderr)
        return True

    def _checkpoint(self, conn: sqlite3.Connection, mode: str) -> None:
        try:
            with self._guard:
                conn.execute("PRAGMA busy_timeout=0")  # never wait for readers or other writers
                conn.execute(f"PRAGMA wal_checkpoint({mode})")
                conn.execute(f"PRAGMA busy_timeout={WRITER_BUSY_SLICE_MS}")
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
            if not self._held_back(exc):
                self._report(exc)

    def _report(self, exc: BaseException) -> None:
        if not self._reported:
            self._reported = True
            print(f"nbflow: could not write to the run store {self.path}: {type(exc).__name__}: {exc}. "
                  "Runs go on; their history may be incomplete.", file=sys.stderr)


class _Attempt:
    """The fork guard around one attempt at a batch, which also closes the door on the exit path:
    once ``_spool_unwritten`` has taken the batches, nothing commits them here; a batch committed
    is marked so before the guard is let go, so it is never spooled as well."""

    __slots__ = ("writer", "rows")

    def __init__(self, writer: Writer, rows: Rows) -> None:
        self.writer, self.rows = writer, rows

    def __enter__(self) -> None:
        self.writer._guard.__enter__()
        if self.writer._abandoned:
            self.writer._guard.__exit__(None, None, None)
            raise _Abandoned()

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is None:
            self.rows.committed = True
        self.writer._guard.__exit__(kind, exc, tb)


_writers: weakref.WeakSet[Writer] = weakref.WeakSet()


def _after_fork() -> None:
    """A forked child has the parent's queues but not its threads: each writer starts over, empty."""
    for writer in list(_writers):
        writer._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
