"""Read the run history: flow runs, task runs, logs and graphs from ``$NBFLOW_HOME/nbflow.db``.

>>> import nbflow.runs
>>> for run in nbflow.runs.flow_runs(state="failed", limit=5):   # doctest: +SKIP
...     print(run.name, run.state, run.end_time)

Every function first writes out what this process has recorded so far, so a run that just returned
is there. Flow runs can be named by id, a unique prefix of the id, or run name.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from nbflow._services.store import prune as _prune
from nbflow._services.store import reader

if TYPE_CHECKING:
    from nbflow._services.store.models import FlowRunRecord, LogRecord, RunGraph, TaskRunRecord
    from nbflow._services.store.service import Store

__all__ = [
    "current_store", "delete_flow_run", "flow_run", "flow_runs", "graph", "load_parameters", "logs", "prune",
    "task_run", "task_runs",
]

_readers: dict[str, Store] = {}


def current_store() -> Store:
    """The current runtime's store, or (store turned off) a reader of the same home folder."""
    from nbflow._engine.runtime import get_runtime
    from nbflow._services.store.service import Store

    runtime = get_runtime()
    if isinstance(runtime.store, Store):
        return runtime.store

    home = str(runtime.settings.home)
    if home not in _readers:
        _readers[home] = Store(runtime.settings)
    return _readers[home]


def _flow_records(rows: list[dict[str, Any]]) -> list[FlowRunRecord]:
    from nbflow._services.store.models import FlowRunRecord

    return [FlowRunRecord._build({
        "id": r["id"], "name": r["name"], "tags": json.loads(r["tags"]) if r["tags"] else [],
        "start_time": r["start_time"], "end_time": r["end_time"],
        "run_count": r["run_count"], "flow_name": r["flow_name"], "flow_ref": r["flow_ref"],
        "parameters": json.loads(r["parameters"]) if r["parameters"] else {},
        "parent_flow_run_id": r["parent_flow_run_id"], "parent_task_run_id": r["parent_task_run_id"],
        "deployment_id": r["deployment_id"], "rerun_of": r["rerun_of"], "created": r["created"], "pid": r["pid"],
        "host": r["host"], "heartbeat": r["heartbeat"],
    }, {"_state": (r["state_type"], r["state_name"], r["state_message"], r["state_timestamp"]),
        "_history": r["history"]}) for r in rows]


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the garbage collector while thousands of records are built: their allocations set it
    off dozens of times, and each full pass walks every object of the process (half of the time
    reading a 10,000-task run took, measured), though none of the new objects is garbage."""
    if not gc.isenabled():  # paused by someone else: theirs to resume
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _task_records(rows: list[tuple]) -> list[TaskRunRecord]:
    """Records of task run rows; ten thousand of them in a few tens of milliseconds (see ``_build``)."""
    from nbflow._services.store.models import TaskRunRecord

    build = TaskRunRecord._build
    loads = json.loads
    with _collector_paused():
        return [build({
            "id": id_, "name": name, "tags": loads(tags) if tags else [], "start_time": start, "end_time": end,
            "run_count": run_count, "flow_run_id": flow_run_id, "task_name": task_name, "task_key": task_key,
            "cache_key": cache_key,
        }, {"_state": (s_type, s_name, s_message, s_time), "_history": history})
            for (id_, flow_run_id, name, task_name, task_key, cache_key, tags, s_type, s_name, s_message, s_time,
                 history, start, end, run_count, _closing_at) in rows]


def flow_runs(flow_name: str | None = None, state: str | None = None, limit: int | None = 20, *,
              id_prefix: str | None = None, top_level: bool = False) -> list[FlowRunRecord]:
    """Flow runs, newest first. ``state``: a type (``"failed"``, ``"completed"``) or a name (``"Cached"``,
    ``"TimedOut"``), any case. ``limit=None``: all of them. ``top_level``: leave out subflow runs."""
    store = current_store()
    with store.reading(flush=True) as conn:
        rows = reader.flow_runs(conn, flow_name=flow_name, state=state, limit=limit, id_prefix=id_prefix,
                                top_level=top_level)
    return _flow_records(rows)


def flow_run(flow_run_id: str) -> FlowRunRecord:
    """One flow run, by id, unique id prefix or run name; ``RunNotFoundError`` if none (or several) match."""
    store = current_store()
    with store.reading(flush=True) as conn:
        row = reader.flow_run(conn, flow_run_id)
    return _flow_records([row])[0]


def task_runs(flow_run_id: str) -> list[TaskRunRecord]:
    """The task runs of a flow run, in the order they were created."""
    store = current_store()
    with store.reading(flush=True) as conn:
        rows = reader.task_runs(conn, reader.resolve_flow_run(conn, flow_run_id))
    return _task_records(rows)


def task_run(task_run_id: str, flow_run_id: str | None = None) -> TaskRunRecord:
    """One task run by its full id (faster when its flow run is given too)."""
    store = current_store()
    with store.reading(flush=True) as conn:
        row = reader.task_run(conn, task_run_id, flow_run_id)
    return _task_records([tuple(row[c] for c in reader.TASK_COLUMNS)])[0]


def logs(run_id: str, level: int = 0) -> list[LogRecord]:
    """Log lines of a flow run (its own and its task runs', oldest first) or of one task run (full id)."""
    from nbflow._services.store.models import LogRecord
    from nbflow.exceptions import RunNotFoundError

    store = current_store()
    with store.reading(flush=True) as conn:
        task_id = None
        try:
            flow_id = reader.resolve_flow_run(conn, run_id)
        except RunNotFoundError:
            try:
                task = reader.task_run(conn, run_id)
            except RunNotFoundError:
                raise RunNotFoundError(f"No flow run or task run matches {run_id!r}.") from None
            flow_id, task_id = task["flow_run_id"], run_id
        rows = reader.lines(conn, flow_id, task_run_id=task_id)
        names = reader.task_names(conn, flow_id)
        flow_name = conn.execute("SELECT name FROM flow_runs WHERE id = ?", (flow_id,)).fetchone()[0]
    build = LogRecord._build
    with _collector_paused():
        return [build({"id": i, "flow_run_id": f, "task_run_id": t, "run_name": names.get(t, "?") if t else flow_name,
                       "level": lv, "timestamp": ts, "logger": lg, "message": m})
                for i, f, t, lv, ts, lg, m in rows if lv >= level]


def graph(flow_run_id: str) -> RunGraph:
    """A flow run with its task runs, the edges between them, and its subflow runs."""
    from nbflow._services.store.models import RunGraph

    store = current_store()
    with store.reading(flush=True) as conn, _collector_paused():  # rows and records: tens of thousands
        flow = reader.flow_run(conn, flow_run_id)
        tasks = reader.task_runs(conn, flow["id"])
        pairs = reader.edges(conn, flow["id"])
        subflows = reader.subflow_runs(conn, flow["id"])
        return RunGraph._build({  # type: ignore[no-any-return]
            "flow_run": _flow_records([flow])[0],
            "task_runs": _task_records(tasks),
            "edges": pairs,
            "subflow_runs": _flow_records(subflows),
        })


def load_parameters(flow_run_id: str) -> dict[str, Any]:
    """The real parameter values a flow run was called with, for a rerun.

    Raises ``ParametersNotStoredError`` when they could not be pickled (a lock, a lambda...) or cannot
    be unpickled here (a class defined in another notebook's kernel).
    """
    store = current_store()
    with store.reading(flush=True) as conn:
        return reader.load_parameters(conn, reader.resolve_flow_run(conn, flow_run_id))


def delete_flow_run(flow_run_id: str) -> int:
    """Delete a flow run with its subflow runs, task runs, logs and edges; returns flow runs deleted."""
    store = current_store()
    with store.reading(flush=True) as conn:
        run_id = reader.resolve_flow_run(conn, flow_run_id)
    return int(store.write(lambda c: _prune.delete_flow_runs(c, [run_id])))


def prune(older_than: timedelta | float | str) -> int:
    """Delete finished flow runs created more than ``older_than`` ago: a timedelta, seconds, or text
    such as ``"30d"``, ``"12h"``. Running runs are never deleted. Returns how many flow runs (subflows
    included) were deleted."""
    import time

    from nbflow._core.durations import parse_duration

    before = time.time() - parse_duration(older_than)
    store = current_store()
    total = 0
    while True:  # in chunks, so other processes never wait long for the write lock
        deleted = int(store.write(lambda c: _prune.delete_flow_runs(c, _prune.old_flow_runs(c, before))))
        total += deleted
        if not deleted:
            return total
