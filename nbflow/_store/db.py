"""Opening ``nbflow.db``: home folder checks, pragmas, migrations, busy retries, and clear errors.

Whatever is wrong with the home folder or the database file is reported once, as a
``ConfigurationError`` that names the path; nbflow never overwrites, repairs or deletes a file it did
not create.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from nbflow._home import check_private_dir, create_private_file, make_private, make_private_dir
from nbflow._store.migrations import LATEST, pending, statements
from nbflow.exceptions import ConfigurationError

__all__ = ["DB_NAME", "prepare_home", "open_database", "connect", "write", "translate_errors"]

DB_NAME = "nbflow.db"
BUSY_TIMEOUT_S = 10.0  # SQLite's own wait for a lock, per attempt
RETRY_FOR_S = 300.0  # then we back off and try again, for this long, before giving up on a batch
_SQLITE_MAGIC = b"SQLite format 3\x00"
_BUSY_CODES = {getattr(sqlite3, "SQLITE_BUSY", 5), getattr(sqlite3, "SQLITE_LOCKED", 6)}

T = TypeVar("T")


def prepare_home(home: Path) -> Path:
    """Make sure ``home`` is a private folder we can write to (creating it 0700); returns the db path.

    A home others can write is refused (see ``nbflow._home``); a new ``nbflow.db`` is created 0600
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
    _private_db(path)
    return path


def _private_db(path: Path) -> None:
    """A new database file is created 0600; ours from an older nbflow are made 0600 (chmod only)."""
    try:
        if not create_private_file(path):
            make_private(path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))
    except OSError as exc:
        raise ConfigurationError(f"Cannot create the run store {path}: {exc.strerror or exc}.") from None


def _check_file(path: Path) -> None:
    """Refuse a path that is not an SQLite database before SQLite gets a chance to write to it."""
    if not path.exists():
        return
    if not path.is_file():
        raise ConfigurationError(f"{path} is not a file: move it away so nbflow can create its run store there.")
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
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses nothing committed
    return conn


@contextmanager
def translate_errors(path: Path) -> Iterator[None]:
    """SQLite's "file is not a database" and friends become one ``ConfigurationError`` naming ``path``."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
            raise
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
    return path


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # a damaged schema fails here, before any write
    version = _version(conn, path)
    if version == LATEST:  # the common case: one read of the header, no lock taken
        _retry(lambda: _wal(conn, path))
        return
    _retry(lambda: _wal(conn, path))

    def step() -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = _version(conn, path)  # another process may have migrated while we waited
            if current == 0 and conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
                raise ConfigurationError(
                    f"{path} is an SQLite database of another program, not an nbflow run store. nbflow leaves "
                    "it untouched: move it away, or set NBFLOW_HOME to another folder."
                )
            for number, script in pending(current):
                for statement in statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {int(number)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    _retry(step)


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


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _BUSY_CODES
    text = str(exc)
    return "locked" in text or "busy" in text


def _retry(fn: Callable[[], T], deadline_s: float = RETRY_FOR_S) -> T:
    """Call ``fn`` until it stops failing with SQLITE_BUSY (after SQLite's own busy wait), with backoff."""
    give_up = time.monotonic() + deadline_s
    pause = 0.01
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() > give_up:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def write(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T],
          guard: AbstractContextManager[Any] | None = None) -> T:
    """Run ``work(conn)`` in one ``BEGIN IMMEDIATE`` transaction, retrying the whole of it when busy.

    ``BEGIN IMMEDIATE`` takes the write lock up front, so two processes never deadlock upgrading a read
    transaction; ``work`` must be safe to run again after a rollback. ``guard`` is held around each
    attempt, not across the pauses between them (see ``_forkguard``).
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

    return _retry(attempt)
