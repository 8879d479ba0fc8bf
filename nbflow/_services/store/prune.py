"""Deleting history: one flow run (with its subflow runs), or every finished run older than a date."""

from __future__ import annotations

import sqlite3

from nbflow._services.store.history import FINAL_SQL

__all__ = ["delete_flow_runs", "old_flow_runs"]


def _tree(conn: sqlite3.Connection, flow_run_id: str) -> list[str]:
    """``flow_run_id`` and every subflow run under it, at any depth."""
    rows = conn.execute(
        "WITH RECURSIVE tree(id) AS (SELECT ? UNION SELECT f.id FROM flow_runs f JOIN tree"
        " ON f.parent_flow_run_id = tree.id) SELECT id FROM tree",
        (flow_run_id,),
    ).fetchall()
    return [row[0] for row in rows]


def delete_flow_runs(conn: sqlite3.Connection, flow_run_ids: list[str]) -> int:
    """Delete flow runs, their subflow runs, task runs, logs and edges; returns how many flow runs went.

    Call inside a write transaction.
    """
    doomed: dict[str, None] = {}
    for run_id in flow_run_ids:
        doomed.update(dict.fromkeys(_tree(conn, run_id)))
    params = [(run_id,) for run_id in doomed]
    for table in ("task_runs", "logs", "edges"):
        conn.executemany(f"DELETE FROM {table} WHERE flow_run_id = ?", params)
    return sum(conn.execute("DELETE FROM flow_runs WHERE id = ?", p).rowcount for p in params)


def old_flow_runs(conn: sqlite3.Connection, before: float, limit: int = 500) -> list[str]:
    """Finished flow runs created before ``before`` (epoch seconds), oldest first; never a running one."""
    rows = conn.execute(
        f"SELECT id FROM flow_runs WHERE created < ? AND state_type IN {FINAL_SQL} ORDER BY created LIMIT ?",
        (before, limit),
    ).fetchall()
    return [row[0] for row in rows]
