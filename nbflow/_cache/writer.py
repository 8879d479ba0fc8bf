"""The background writer: persists results in batches on its own thread, off the task's hot path.

A SQLite write transaction costs ~100 µs or more; a task should not wait for one. ``put`` queues the
already-pickled result and returns; the thread writes everything queued since its last write in one
transaction. Until written, an entry is readable from ``pending`` (read-your-writes in this process).
The thread ends after a second without work and starts again on the next ``put``, so idle runtimes
(tests make many) hold no threads. ``flush`` waits for everything queued so far; the process flushes
at exit.
"""

from __future__ import annotations

import atexit
import collections
import threading
import weakref
from collections.abc import Callable
from typing import Any

from nbflow._cache.disk import ResultDisk

__all__ = ["Writer", "Pending"]

_MAX_BATCH_OPS = 512
_MAX_BATCH_BYTES = 256 * 2**20
_IDLE_SECONDS = 1.0


class Pending:
    """A result waiting to be written."""

    __slots__ = ("key", "data", "expire_at", "tag")

    def __init__(self, key: str, data: bytes, expire_at: float | None, tag: str | None) -> None:
        self.key, self.data, self.expire_at, self.tag = key, data, expire_at, tag


class Writer:
    """Queue of writes for one ``ResultDisk``, applied by a daemon thread."""

    def __init__(self, disk: ResultDisk, on_error: Callable[[BaseException], None]) -> None:
        self.disk = disk
        self.pending: dict[str, Pending] = {}
        self._ops: collections.deque[tuple[str, Any]] = collections.deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._busy = False
        self._on_error = on_error
        _WRITERS.add(self)

    def put(self, key: str, data: bytes, expire_at: float | None, tag: str | None) -> None:
        item = Pending(key, data, expire_at, tag)
        self.pending[key] = item
        self._push(("set", item))

    def touch(self, rowid: int, when: float) -> None:
        self._push(("touch", (rowid, when)))

    def delete(self, key: str) -> None:
        self.pending.pop(key, None)
        self._push(("delete", key))

    def _push(self, op: tuple[str, Any]) -> None:
        with self._cond:
            self._ops.append(op)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="nbflow-cache-writer", daemon=True)
                self._thread.start()
            else:
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is written; False if ``timeout`` ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._ops and not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._ops:
                    self._cond.wait_for(lambda: bool(self._ops), _IDLE_SECONDS)
                    if not self._ops:
                        self._thread = None
                        self._cond.notify_all()
                        return
                batch = self._take()
                self._busy = True
            try:
                self._apply(batch)
            except Exception as exc:  # never let the thread die: report, drop the batch, go on
                self._on_error(exc)
            finally:
                with self._cond:
                    for kind, value in batch:
                        if kind == "set" and self.pending.get(value.key) is value:
                            del self.pending[value.key]
                    self._busy = False
                    self._cond.notify_all()

    def _take(self) -> list[tuple[str, Any]]:
        batch: list[tuple[str, Any]] = []
        size = 0
        while self._ops and len(batch) < _MAX_BATCH_OPS and size < _MAX_BATCH_BYTES:
            op = self._ops.popleft()
            batch.append(op)
            if op[0] == "set":
                size += len(op[1].data)
        return batch

    def _apply(self, batch: list[tuple[str, Any]]) -> None:
        # Writes keep their order (a delete of a broken entry, then its recomputed value); access
        # times only feed LRU eviction, so they go last and only the latest per row counts.
        ops: list[tuple[str, Any]] = []
        touches: dict[int, float] = {}
        for kind, value in batch:
            if kind == "touch":
                touches[value[0]] = value[1]
            elif kind == "set" and self.pending.get(value.key) is not value:
                continue  # replaced by a newer result for the same key, or deleted: skip
            else:
                ops.append((kind, value))
        self.disk.write(ops, list(touches.items()))


_WRITERS: weakref.WeakSet[Writer] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    """At interpreter exit: write what is queued, so the next process finds it (bounded wait)."""
    for writer in list(_WRITERS):
        writer.flush(timeout=30)
