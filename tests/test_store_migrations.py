"""The schema is versioned: an older database is migrated forward in place, keeping its rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from store_support import recording

import nbflow.runs as runs
from nbflow import flow
from nbflow._services.database.migrations import LATEST, MIGRATIONS, statements


def test_versions_run_from_one_without_gaps() -> None:
    assert [v for v, _sql in MIGRATIONS] == list(range(1, LATEST + 1))


def test_an_older_database_is_migrated_forward_keeping_its_runs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with sqlite3.connect(home / "nbflow.db") as conn:  # as the first nbflow with a run store left it
        for statement in statements(MIGRATIONS[0][1]):
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO flow_runs (id, name, flow_name, state_type, state_name, state_timestamp, created, history)"
            " VALUES ('0123456789abcdef0123456789abcdef', 'old-timer', 'legacy', 'COMPLETED', 'Completed', 1.0, 1.0,"
            " '[\"COMPLETED\",null,1000000]')"
        )
        # A task run of then, with its closing line as a row of logs (before closing_at existed).
        conn.execute(
            "INSERT INTO task_runs (id, flow_run_id, name, task_name, task_key, state_type, state_name, state_timestamp)"
            " VALUES ('t1', '0123456789abcdef0123456789abcdef', 'step', 'step', 'mod.step', 'COMPLETED', 'Completed', 1.0)"
        )
        conn.execute(
            "INSERT INTO logs (flow_run_id, task_run_id, level, timestamp, message)"
            " VALUES ('0123456789abcdef0123456789abcdef', 't1', 20, 1.0, 'Finished in state Completed()')"
        )

    @flow
    def fresh() -> int:
        return 1

    with recording(home):
        fresh()
        names = [r.name for r in runs.flow_runs(limit=None)]
        old = runs.flow_run("0123")
        old_lines = [(line.run_name, line.message) for line in runs.logs("0123")]
    assert names[-1] == "old-timer" and len(names) == 2
    assert old_lines == [("step", "Finished in state Completed()")]  # once: its row has no closing_at
    assert [s.name for s in old.history] == ["Completed"]
    with sqlite3.connect(home / "nbflow.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST


def test_scripts_split_into_statements_keep_semicolons_in_comments_and_strings() -> None:
    script = "CREATE TABLE a (x TEXT DEFAULT ';'); -- a; comment\nCREATE TABLE b (y);\n"
    assert statements(script) == ["CREATE TABLE a (x TEXT DEFAULT ';');", "-- a; comment\nCREATE TABLE b (y);"]
