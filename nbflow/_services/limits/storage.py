"""Concurrency limits in SQLite: the tables, and the few transactions that read and change them.

Everything here is a plain function of a connection and a time, so every process sharing
``NBFLOW_HOME`` sees the same limits, and tests can pass any ``now``.

Tables (migration 2 in ``nbflow/_services/database/migrations.py``):

- ``concurrency_limit``: one row per limit. ``decaying``/``decayed_at`` hold the slots taken by
  ``rate_limit()``, which free themselves at ``slot_decay_per_second``.
- ``concurrency_slot``: one row per (lease, limit name) held by ``concurrency()`` or a tagged task
  run. A row counts only while ``expires`` is in the future; the holder's process renews it, so the
  slots of a killed process come back when its lease runs out.
- ``concurrency_waiter``: the queue. A waiter gets a ticket (rising numbers); the slots wanted by
  older live tickets are reserved for them, so a newcomer never takes what an earlier waiter needs
  (first come, first served, no starvation) but may use capacity nobody ahead of it can use.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "connect", "Request", "Verdict", "evaluate", "take", "leave_queue", "release",
    "renew", "reap", "LimitRow", "read_limits", "holders", "waiters",
]

_NO_TICKET = 2**62  # "behind everyone": a newcomer yields to every live ticket


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the run store at ``path`` (home checked, schema migrated), in autocommit mode.

    Autocommit: every transaction here is an explicit ``BEGIN IMMEDIATE ... COMMIT``, so a check and
    the write it allows never interleave with another process.
    """
    from nbflow._services.database import db

    return db.connect(db.open_database(path.parent))


@dataclass(frozen=True)
class Request:
    """What a caller wants: ``occupy`` slots of every limit in ``names``, all or none.

    ``mode`` is ``"lease"`` (held until released, renewed meanwhile) or ``"rate"`` (taken for good,
    handed back by the limit's slot decay).
    """

    names: tuple[str, ...]
    occupy: int
    mode: str
    lease_id: str
    holder: str
    pid: int
    host: str


@dataclass(frozen=True)
class Verdict:
    """What the store says about a request right now."""

    granted: bool
    unknown: tuple[str, ...] = ()  # names with no limit: the caller runs unlimited on them
    blocked_on: str | None = None  # the first limit that holds the request back
    used: float = 0.0  # slots of ``blocked_on`` in use
    reserved: float = 0.0  # slots of ``blocked_on`` reserved for waiters ahead
    limit: int = 0  # size of ``blocked_on``
    too_large: bool = False  # ``occupy`` exceeds the limit ``blocked_on``: waiting cannot help
    no_decay: str | None = None  # rate mode on a limit without slot decay
    ticket: int | None = None  # the caller's place in the queue, once it has one


def _decayed(decaying: float, decayed_at: float, rate: float, now: float) -> float:
    """Slots still taken by ``rate_limit()`` at ``now`` (they free themselves at ``rate``/s)."""
    if rate <= 0:
        return decaying
    return max(0.0, decaying - rate * max(0.0, now - decayed_at))


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


def evaluate(conn: sqlite3.Connection, req: Request, now: float, ticket: int | None) -> tuple[Verdict, list[tuple]]:
    """Whether ``req`` could take its slots at ``now``; reads only. Returns the verdict and limit rows."""
    rows = conn.execute(
        "SELECT l.name, l.slots, l.slot_decay_per_second, l.decaying, l.decayed_at,"
        " (SELECT COALESCE(SUM(s.occupy), 0) FROM concurrency_slot s WHERE s.name = l.name AND s.expires > ?),"
        " (SELECT COALESCE(SUM(w.occupy), 0) FROM concurrency_waiter w"
        "   WHERE w.name = l.name AND w.expires > ? AND w.ticket < ?)"
        f" FROM concurrency_limit l WHERE l.name IN ({_placeholders(len(req.names))})",
        (now, now, _NO_TICKET if ticket is None else ticket, *req.names),
    ).fetchall()
    found = {row[0] for row in rows}
    unknown = tuple(n for n in req.names if n not in found)
    for name, slots, rate, decaying, decayed_at, leased, ahead in rows:
        if req.mode == "rate" and rate <= 0:
            return Verdict(False, unknown, name, limit=slots, no_decay=name, ticket=ticket), rows
        used = leased + _decayed(decaying, decayed_at, rate, now)
        if req.occupy > slots:
            return Verdict(False, unknown, name, used, ahead, slots, too_large=True, ticket=ticket), rows
        if used + ahead + req.occupy > slots + 1e-9:
            return Verdict(False, unknown, name, used, ahead, slots, ticket=ticket), rows
    return Verdict(True, unknown, ticket=ticket), rows


def take(
    conn: sqlite3.Connection, req: Request, now: float, lease_seconds: float, ticket: int | None, *, strict: bool = False
) -> Verdict:
    """One atomic attempt: take the slots if they are free, else join the queue (once).

    The only writer of slot rows and tickets; runs as one ``BEGIN IMMEDIATE`` transaction. With
    ``strict``, a request naming an unknown limit changes nothing (the caller raises).
    """
    with _transaction(conn):
        verdict, rows = evaluate(conn, req, now, ticket)
        if strict and verdict.unknown:
            return verdict
        if verdict.granted:
            if req.mode == "rate":
                conn.executemany(
                    "UPDATE concurrency_limit SET decaying = ?, decayed_at = ? WHERE name = ?",
                    [(_decayed(r[3], r[4], r[2], now) + req.occupy, now, r[0]) for r in rows],
                )
            elif rows:
                conn.executemany(
                    "INSERT INTO concurrency_slot VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(req.lease_id, r[0], req.occupy, req.holder, req.pid, req.host, now, now + lease_seconds) for r in rows],
                )
            if ticket is not None:
                conn.execute("DELETE FROM concurrency_waiter WHERE ticket = ?", (ticket,))
        elif ticket is None and verdict.no_decay is None:
            ticket = conn.execute("SELECT COALESCE(MAX(ticket), 0) + 1 FROM concurrency_waiter").fetchone()[0]
            conn.executemany(
                "INSERT INTO concurrency_waiter VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(ticket, r[0], req.occupy, req.holder, req.pid, req.host, now, now + lease_seconds) for r in rows],
            )
            verdict = Verdict(**{**verdict.__dict__, "ticket": ticket})
    return verdict


def leave_queue(conn: sqlite3.Connection, ticket: int) -> None:
    """Give up a place in the queue (timeout, interrupt, or the limit went away)."""
    conn.execute("DELETE FROM concurrency_waiter WHERE ticket = ?", (ticket,))


def release(conn: sqlite3.Connection, lease_id: str) -> None:
    """Hand back every slot of a lease. A lease already reset, deleted or expired is a no-op."""
    conn.execute("DELETE FROM concurrency_slot WHERE lease_id = ?", (lease_id,))


def renew(conn: sqlite3.Connection, lease_ids: list[str], tickets: list[int], expires: float) -> int:
    """Push the expiry of live leases and tickets to ``expires``; returns how many slot rows moved."""
    moved = 0
    with _transaction(conn):
        for chunk in _chunks(lease_ids):
            moved += conn.execute(
                f"UPDATE concurrency_slot SET expires = ? WHERE lease_id IN ({_placeholders(len(chunk))})",
                (expires, *chunk),
            ).rowcount
        for chunk in _chunks(tickets):
            conn.execute(
                f"UPDATE concurrency_waiter SET expires = ? WHERE ticket IN ({_placeholders(len(chunk))})",
                (expires, *chunk),
            )
    return moved


def reap(conn: sqlite3.Connection, now: float) -> None:
    """Delete expired leases and tickets (they already count for nothing; this keeps tables small)."""
    with _transaction(conn):
        conn.execute("DELETE FROM concurrency_slot WHERE expires <= ?", (now,))
        conn.execute("DELETE FROM concurrency_waiter WHERE expires <= ?", (now,))


def _chunks(items: list[Any], size: int = 500) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception (interrupts included)."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        if self.conn.in_transaction:  # left open by an interrupt at the worst moment: undo it
            self.conn.rollback()
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            self.conn.rollback()


# --- administration (create / ls / inspect / update / reset / delete) ---------------------------


@dataclass(frozen=True)
class LimitRow:
    name: str
    slots: int
    slot_decay_per_second: float
    active: float
    created: float
    updated: float


def read_limits(conn: sqlite3.Connection, now: float, name: str | None = None) -> list[LimitRow]:
    """Limits (all, or the one named) with the slots active at ``now``."""
    where, args = ("WHERE l.name = ?", (name,)) if name is not None else ("", ())
    rows = conn.execute(
        "SELECT l.name, l.slots, l.slot_decay_per_second, l.decaying, l.decayed_at, l.created, l.updated,"
        " (SELECT COALESCE(SUM(s.occupy), 0) FROM concurrency_slot s WHERE s.name = l.name AND s.expires > ?)"
        f" FROM concurrency_limit l {where} ORDER BY l.name",
        (now, *args),
    ).fetchall()
    return [
        LimitRow(n, slots, rate, leased + _decayed(decaying, at, rate, now), created, updated)
        for n, slots, rate, decaying, at, created, updated, leased in rows
    ]


def holders(conn: sqlite3.Connection, name: str, now: float) -> list[tuple]:
    """Live leases on ``name``: (lease_id, occupy, holder, pid, host, acquired, expires), oldest first."""
    return conn.execute(
        "SELECT lease_id, occupy, holder, pid, host, acquired, expires FROM concurrency_slot"
        " WHERE name = ? AND expires > ? ORDER BY acquired",
        (name, now),
    ).fetchall()


def waiters(conn: sqlite3.Connection, name: str, now: float) -> list[tuple]:
    """Live tickets on ``name``: (ticket, occupy, holder, pid, host, since), in queue order."""
    return conn.execute(
        "SELECT ticket, occupy, holder, pid, host, since FROM concurrency_waiter"
        " WHERE name = ? AND expires > ? ORDER BY ticket",
        (name, now),
    ).fetchall()


def create(conn: sqlite3.Connection, name: str, slots: int, rate: float, now: float) -> bool:
    """Insert a limit; False if one with that name exists already."""
    with _transaction(conn):
        cur = conn.execute(
            "INSERT OR IGNORE INTO concurrency_limit (name, slots, slot_decay_per_second, decaying, decayed_at, created, updated)"
            " VALUES (?, ?, ?, 0, ?, ?, ?)",
            (name, slots, rate, now, now, now),
        )
    return cur.rowcount == 1


def update(conn: sqlite3.Connection, name: str, slots: int, rate: float | None, now: float) -> bool:
    """Change a limit's size (and decay); holders keep their slots. False if there is no such limit."""
    with _transaction(conn):
        if rate is None:
            cur = conn.execute("UPDATE concurrency_limit SET slots = ?, updated = ? WHERE name = ?", (slots, now, name))
        else:
            row = conn.execute(
                "SELECT decaying, decayed_at, slot_decay_per_second FROM concurrency_limit WHERE name = ?", (name,)
            ).fetchone()
            decaying = _decayed(row[0], row[1], row[2], now) if row else 0.0
            cur = conn.execute(
                "UPDATE concurrency_limit SET slots = ?, slot_decay_per_second = ?, decaying = ?, decayed_at = ?,"
                " updated = ? WHERE name = ?",
                (slots, rate, decaying, now, now, name),
            )
    return cur.rowcount == 1


def reset(conn: sqlite3.Connection, name: str, now: float) -> bool:
    """Free every slot of a limit (holders keep running but no longer count). False if unknown."""
    with _transaction(conn):
        cur = conn.execute(
            "UPDATE concurrency_limit SET decaying = 0, decayed_at = ?, updated = ? WHERE name = ?", (now, now, name)
        )
        conn.execute("DELETE FROM concurrency_slot WHERE name = ?", (name,))
    return cur.rowcount == 1


def delete(conn: sqlite3.Connection, name: str) -> bool:
    """Remove a limit with its slots and queue. False if unknown."""
    with _transaction(conn):
        cur = conn.execute("DELETE FROM concurrency_limit WHERE name = ?", (name,))
        conn.execute("DELETE FROM concurrency_slot WHERE name = ?", (name,))
        conn.execute("DELETE FROM concurrency_waiter WHERE name = ?", (name,))
    return cur.rowcount == 1
