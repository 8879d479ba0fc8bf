"""Spool files: run history a process could not commit before it exited, for the next one to write.

A process exits while another holds the database's write lock (or its disk is full): what it has not
committed goes to ``$NBFLOW_HOME/spool/<time>-<pid>-<id>.json`` (private, written to a temporary
file and renamed, so a reader sees all of a file or none of it). Every process that opens the store
replays the spool files it finds before its crash sweep, so a spooled run ends in its real state,
not ``Crashed``. A replay is idempotent: the file's id is recorded in ``spool_replays`` in the same
transaction as its rows, so a file replayed twice (its remover died in between) is written once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
import uuid
from pathlib import Path

from nbflow._services.database import db
from nbflow._services.store.rows import Rows

__all__ = ["write", "replay", "count_runs", "FOLDER"]

FOLDER = "spool"
_FORMAT = 1
REPLAY_WAIT_MS = 500  # how long opening the store waits for another process's lock to replay a spool


def count_runs(batches: list[Rows]) -> int:
    ids: set[str] = set()
    for rows in batches:
        ids |= rows.flow_run_ids()
    return len(ids) or 1  # a batch of task-state changes only still belongs to some run


def write(home: Path, batches: list[Rows]) -> Path:
    """Write ``batches`` to a new spool file under ``home``; returns its path. Raises OSError."""
    folder = home / FOLDER
    folder.mkdir(mode=0o700, exist_ok=True)
    spool_id = uuid.uuid4().hex
    path = folder / f"{time.time_ns()}-{os.getpid()}-{spool_id}.json"
    text = json.dumps({"format": _FORMAT, "id": spool_id, "pid": os.getpid(),
                       "batches": [rows.to_spool() for rows in batches]})
    temporary = folder / f".{path.name}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogatepass") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)  # all of it or nothing under the name replay looks for
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    return path


def replay(conn: sqlite3.Connection, home: Path) -> int:
    """Write every spool file under ``home`` into the store (``conn``), then remove it; returns how
    many files were written. One that cannot be read is set aside (renamed ``*.unreadable``) with a
    warning; one the store cannot take now (the lock, the disk) stays for the next process."""
    folder = home / FOLDER
    try:
        paths = sorted(folder.glob("*.json"))
    except OSError:
        return 0
    done = 0
    # Spools exist because another process held the lock: it may hold it still. Opening the store
    # must not wait for it (a flow would start minutes late): one short try, else the next process.
    conn.execute(f"PRAGMA busy_timeout={REPLAY_WAIT_MS}")
    try:
        for path in paths:
            try:
                spool_id, batches = _read(path)
            except FileNotFoundError:
                continue  # another process replayed it meanwhile
            except Exception as exc:  # not JSON, or JSON of another shape: never stops the store opening
                _set_aside(path, exc)
                continue
            try:
                dropped = db.write(conn, lambda c, spool_id=spool_id, batches=batches: _apply(c, spool_id, batches),
                                   deadline_s=0)
            except sqlite3.Error as exc:
                print(f"nbflow: could not write the spooled run history {path} yet ({exc}); the next nbflow "
                      "process that opens this home tries again.", file=sys.stderr)
                continue
            if dropped:
                print(f"nbflow: the run store refused {dropped} of the spooled run history {path}; the rest "
                      "was written.", file=sys.stderr)
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            done += 1
    finally:
        conn.execute(f"PRAGMA busy_timeout={int(db.BUSY_TIMEOUT_S * 1000)}")
    return done


def _read(path: Path) -> tuple[str, list[Rows]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("batches"), list):
        raise ValueError("not a spool file of this nbflow")
    return str(data["id"]), [Rows.from_spool(batch) for batch in data["batches"]]


def _apply(conn: sqlite3.Connection, spool_id: str, batches: list[Rows]) -> str:
    """Write the batches unless this spool was written before; returns what SQLite refused ("" if nothing)."""
    fresh = conn.execute("INSERT OR IGNORE INTO spool_replays (id, replayed) VALUES (?, ?)",
                         (spool_id, time.time())).rowcount
    if not fresh:
        return ""  # written before; its file was left behind
    refused = []
    for rows in batches:
        rows.execute_each(conn)  # a few rows: the slow, careful path (a bad row costs only itself)
        if rows.dropped:
            refused.append(rows.dropped_text())
    return "; ".join(refused)


def _set_aside(path: Path, exc: BaseException) -> None:
    aside = path.with_name(path.name + ".unreadable")
    try:
        os.replace(path, aside)
    except OSError:
        aside = path
    print(f"nbflow: the spool file {path} cannot be read ({type(exc).__name__}: {exc}); set aside as {aside}, "
          "its run history is not written.", file=sys.stderr)
