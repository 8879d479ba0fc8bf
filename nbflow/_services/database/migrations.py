"""The run store's schema: an ordered list of forward migrations, tracked by ``PRAGMA user_version``.

To change the schema, append ``(next_version, "SQL;")`` to ``MIGRATIONS``; never edit a step that
has shipped (databases out there already ran it). Each step runs in the same transaction as the
``user_version`` bump, so a database is always at exactly one version. A database whose version is
higher than the last step here was written by a newer nbflow and is refused, never changed.
"""

from __future__ import annotations

import sqlite3

__all__ = ["MIGRATIONS", "LATEST", "pending", "statements"]

# (version, SQL script). Versions are 1, 2, 3, ... in order, with no gaps.
MIGRATIONS: list[tuple[int, str]] = [
    (1, """
    -- One row per flow run (subflows too). state_* is the latest state; history holds every state.
    -- history: comma-separated JSON arrays [type, name or null (the type's default), timestamp in
    -- whole microseconds, message (only when there is one)];
    -- the reader wraps it in [...]. A column, not a table: a row per state cost the writer more than
    -- everything else about a task run together.
    CREATE TABLE flow_runs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        flow_name TEXT NOT NULL,
        flow_ref TEXT,                -- 'module:qualname' of the flow, to call on_crashed hooks later
        parameters TEXT,              -- JSON rendering for display; large values are truncated
        parameters_pickle BLOB,       -- pickle of the real parameter values, for reruns (NULL: not picklable)
        parameters_error TEXT,        -- why parameters_pickle is NULL
        parent_flow_run_id TEXT,
        parent_task_run_id TEXT,
        tags TEXT,                    -- JSON list, NULL when there are none
        deployment_id TEXT,
        rerun_of TEXT,
        state_type TEXT,
        state_name TEXT,
        state_message TEXT,
        state_timestamp REAL,
        history TEXT,
        created REAL,
        start_time REAL,
        end_time REAL,
        run_count INTEGER NOT NULL DEFAULT 0,
        pid INTEGER,
        pid_start REAL,               -- start time of process `pid`: tells a reused pid from ours
        host TEXT,
        heartbeat REAL                -- last time the running process said it was alive
    );
    CREATE INDEX flow_runs_created ON flow_runs(created);
    CREATE INDEX flow_runs_flow_name ON flow_runs(flow_name, created);
    CREATE INDEX flow_runs_name ON flow_runs(name);
    CREATE INDEX flow_runs_state ON flow_runs(state_type);
    CREATE INDEX flow_runs_parent ON flow_runs(parent_flow_run_id);

    -- One row per task run; rowid order is creation order. Inputs are not stored (only their cache
    -- key): rendering every task's arguments would cost the hot path more than the rest of the row.
    -- Task run ids are random, so an index on them would cost a random B-tree insert (and a page
    -- written to the WAL) per task: rows are found through their flow run instead.
    CREATE TABLE task_runs (
        id TEXT NOT NULL,
        flow_run_id TEXT NOT NULL,
        name TEXT NOT NULL,
        task_name TEXT NOT NULL,
        task_key TEXT NOT NULL,
        cache_key TEXT,
        tags TEXT,                    -- JSON list, NULL when there are none
        state_type TEXT,
        state_name TEXT,
        state_message TEXT,
        state_timestamp REAL,
        history TEXT,                 -- as flow_runs.history
        start_time REAL,
        end_time REAL,
        run_count INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX task_runs_flow_run ON task_runs(flow_run_id);

    -- Log lines of a flow run and its task runs (task_run_id NULL: the flow run's own line;
    -- logger NULL: nbflow's own engine line).
    CREATE TABLE logs (
        id INTEGER PRIMARY KEY,
        flow_run_id TEXT NOT NULL,
        task_run_id TEXT,
        level INTEGER NOT NULL,
        timestamp REAL NOT NULL,
        logger TEXT,
        message TEXT NOT NULL
    );
    CREATE INDEX logs_flow_run ON logs(flow_run_id, id);

    -- Task run `downstream_id` consumed the result of task run `upstream_id`.
    CREATE TABLE edges (
        flow_run_id TEXT NOT NULL,
        upstream_id TEXT NOT NULL,
        downstream_id TEXT NOT NULL
    );
    CREATE INDEX edges_flow_run ON edges(flow_run_id);
    """),
    (2, """
    -- Concurrency limits (nbflow/_services/limits/storage.py). decaying/decayed_at: slots taken by
    -- rate_limit(), freeing themselves at slot_decay_per_second.
    CREATE TABLE concurrency_limit (
        name TEXT PRIMARY KEY,
        slots INTEGER NOT NULL CHECK (slots >= 0),
        slot_decay_per_second REAL NOT NULL DEFAULT 0 CHECK (slot_decay_per_second >= 0),
        decaying REAL NOT NULL DEFAULT 0,
        decayed_at REAL NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    -- Slots held, one row per (lease, limit); a row counts only until `expires` (renewed by its holder).
    CREATE TABLE concurrency_slot (
        lease_id TEXT NOT NULL,
        name TEXT NOT NULL,
        occupy INTEGER NOT NULL,
        holder TEXT NOT NULL,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        acquired REAL NOT NULL,
        expires REAL NOT NULL,
        PRIMARY KEY (lease_id, name)
    );
    CREATE INDEX concurrency_slot_by_name ON concurrency_slot(name, expires);
    CREATE INDEX concurrency_slot_by_expiry ON concurrency_slot(expires);
    -- The queue of waiters, one row per (ticket, limit); lower tickets are served first.
    CREATE TABLE concurrency_waiter (
        ticket INTEGER NOT NULL,
        name TEXT NOT NULL,
        occupy INTEGER NOT NULL,
        holder TEXT NOT NULL,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        since REAL NOT NULL,
        expires REAL NOT NULL,
        PRIMARY KEY (name, ticket)
    );
    CREATE INDEX concurrency_waiter_by_ticket ON concurrency_waiter(ticket);
    CREATE INDEX concurrency_waiter_by_expiry ON concurrency_waiter(expires);
    """),
    (3, """
    -- closing_at: the time of the task run's closing log line ("Finished in state <its state>", at
    -- INFO, nbflow's engine line), kept in this row instead of as a row of logs; readers put it back
    -- in place. NULL: the line, if any, is a row of logs. One row less per task run: a third of
    -- what writing a task run costs SQLite.
    ALTER TABLE task_runs ADD COLUMN closing_at REAL;
    """),
    (4, """
    -- Spool files written into this store (nbflow/_services/store/spool.py), recorded in the same transaction
    -- as their rows: a file replayed a second time (its remover died first) is not written twice.
    CREATE TABLE spool_replays (
        id TEXT PRIMARY KEY,
        replayed REAL NOT NULL
    );
    """),
    (5, """
    -- 1 while a crashed run's on_crashed hooks are owed: the sweep marks any process's crash, but
    -- only a process that runs flows calls hooks (calling them imports code, which a process that
    -- reads history must never do). The caller claims each run (1 -> NULL) in one UPDATE.
    ALTER TABLE flow_runs ADD COLUMN crash_hooks_owed INTEGER;
    CREATE INDEX flow_runs_crash_hooks_owed ON flow_runs (crash_hooks_owed) WHERE crash_hooks_owed IS NOT NULL;
    """),
]

LATEST: int = MIGRATIONS[-1][0]


def pending(version: int) -> list[tuple[int, str]]:
    """The steps a database at ``version`` still needs, in order."""
    return [(v, sql) for v, sql in MIGRATIONS if v > version]


def statements(script: str) -> list[str]:
    """Split a script into single statements (``executescript`` would commit mid-transaction).

    >>> statements("CREATE TABLE a (x); -- note; here\\nCREATE TABLE b (y);")
    ['CREATE TABLE a (x);', '-- note; here\\nCREATE TABLE b (y);']
    """
    out: list[str] = []
    chunk = ""
    for part in script.split(";"):
        chunk += part + ";"
        if sqlite3.complete_statement(chunk):
            if chunk.strip(" \n\t;"):
                out.append(chunk.strip())
            chunk = ""
    return out


def _check_order() -> None:
    versions = [v for v, _sql in MIGRATIONS]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"nbflow migrations must be numbered 1, 2, 3, ... in order; got {versions}")


_check_order()
