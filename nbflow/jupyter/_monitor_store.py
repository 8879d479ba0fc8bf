"""Feed a ``MonitorModel`` from the run store: a run of another process, or one that ended long ago.

``StoreFollower.poll`` reads what changed since its last call (new runs, changed states, new log
lines, new edges) and feeds it to the model as the run events a live run would have sent, with
``RunRecord``s standing in for the engine's run records. So the same follower replays a finished
run in one call and follows a running one when called again and again.

Pure: SQLite and the model only, no Jupyter imports.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from nbflow._core.events import EdgesAdded, LogEmitted, RunCreated, StateChanged
from nbflow._core.states import State, StateType
from nbflow._services.store import reader
from nbflow.jupyter._monitor_model import MonitorModel
from nbflow.jupyter._monitor_records import RunRecord

__all__ = ["StoreFollower", "load_model"]

_FINAL = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


class StoreFollower:
    """Brings a model up to date with the stored rows of one flow run and its subflows."""

    def __init__(self, model: MonitorModel) -> None:
        self.model = model
        self._records: dict[str, RunRecord] = {}
        self._states: dict[str, Any] = {}  # run id -> state timestamp already fed
        self._flows: list[str] = [model.flow_run_id]
        self._log_after: dict[str, int] = {}
        self._edges_seen: dict[str, int] = {}
        self.finished = False

    def poll(self, conn: sqlite3.Connection) -> None:
        """Feed everything that changed in the store since the last poll."""
        model = self.model
        i = 0
        while i < len(self._flows):  # the list grows as subflows turn up
            flow_run_id = self._flows[i]
            row = reader.flow_run(conn, flow_run_id)
            parent = None if i == 0 else row["parent_flow_run_id"]
            events: list[tuple[float, int, tuple[Any, ...], dict[str, Any]]] = []
            self._run(row, "flow", parent, row["flow_name"], row["flow_name"], events)
            for values in reader.task_runs(conn, flow_run_id):
                task = dict(zip(reader.TASK_COLUMNS, values))
                self._run(task, "task", flow_run_id, task["task_key"], task["task_name"], events)
            for sub in reader.subflow_runs(conn, flow_run_id):
                if sub["id"] not in self._flows:
                    self._flows.append(sub["id"])
            for log_id, _flow, task_run_id, level, timestamp, logger, message in reader.logs(
                conn, flow_run_id, after=self._log_after.get(flow_run_id, 0)
            ):
                self._log_after[flow_run_id] = log_id
                events.append((timestamp, 1, (task_run_id or flow_run_id, level, message, timestamp, logger), {}))
            # Transitions and log lines in the order they happened: the state log reads like the run.
            events.sort(key=lambda e: (e[0], e[1]))
            for _t, kind, args, kwargs in events:
                if kind == 0:
                    self._state_changed(*args, **kwargs)
                else:
                    self._log_emitted(*args)
            pairs = reader.edges(conn, flow_run_id)
            for upstream, downstream in pairs[self._edges_seen.get(flow_run_id, 0):]:
                model.feed(EdgesAdded(model.flow_run_id, (upstream,), downstream))
            self._edges_seen[flow_run_id] = len(pairs)
            if i == 0:
                self.finished = row["state_type"] in _FINAL
            i += 1

    def _run(self, row: dict[str, Any], kind: str, parent: str | None, key: str, label: str,
             events: list[tuple[float, int, tuple[Any, ...], dict[str, Any]]]) -> None:
        run_id = row["id"]
        seen = self._states.get(run_id)
        if seen is None:
            self._run_created(run_id, kind, row["name"], flow_run_id=parent, key=key, label=label,
                              start=row["start_time"])
        if seen == row["state_timestamp"]:
            return
        self._states[run_id] = row["state_timestamp"]
        history = reader.parse_history(row["history"])
        if seen is not None:
            history = [h for h in history if h[3] > seen]
        if not history and row["state_type"]:
            history = [(row["state_type"], row["state_name"], row["state_message"], row["state_timestamp"])]
        for n, (type_, name, message, timestamp) in enumerate(history):
            last = n == len(history) - 1
            events.append((timestamp, 0, (run_id, name, type_, timestamp), {
                "message": message,
                "attempts": row["run_count"] if last else None,
                "cache_key": row.get("cache_key") if last else None,
                "start": row["start_time"] if last else None,
                "end": row["end_time"] if last and type_ in _FINAL else None,
                "closing_at": row.get("closing_at") if last else None,
            }))


    # --- rows as run events -----------------------------------------------------------------------
    def _run_created(self, run_id: str, kind: str, name: str, *, flow_run_id: str | None, key: str,
                     label: str, start: float | None) -> None:
        """A run exists. ``kind`` is ``"task"`` or ``"flow"``; for a flow, ``flow_run_id`` is its parent."""
        if kind == "task":
            record = RunRecord(run_id, kind, name, task_key=key or label or name, task_name=label or key or name,
                               flow_run_id=flow_run_id, start_time=start)
        else:
            record = RunRecord(run_id, kind, name, flow_name=key or label or name, parent_flow_run_id=flow_run_id,
                               start_time=start)
        self._records[run_id] = record
        self.model.feed(RunCreated(record))  # type: ignore[arg-type]

    def _state_changed(self, run_id: str, name: str, type: str, timestamp: float, *, message: str | None,
                       attempts: int | None, cache_key: str | None, start: float | None, end: float | None,
                       closing_at: float | None = None) -> None:
        """A run entered a state (a failure's stored traceback text stands in for its exception)."""
        record = self._records.get(run_id)
        if record is None:
            return
        state = State(StateType(type), name, message, timestamp=timestamp)
        record.state = state
        if attempts is not None:
            record.run_count = attempts
        if cache_key is not None:
            record.cache_key = cache_key
        if start is not None or (type == "RUNNING" and record.start_time is None):
            record.start_time = start or timestamp
        if end is not None or type in _FINAL:
            record.end_time = end or timestamp
        self.model.feed(StateChanged(record, state, closing_at))  # type: ignore[arg-type]

    def _log_emitted(self, run_id: str, level: int, message: str, timestamp: float, logger: str) -> None:
        record = self._records.get(run_id)
        if record is not None:
            self.model.feed(LogEmitted(record, level, message, timestamp, logger))  # type: ignore[arg-type]


def load_model(conn: sqlite3.Connection, ref: str) -> tuple[MonitorModel, StoreFollower]:
    """A model of the stored flow run ``ref`` (id, unique id prefix or run name), and its follower."""
    run_id = reader.resolve_flow_run(conn, ref)
    model = MonitorModel(run_id)
    follower = StoreFollower(model)
    follower.poll(conn)
    return model, follower
