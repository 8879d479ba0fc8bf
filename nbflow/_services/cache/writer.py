"""The background writer: persists results in batches on its own thread, off the task's hot path.

A SQLite write transaction costs ~100 µs or more; a task should not wait for one. ``put`` appends the
already-pickled result to a deque (no lock) and returns; the thread wakes, waits ``BATCH_SECONDS`` for
more to arrive, and writes everything queued in one transaction. Until written, an entry is readable
from ``pending`` (read-your-writes in this process). The thread ends after a second without work and
starts again on the next ``put``, so idle runtimes (tests make many) hold no threads. ``flush`` waits
for everything queued before it; the process flushes at exit.

A large result is a file (``files.py``). One written on the task's thread is queued here only to be
recorded. One left to the background (it cannot change: bytes) is recorded "writing" in a batch
like any other, then written by ``files.FileWriter`` on a thread of its own, so ``flush`` (and so a
flow's end) never waits for it; the process's exit does. The queue is bounded: a producer waits for
the writer when more than ``_MAX_QUEUED_OPS`` ops (each under 32 KB) or ``_MAX_QUEUED_BYTES`` of
values of 1 KB and more are queued.
"""

from __future__ import annotations

import atexit
import collections
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

from nbflow._core.forkguard import ForkGuard
from nbflow._core.threads import start_thread, starting
from nbflow._services.cache.disk import ResultDisk
from nbflow._services.cache.files import FileWriter, ResultFile

__all__ = ["Writer", "Pending"]

BATCH_SECONDS = 0.02  # long enough to gather a batch, short enough that results land soon
_MAX_BATCH_OPS = 5_000
_MAX_BATCH_BYTES = 256 * 2**20
_IDLE_SECONDS = 1.0
_MAX_QUEUED_OPS = 4096
_COUNTED = 1024  # values this large count towards _MAX_QUEUED_BYTES (smaller ones: the ops bound)
_MAX_QUEUED_BYTES = 64 * 2**20
_FILES_AT_EXIT_SECONDS = 120.0


class Pending:
    """A result waiting to be written: its pickle ``data`` then ``trailer`` (its tag, see ``signing``),
    or a ``file`` (then ``data`` is None: the file carries its own tag)."""

    __slots__ = ("key", "data", "expire_at", "tag", "trailer", "file")

    def __init__(self, key: str, data: bytes | None, expire_at: float | None, tag: str | None,
                 trailer: bytes = b"", file: ResultFile | None = None) -> None:
        self.key, self.data, self.expire_at, self.tag, self.trailer, self.file = key, data, expire_at, tag, trailer, file


class Writer:
    """Queue of writes for one ``ResultDisk``, applied by a daemon thread."""

    def __init__(self, disk: ResultDisk, on_error: Callable[[BaseException], None],
                 sign: Callable[[bytes, str], bytes] | None = None) -> None:
        self.disk = disk
        self._on_error = on_error
        self._sign = sign  # the tag of each result, computed here on the writer thread, off the task's path
        self._reset()
        _WRITERS.add(self)

    def _reset(self) -> None:
        self.pending: dict[str, Pending] = {}
        self.files = FileWriter(self._on_error)
        self._queued_bytes = 0  # of values of _COUNTED bytes and more; changed under _start_lock
        self._ops: collections.deque[tuple[str, Any]] = collections.deque()
        self._wake = threading.Event()
        self._idle = True  # no thread, or it sleeps: the next op must wake it
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._guard = ForkGuard()  # held around disk writes: a fork waits for the one in progress

    # --- any thread ----------------------------------------------------------------------------
    def put(self, key: str, data: bytes, expire_at: float | None, tag: str | None) -> None:
        item = Pending(key, data, expire_at, tag)
        self.pending[key] = item
        if len(data) >= _COUNTED or len(self._ops) >= _MAX_QUEUED_OPS:
            self._admit(len(data) if len(data) >= _COUNTED else 0)
        self._push(("set", item))

    def put_file(self, key: str, file: ResultFile, expire_at: float | None, tag: str | None) -> None:
        """Record a result file: complete already, or (its lock held) to be written in the background."""
        item = Pending(key, None, expire_at, tag, file=file)
        self.pending[key] = item
        self._push(("set", item))

    def _admit(self, size: int) -> None:
        """Block the producer while the queue is over its bounds (the writer is behind)."""
        with self._start_lock:
            over = self._queued_bytes + size > _MAX_QUEUED_BYTES or len(self._ops) >= _MAX_QUEUED_OPS
            self._queued_bytes += size
        if over and threading.current_thread() is not self._thread:
            self.flush()

    def touch(self, rowid: int, when: float) -> None:
        self._push(("touch", (rowid, when)))

    def delete(self, key: str) -> None:
        self.pending.pop(key, None)
        self._push(("delete", key))

    def _push(self, op: tuple[str, Any]) -> None:
        self._ops.append(op)
        if self._idle:
            self._wake_up()

    def _wake_up(self) -> None:
        with self._start_lock:
            if self._thread is None:
                with starting():  # started and recorded together (see nbflow._core.threads)
                    self._thread = threading.Thread(target=self._loop, name="nbflow-cache-writer", daemon=True)
                    start_thread(self._thread)
        self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued before this call is written; False if ``timeout`` ran out."""
        if self._thread is None and not self._ops:
            return True  # no thread: nothing queued, nothing being written
        if threading.current_thread() is self._thread:
            return False
        done = threading.Event()
        self._ops.append(("marker", done))
        self._wake_up()
        return done.wait(timeout)

    # --- the writer thread ---------------------------------------------------------------------
    def _loop(self) -> None:
        ops = self._ops
        while True:
            self._idle = False
            batch = self._take()
            if batch:
                self._write(batch)
                self._wake.wait(BATCH_SECONDS)  # let the next batch gather
                self._wake.clear()
                continue
            self._idle = True
            if ops:
                continue  # appended while we were deciding to sleep
            if not self._wake.wait(_IDLE_SECONDS):
                with self._start_lock:
                    if not ops:
                        self._thread = None
                        return
            self._wake.clear()

    def _take(self) -> list[tuple[str, Any]]:
        batch: list[tuple[str, Any]] = []
        size = 0
        popleft = self._ops.popleft
        try:
            while len(batch) < _MAX_BATCH_OPS and size < _MAX_BATCH_BYTES:
                op = popleft()
                batch.append(op)
                if op[0] == "set" and op[1].data is not None:
                    size += len(op[1].data)
        except IndexError:
            pass
        return batch

    def _write(self, batch: list[tuple[str, Any]]) -> None:
        # Writes keep their order (a delete of a broken entry, then its recomputed value); access
        # times only feed LRU eviction, so they go last and only the latest per row counts.
        writes: list[tuple[str, Any]] = []
        touches: dict[int, float] = {}
        markers: list[threading.Event] = []
        counted = 0
        for kind, value in batch:
            if kind == "set" and value.data is not None and len(value.data) >= _COUNTED:
                counted += len(value.data)
            if kind == "touch":
                touches[value[0]] = value[1]
            elif kind == "marker":
                markers.append(value)
            elif kind == "set" and self.pending.get(value.key) is not value:
                if value.file is not None:
                    self._drop(value.file)
                continue  # replaced by a newer result for the same key, or deleted: skip
            else:
                writes.append((kind, value))
        written = False
        try:
            if self._sign is not None:
                for kind, value in writes:
                    if kind == "set" and value.file is None and not value.trailer:
                        value.trailer = self._sign(value.data, value.key)
            if writes or touches:
                with self._guard:
                    self.disk.write(writes, list(touches.items()))
            written = True
        except Exception as exc:  # never let the thread die: report, drop the batch, go on
            self._on_error(exc)
        finally:
            pending = self.pending
            for kind, value in writes:
                if kind != "set":
                    continue
                file = value.file
                if file is not None and written and file.fd is not None:
                    # recorded "writing": now write it, then record it complete
                    self.files.submit(file, lambda f, item=value: self._written(item, f))
                    continue
                if file is not None and not written:
                    self._drop(file)  # no row points at it
                if pending.get(value.key) is value:
                    del pending[value.key]
            if counted:
                with self._start_lock:
                    self._queued_bytes -= counted
            for marker in markers:
                marker.set()

    def _written(self, item: Pending, file: ResultFile) -> None:
        """On the file thread: ``item``'s file is complete; its row says so, then others may read it."""
        try:
            with self._guard:  # SQLite work: a fork waits for it (see ``_forkguard``)
                complete = self.disk.finish(item.key, file.filename, file.size)
            if not complete:
                file.abandon()  # replaced or deleted while it was written
        finally:
            if self.pending.get(item.key) is item:
                del self.pending[item.key]

    def _drop(self, file: ResultFile) -> None:
        if file.fd is not None:
            self.files.release(file.size)
        file.abandon()


_WRITERS: weakref.WeakSet[Writer] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    """At interpreter exit: write what is queued, so the next process finds it (bounded wait)."""
    for writer in list(_WRITERS):
        writer.flush(timeout=30)
    for writer in list(_WRITERS):
        # Large results still being written: finish them. One that cannot finish in time is left
        # as a locked temp file, which readers see as dead once this process is gone (a miss).
        if not writer.files.drain(_FILES_AT_EXIT_SECONDS):
            print(f"nbflow: results still being written to {writer.disk.directory} after "
                  f"{_FILES_AT_EXIT_SECONDS:.0f} s at exit were dropped; they will be computed again", file=sys.stderr)


def _after_fork_in_child() -> None:
    for writer in list(_WRITERS):
        writer._reset()  # threads do not survive a fork: start with no thread and an empty queue


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
