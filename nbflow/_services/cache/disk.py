"""The diskcache ``Cache`` under ``$NBFLOW_HOME/cache``: fast reads, batched writes, admin queries.

Values are pickles we make ourselves, each tagged (``signing.py``): small ones (under 32 KB) are rows
in SQLite, large ones are files of their own that ``files.py`` streams, so a large result is never
copied into a database row, nor (on its way there) into memory.

Three things here reach under diskcache's public API, to its ``Cache`` table (diskcache 5.6; the
table and ``Cache._sql``/``_con``/``_disk`` have been stable since 4.0):
- reads: with ``eviction_policy='least-recently-used'``, ``Cache.get`` runs a write transaction on
  every hit to update ``access_time`` (measured 70-90 µs against 8 µs for the bare SELECT). We SELECT
  ourselves and let the background writer apply the access-time updates in batches.
- writes: small values are upserted in one ``executemany`` per batch instead of a ``Cache.set`` each
  (~50 µs of Python per item under the GIL); large values are files we write ourselves (``files.py``:
  streamed, temp + rename) and record as diskcache's own file rows (``MODE_BINARY``). A row whose file
  is still being written has mode ``MODE_WRITING``, which diskcache does not know (it reads as a miss).
- listing: ``nbflow cache ls`` needs each entry's tag, size and store time, which only the table has.

This module and ``forksafe.py`` (diskcache's per-thread connections) are the only ones in nbflow that
touch diskcache's private parts; ``tests/test_checks_diskcache.py`` checks what both rely on (the
table's columns, its (key, raw) index and triggers, the mode constants, ``_sql``/``_con``/``_disk``/``_local``).
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbflow._core.forkguard import ForkGuard
from nbflow._core.home import check_private_dir, create_private_file, make_private, make_private_dir, tighten_dir
from nbflow.exceptions import CacheUnavailableError as DiskUnavailable

__all__ = ["ResultDisk", "Entry", "CacheStats", "DiskUnavailable", "StoredFile"]

# The only file names nbflow writes (``files.py``). A row naming anything else was not written by us:
# it is never read, and its file is never deleted (diskcache deletes by the name in the row).
_OUR_FILE = re.compile(r"[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]+\.val")


def _is_ours(filename: str) -> bool:
    return _OUR_FILE.fullmatch(filename.replace(os.sep, "/")) is not None

_SELECT = (
    "SELECT rowid, mode, filename, value FROM Cache"
    " WHERE key = ? AND raw = 1 AND (expire_time IS NULL OR expire_time > ?)"
)
_TOUCH = "UPDATE Cache SET access_time = ?, access_count = access_count + 1 WHERE rowid = ?"
# diskcache's row for a bytes value kept in the database (MODE_RAW = 1); on an existing key the
# row is updated, so diskcache's count and size triggers stay right.
_UPSERT = (
    "INSERT INTO Cache (key, raw, store_time, expire_time, access_time, access_count, tag, size, mode, filename, value)"
    " VALUES (?, 1, ?, ?, ?, 0, ?, 0, 1, NULL, ?)"
    " ON CONFLICT (key, raw) DO UPDATE SET store_time = excluded.store_time, expire_time = excluded.expire_time,"
    " access_time = excluded.access_time, access_count = 0, tag = excluded.tag, size = 0, mode = 1,"
    " filename = NULL, value = excluded.value"
)
MODE_RAW = 1  # diskcache's mode of bytes kept in the row
MODE_BINARY = 2  # diskcache's mode of a value in a file of its own
MODE_WRITING = 9  # ours: its file is being written by the process holding the file's lock
# A large value's row: the file already exists (complete, or being written under its lock).
_UPSERT_FILE = (
    "INSERT INTO Cache (key, raw, store_time, expire_time, access_time, access_count, tag, size, mode, filename, value)"
    " VALUES (?, 1, ?, ?, ?, 0, ?, ?, ?, ?, NULL)"
    " ON CONFLICT (key, raw) DO UPDATE SET store_time = excluded.store_time, expire_time = excluded.expire_time,"
    " access_time = excluded.access_time, access_count = 0, tag = excluded.tag, size = excluded.size,"
    " mode = excluded.mode, filename = excluded.filename, value = NULL"
)
_FINISH = f"UPDATE Cache SET mode = {MODE_BINARY}, size = ? WHERE key = ? AND raw = 1 AND filename = ? AND mode = {MODE_WRITING}"
_CULL_EVERY = 60.0  # seconds between sweeps of expired entries (over the size limit: at once)
_LIST = (
    "SELECT key, tag, store_time, access_time, expire_time, access_count,"
    " CASE WHEN filename IS NULL THEN length(value) ELSE size END, filename IS NOT NULL"
    " FROM Cache WHERE raw = 1"
)




@dataclass(frozen=True)
class Entry:
    """One cached result, as ``nbflow cache ls`` shows it."""

    key: str
    task: str | None
    stored: float
    accessed: float | None  # last hit, to the minute (LRU order needs no more); None: never hit
    expires: float | None
    size: int
    in_file: bool  # stored as a file of its own (large results)


@dataclass(frozen=True)
class StoredFile:
    """A live entry whose value is a file: loaded by streaming it (``files.load``), not as bytes."""

    filename: str
    path: str
    writing: bool  # still being written: wait for it (``files.wait_written``), then read the row again


@dataclass(frozen=True)
class CacheStats:
    """A snapshot of the whole cache, as ``nbflow cache stats`` shows it."""

    directory: str
    entries: int
    volume: int  # bytes on disk: the database plus value files
    size_limit: int
    expired: int
    by_task: dict[str, tuple[int, int]]  # task name -> (entries, bytes)


class ResultDisk:
    """The cache folder. Reopened (and so recreated) when it is deleted while a kernel runs."""

    def __init__(self, directory: str | os.PathLike[str], size_limit: int) -> None:
        self.directory = Path(directory)
        self.size_limit = int(size_limit)
        self._db_path = str(self.directory / "cache.db")
        self._cache: Any = None
        self._identity: tuple[int, int] | None = None
        self._lock = threading.Lock()  # taken inside a guard only, so a fork never leaves it held
        # Held around reads, admin and the cache opened (or reopened); the writer thread has its
        # own (a batch it writes never holds up a read).
        self.guard = ForkGuard()
        self.notices: list[str] = []  # things the user should hear about, logged by the next run
        self._last_cull = 0.0

    # --- the diskcache object ------------------------------------------------------------------
    def cache(self) -> Any:
        """The open ``diskcache.Cache``; reopened if its database file was deleted or replaced.

        Call it inside a ``ForkGuard`` (``self.guard`` or the writer's): it may open the database."""
        try:
            st = os.stat(self._db_path)
            identity: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            identity = None
        cache = self._cache
        if cache is not None and identity is not None and identity == self._identity:
            return cache
        with self._lock:
            if self._cache is not None and identity is not None and identity == self._identity:
                return self._cache
            self._cache = self._open()
            st = os.stat(self._db_path)
            self._identity = (st.st_dev, st.st_ino)
            return self._cache

    def _open(self) -> Any:
        import diskcache

        if self._cache is not None:
            try:
                self._cache.close()
            except Exception:
                pass
            self._cache = None
        try:
            self._prepare()
            return self._new_cache(diskcache)
        except sqlite3.DatabaseError as exc:
            # Not a database any more (truncated, overwritten): keep it aside for a post-mortem and
            # start empty rather than fail every run that touches the cache.
            if isinstance(exc, sqlite3.OperationalError):  # locked, a full disk, an I/O error: not damage
                raise DiskUnavailable(f"the result cache at {self.directory} cannot be opened now ({exc}); "
                                      "it is kept as it is") from exc
            aside = self.directory.with_name(f"{self.directory.name}.corrupt-{int(time.time())}")
            try:
                shutil.move(str(self.directory), str(aside))
                self._prepare()
                cache = self._new_cache(diskcache)
            except Exception as again:
                raise DiskUnavailable(f"the result cache at {self.directory} is unusable: {exc}") from again
            self.notices.append(f"The result cache database was damaged ({exc}); moved it to {aside} and started an empty cache")
            return cache
        except OSError as exc:
            raise DiskUnavailable(f"cannot open the result cache at {self.directory}: {exc}") from exc

    def _prepare(self) -> None:
        """The folder private (0700, refused if others can write it) and ``cache.db`` 0600 before
        SQLite opens it, so its ``-wal``/``-shm`` are 0600 too (see ``nbflow._core.home``)."""
        check_private_dir(self.directory, "The result cache folder")
        make_private_dir(self.directory)
        tighten_dir(self.directory, contents=True)  # result files an older nbflow left readable: once
        db = Path(self._db_path)
        if not create_private_file(db):
            make_private(db, db.with_name("cache.db-wal"), db.with_name("cache.db-shm"))

    def _new_cache(self, diskcache: Any) -> Any:
        class OurFilesOnly(diskcache.Disk):  # type: ignore[misc,name-defined]
            """diskcache's file handling, but it removes only files named as nbflow names them."""

            def remove(self, file_path: str) -> Any:
                return super().remove(file_path) if _is_ours(file_path) else None

        from nbflow._services.cache.forksafe import GuardedCache

        return GuardedCache(
            str(self.directory),
            disk=OurFilesOnly,
            size_limit=self.size_limit,
            eviction_policy="least-recently-used",
            tag_index=True,  # `nbflow cache clear --task NAME` deletes by tag
            statistics=False,  # counting hits would make every read a write
        )

    def broken(self, exc: BaseException) -> None:
        """After ``exc`` from the database: if the file is no database any more, reopen next time
        (which moves it aside and starts empty); a busy or locked database is left alone."""
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
            with self.guard, self._lock:
                self._identity = None

    def close(self) -> None:
        with self.guard, self._lock:
            if self._cache is not None:
                self._cache.close()
            self._cache = None
            self._identity = None

    # --- hot path ------------------------------------------------------------------------------
    def read(self, key: str, now: float) -> tuple[int, Any] | None:
        """``(rowid, stored bytes or StoredFile)`` of a live entry (None in place of a value that is
        neither), or None. May raise sqlite/OS errors."""
        with self.guard.lock:
            cache = self.cache()
            rows = cache._sql(_SELECT, (key, now)).fetchall()
        if not rows:
            return None
        rowid, mode, filename, value = rows[0]
        if filename is not None and mode in (MODE_BINARY, MODE_WRITING) and _is_ours(filename):
            return rowid, StoredFile(filename, os.path.join(self.directory, filename), mode == MODE_WRITING)
        # Only the rows we write: bytes in the row (MODE_RAW). Never ``cache._disk.fetch``: it unpickles
        # a row of diskcache's MODE_PICKLE itself, before any tag is checked. Anything else: None.
        return rowid, value if mode == MODE_RAW and filename is None and value.__class__ is bytes else None

    def write(self, ops: Iterable[tuple[str, Any]], touches: Iterable[tuple[int, float]] = ()) -> None:
        """Apply ``("set", Pending)`` and ``("delete", key)`` in order, then access times, in one
        transaction.

        Small values are upserted with one ``executemany``: ``Cache.set`` costs ~50 µs of Python per
        item, held under the GIL on the writer thread while tasks wait for it. Large values are files
        already made (``files.ResultFile``): only their rows are written here.
        """
        cache = self.cache()
        now = time.time()
        rows: list[tuple[Any, ...]] = []
        replaced: list[str] = []
        with cache.transact(retry=True):
            for kind, value in ops:
                if kind == "set" and value.file is None:
                    # Under 32 KB (``files.split`` makes anything larger a file): cheap to join.
                    stored = value.data + value.trailer if value.trailer else value.data
                    rows.append((value.key, now, value.expire_at, now, value.tag, sqlite3.Binary(stored)))
                    continue
                self._upsert(cache._con, rows, replaced)
                if kind == "set":
                    self._upsert_file(cache._con, value, now, replaced)
                else:
                    cache.delete(value, retry=True)
            self._upsert(cache._con, rows, replaced)
            touches = list(touches)
            if touches:
                cache._con.executemany(_TOUCH, [(when, rowid) for rowid, when in touches])
        for filename in replaced:  # files of large values that small ones replaced, after commit
            cache._disk.remove(filename)
        if now - self._last_cull > _CULL_EVERY or cache.volume() > self.size_limit:
            self._last_cull = now
            cache.cull(retry=True)  # expired entries first, then least recently used, to the limit

    @staticmethod
    def _upsert_file(con: sqlite3.Connection, value: Any, now: float, replaced: list[str]) -> None:
        file = value.file
        found = con.execute("SELECT filename FROM Cache WHERE key = ? AND raw = 1", (value.key,)).fetchone()
        if found and found[0] and found[0] != file.filename:
            replaced.append(found[0])
        mode = MODE_WRITING if file.fd is not None else MODE_BINARY
        con.execute(_UPSERT_FILE, (value.key, now, value.expire_at, now, value.tag, file.size, mode, file.filename))

    def finish(self, key: str, filename: str, size: int) -> bool:
        """Mark the row of ``key`` complete once its file is; False if the row was replaced or
        deleted meanwhile (the caller then removes the file nobody points at)."""
        cache = self.cache()
        with cache.transact(retry=True):
            return cache._con.execute(_FINISH, (size, key, filename)).rowcount == 1

    @staticmethod
    def _upsert(con: sqlite3.Connection, rows: list[tuple[Any, ...]], replaced: list[str]) -> None:
        if not rows:
            return
        keys = [row[0] for row in rows]
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            found = con.execute(f"SELECT filename FROM Cache WHERE raw = 1 AND filename IS NOT NULL AND key IN ({marks})", chunk)
            replaced.extend(name for (name,) in found.fetchall())
        con.executemany(_UPSERT, rows)
        rows.clear()

    # --- admin -----------------------------------------------------------------------------------
    def entries(self, task: str | None = None) -> Iterator[Entry]:
        """Every entry (expired ones too, until culled), oldest first; ``task`` filters by task name."""
        if not (self.directory / "cache.db").exists():
            return iter(())
        query, args = _LIST, ()
        if task is not None:
            query, args = _LIST + " AND tag = ?", (task,)
        with self.guard:
            rows = self.cache()._sql(query + " ORDER BY store_time", args).fetchall()
        return (Entry(key, tag, stored, accessed if hits else None, expires, size or 0, bool(in_file))
                for key, tag, stored, accessed, expires, hits, size, in_file in rows)

    def stats(self, now: float) -> CacheStats:
        by_task: dict[str, tuple[int, int]] = {}
        entries = expired = 0
        for entry in self.entries():
            entries += 1
            if entry.expires is not None and entry.expires <= now:
                expired += 1
            count, size = by_task.get(entry.task or "?", (0, 0))
            by_task[entry.task or "?"] = (count + 1, size + entry.size)
        with self.guard:
            volume = self.cache().volume() if entries or (self.directory / "cache.db").exists() else 0
        return CacheStats(str(self.directory), entries, volume, self.size_limit, expired, by_task)

    def clear(self, task: str | None = None, older_than: float | None = None) -> int:
        """Delete entries (of ``task``, stored before ``older_than``); returns how many."""
        if not (self.directory / "cache.db").exists():
            return 0
        with self.guard:
            return self._clear(task, older_than)

    def _clear(self, task: str | None, older_than: float | None) -> int:
        cache = self.cache()
        if older_than is None:
            return int(cache.evict(task, retry=True) if task is not None else cache.clear(retry=True))
        removed = 0
        for entry in list(self.entries(task)):
            if entry.stored < older_than and cache.delete(entry.key, retry=True):
                removed += 1
        return removed
