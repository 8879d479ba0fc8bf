"""Opening ``nbflow.db``: home folder checks, pragmas, migrations, busy retries, and clear errors.

Whatever is wrong with the home folder or the database file is reported once, as a
``ConfigurationError`` that names the path; nbflow never overwrites, repairs or deletes a file it did
not create, and checks a file is its own before changing anything in it (even its journal mode).

Once this process has an SQLite connection to ``nbflow.db``, nothing here opens that file with plain
file I/O again: closing any descriptor of a file drops all of the process's POSIX locks on it, and
another process's last connection then folds and deletes the WAL this process still writes into
("How To Corrupt An SQLite Database File", section 2.2; issue 12).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from nbflow._core.home import check_private_dir, create_private_file, make_private, make_private_dir, tighten_dir
from nbflow._services.database.migrations import LATEST, pending, statements
from nbflow.exceptions import ConfigurationError, DiskFullError

__all__ = [
    "DB_NAME", "prepare_home", "open_database", "connect", "write", "translate_errors", "DiskFullError",
    "is_disk_full", "is_busy",
]

DB_NAME = "nbflow.db"
BUSY_TIMEOUT_S = 10.0  # SQLite's own wait for a lock, per attempt
RETRY_FOR_S = 300.0  # then we back off and try again, for this long, before giving up on a batch
_SQLITE_MAGIC = b"SQLite format 3\x00"
_BUSY_CODES = {getattr(sqlite3, "SQLITE_BUSY", 5), getattr(sqlite3, "SQLITE_LOCKED", 6)}
_SQLITE_FULL, _SQLITE_IOERR = 13, 10
_LOW_SPACE_BYTES = 1 << 20  # an I/O error with less free than this on the home's disk is a full disk
_NBFLOW_TABLE = "flow_runs"  # created by migration 1: a database with a version but without it is not ours

# (st_dev, st_ino) of the database files this process has connected to: never read with open() again.
_connected: set[tuple[int, int]] = set()
_connected_lock = threading.Lock()

T = TypeVar("T")


def prepare_home(home: Path) -> Path:
    """Make sure ``home`` is a private folder we can write to (creating it 0700); returns the db path.

    A home others can write is refused (see ``nbflow._core.home``); a new ``nbflow.db`` is created 0600
    before SQLite opens it, so its ``-wal`` and ``-shm`` files are 0600 too.
    """
    if home.exists() and not home.is_dir():
        raise ConfigurationError(
            f"NBFLOW_HOME {home} is a file, not a folder: set NBFLOW_HOME to a folder (nbflow creates it)."
        )
    check_private_dir(home)
    if not home.exists():
        try:
            make_private_dir(home)
        except OSError as exc:
            raise ConfigurationError(
                f"Cannot create NBFLOW_HOME {home}: {exc.strerror or exc}. Set NBFLOW_HOME to a writable folder."
            ) from None
    if not os.access(home, os.W_OK | os.X_OK):
        raise ConfigurationError(
            f"NBFLOW_HOME {home} is not writable by this user: fix its permissions or set NBFLOW_HOME elsewhere."
        )
    path = home / DB_NAME
    _check_file(path)
    try:
        create_private_file(path)  # only if it is missing: 0600 before SQLite opens it
    except OSError as exc:
        raise ConfigurationError(f"Cannot create the run store {path}: {exc.strerror or exc}.") from None
    return path


def _make_private(home: Path, path: Path) -> None:
    """A home and store of an older nbflow, readable by others, become private (chmod only); called
    once the file is known to be ours: another program's database keeps its mode."""
    tighten_dir(home)
    make_private(path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))


def _check_file(path: Path) -> None:
    """Refuse a path that is not an SQLite database before SQLite gets a chance to write to it.

    The header is read with plain I/O only while this process has no connection to the file (see
    the module docstring); once SQLite has it open, SQLite's own errors report a damaged file.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigurationError(f"Cannot read the run store {path}: {exc.strerror or exc}.") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigurationError(f"{path} is not a file: move it away so nbflow can create its run store there.")
    with _connected_lock:
        if (info.st_dev, info.st_ino) in _connected:
            return
        try:
            with open(path, "rb") as fh:
                header = fh.read(len(_SQLITE_MAGIC))
        except OSError as exc:
            raise ConfigurationError(f"Cannot read the run store {path}: {exc.strerror or exc}.") from None
    if header and header != _SQLITE_MAGIC:
        raise ConfigurationError(
            f"{path} is not an SQLite database, so it is not an nbflow run store. nbflow leaves it untouched: "
            "move it away, or set NBFLOW_HOME to another folder."
        )


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (we ``BEGIN IMMEDIATE`` ourselves) that waits for locks."""
    with _connected_lock:  # _check_file reads the header only while no connection is open
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            info = os.stat(path)  # sqlite3.connect has created the file, if it was missing
            _connected.add((info.st_dev, info.st_ino))
        except OSError:
            pass
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses nothing committed
    return conn


@contextmanager
def translate_errors(path: Path) -> Iterator[None]:
    """SQLite's "file is not a database" and friends become one ``ConfigurationError`` naming ``path``."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and is_busy(exc):
            raise
        if is_disk_full(exc, path):
            raise DiskFullError(disk_full_message(path)) from None
        raise ConfigurationError(
            f"The run store {path} is corrupt or not an nbflow database ({exc}). nbflow leaves it untouched: "
            "move it away to start a fresh run store, or set NBFLOW_HOME to another folder."
        ) from None


def open_database(home: Path) -> Path:
    """Check ``home`` and its ``nbflow.db``, create or migrate the schema; returns the db path."""
    path = prepare_home(home)
    with translate_errors(path):
        conn = connect(path)
        try:
            _migrate(conn, path)
        finally:
            conn.close()
    _make_private(home, path)
    return path


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # a damaged schema fails here, before any write
    version = _version(conn, path)
    _refuse_foreign(conn, path, version)  # before WAL mode: that rewrites the file's header
    if version == LATEST:  # the common case: reads only, no lock taken
        _retry(lambda: _wal(conn, path))
        return
    _retry(lambda: _wal(conn, path))

    def step() -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = _version(conn, path)  # another process may have migrated while we waited
            _refuse_foreign(conn, path, current)
            for number, script in pending(current):
                for statement in statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {int(number)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    _retry(step)


def _refuse_foreign(conn: sqlite3.Connection, path: Path, version: int) -> None:
    """An SQLite file that is not (yet) an nbflow store, but has a schema, belongs to someone else."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if (version == 0 and tables) or (version > 0 and _NBFLOW_TABLE not in tables):
        raise ConfigurationError(
            f"{path} is an SQLite database of another program, not an nbflow run store. nbflow leaves "
            "it untouched: move it away, or set NBFLOW_HOME to another folder."
        )


def _version(conn: sqlite3.Connection, path: Path) -> int:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > LATEST:
        raise ConfigurationError(
            f"The run store {path} was written by a newer nbflow (schema version {version}; this nbflow knows "
            f"up to {LATEST}). Upgrade nbflow, or set NBFLOW_HOME to another folder. The file is left untouched."
        )
    return version


def _wal(conn: sqlite3.Connection, path: Path) -> None:
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError("database is locked")  # another process holds it; retried


def is_busy(exc: BaseException) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED: another connection holds the lock; waiting helps."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _BUSY_CODES
    text = str(exc)
    return "locked" in text or "busy" in text


def is_disk_full(exc: BaseException, path: Path | None = None) -> bool:
    """SQLITE_FULL, ENOSPC, or an SQLite I/O error while the disk of ``path`` has (almost) no space left.

    SQLite turns a write's ENOSPC into SQLITE_FULL, but some writes (growing the -shm file) report
    SQLITE_IOERR without the errno; the free space on the disk tells those apart.
    """
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if not isinstance(exc, sqlite3.Error):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    if primary == _SQLITE_FULL or (primary is None and "disk is full" in str(exc)):
        return True
    if primary == _SQLITE_IOERR and path is not None:
        try:
            fs = os.statvfs(path.parent)
        except OSError:
            return False
        return fs.f_bavail * fs.f_frsize < _LOW_SPACE_BYTES
    return False


def disk_full_message(path: Path) -> str:
    return (f"The disk holding the run store {path} is full. The store is kept as it is; free some space on that "
            "disk, and nbflow writes the run history it kept meanwhile.")


def _retry(fn: Callable[[], T], deadline_s: float = RETRY_FOR_S) -> T:
    """Call ``fn`` until it stops failing with SQLITE_BUSY (after SQLite's own busy wait), with backoff."""
    give_up = time.monotonic() + deadline_s
    pause = 0.01
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() > give_up:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def write(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T],
          guard: AbstractContextManager[Any] | None = None, deadline_s: float = RETRY_FOR_S) -> T:
    """Run ``work(conn)`` in one ``BEGIN IMMEDIATE`` transaction, retrying the whole of it when busy.

    ``BEGIN IMMEDIATE`` takes the write lock up front, so two processes never deadlock upgrading a read
    transaction; ``work`` must be safe to run again after a rollback. ``guard`` is held around each
    attempt, not across the pauses between them (see ``_forkguard``). ``deadline_s``: how long to
    keep retrying a busy database (0: one attempt, after the connection's own busy wait).
    """

    def attempt() -> T:
        with guard or nullcontext():
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

    return _retry(attempt, deadline_s)


def _after_fork() -> None:
    global _connected_lock  # a per-process lock: the parent's may have been held by a thread we lost
    _connected_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
