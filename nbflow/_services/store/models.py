"""Pydantic models of stored runs, as ``nbflow.runs`` returns them (imported only by that API).

Times are epoch seconds (floats), as on the engine's live ``FlowRun``/``TaskRun``, so code that shows
runs (the monitor, ``%flow runs``) reads a live run and a stored one alike.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, computed_field, model_validator

from nbflow._core.states import FINAL_TYPE_NAMES

__all__ = ["StateRecord", "FlowRunRecord", "TaskRunRecord", "LogRecord", "RunGraph"]


_set = object.__setattr__
_FIELDS: dict[type, frozenset[str]] = {}


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)

    @classmethod
    def _build(cls, values: dict[str, Any], private: dict[str, Any] | None = None) -> Any:
        """An instance from ``values`` (every field, already of its type) without validating them again.

        The values come from our own database, written by our own writer; validating 10,000 task run
        rows field by field costs more than the whole 100 ms a graph read may take. Tests check that a
        built record equals the validated one.
        """
        fields = _FIELDS.get(cls)
        if fields is None:
            fields = _FIELDS[cls] = frozenset(cls.model_fields)
        obj = cls.__new__(cls)
        _set(obj, "__dict__", values)
        _set(obj, "__pydantic_fields_set__", fields)
        _set(obj, "__pydantic_extra__", None)
        _set(obj, "__pydantic_private__", private)
        return obj


class StateRecord(_Record):
    """One state a run was in: ``Completed()``, ``Retrying('Retry 1/3 in 2.0 seconds')``..."""

    type: str
    name: str
    message: str | None = None
    timestamp: float

    def is_final(self) -> bool:
        return self.type in FINAL_TYPE_NAMES

    def __repr__(self) -> str:  # as the engine's State, so logs and records read alike
        return f"{self.name}({self.message!r})" if self.message else f"{self.name}()"

    __str__ = __repr__


class _RunRecord(_Record):
    id: str
    name: str
    tags: list[str] = []
    start_time: float | None = None
    end_time: float | None = None
    run_count: int = 0
    # The stored latest state (type, name, message, timestamp) and history text, made into records
    # when asked for: a graph read of 10,000 task runs would otherwise build 40,000 models. A record
    # validated from a dump (``model_validate(record.model_dump())``) holds the records themselves.
    _state: Any = PrivateAttr(default=None)
    _history: Any = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_states(cls, data: Any, handler: Any) -> Any:
        record = handler(data)
        if isinstance(data, dict):
            private = record.__pydantic_private__
            if data.get("state") is not None:
                private["_state"] = StateRecord.model_validate(data["state"])
            if data.get("history"):
                private["_history"] = [StateRecord.model_validate(s) for s in data["history"]]
        return record

    @computed_field  # type: ignore[prop-decorator]
    @property
    def state(self) -> StateRecord | None:
        """The run's latest state (None before its first)."""
        raw = self._state
        if raw is None or isinstance(raw, StateRecord):
            return raw
        if raw[0] is None:
            return None
        return StateRecord._build({"type": raw[0], "name": raw[1], "message": raw[2], "timestamp": raw[3]})  # type: ignore[no-any-return]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def history(self) -> list[StateRecord]:
        """Every state the run went through, oldest first."""
        if isinstance(self._history, list):
            return list(self._history)
        from nbflow._services.store.history import parse_history

        return [StateRecord._build({"type": t, "name": n, "message": m, "timestamp": ts})
                for t, n, m, ts in parse_history(self._history)]

    @property
    def state_type(self) -> str | None:
        return self.state.type if self.state else None

    @property
    def state_name(self) -> str | None:
        return self.state.name if self.state else None

    @property
    def state_message(self) -> str | None:
        return self.state.message if self.state else None

    @property
    def duration(self) -> float | None:
        """Seconds run so far (to now for a run still going), None before it started."""
        if self.start_time is None:
            return None
        return (self.end_time if self.end_time is not None else time.time()) - self.start_time


class FlowRunRecord(_RunRecord):
    """A stored flow run. ``parameters`` is the display rendering (large values cut short); load the
    real values with ``nbflow.runs.load_parameters(id)``."""

    flow_name: str
    flow_ref: str | None = None
    parameters: dict[str, Any] = {}
    parent_flow_run_id: str | None = None
    parent_task_run_id: str | None = None
    deployment_id: str | None = None
    rerun_of: str | None = None
    created: float | None = None
    pid: int | None = None
    host: str | None = None
    heartbeat: float | None = None


class TaskRunRecord(_RunRecord):
    """A stored task run; ``run_count`` is the number of attempts."""

    flow_run_id: str
    task_name: str
    task_key: str
    cache_key: str | None = None


class LogRecord(_Record):
    """One log line of a flow run or of one of its task runs (``task_run_id`` set). ``id`` orders the
    lines a process wrote; a task run's closing line, kept with the task run, has none."""

    id: int | None = None
    flow_run_id: str
    task_run_id: str | None = None
    run_name: str
    level: int
    timestamp: float
    logger: str
    message: str

    @property
    def level_name(self) -> str:
        return logging.getLevelName(self.level)

    def format(self) -> str:
        """The line as the console printed it: ``15:42:01.234 | INFO    | Task run 'x' - message``."""
        kind = "Task run" if self.task_run_id else "Flow run"
        second = int(self.timestamp)
        stamp = f"{time.strftime('%H:%M:%S', time.localtime(second))}.{int((self.timestamp - second) * 1000):03d}"
        return f"{stamp} | {self.level_name:<7} | {kind} '{self.run_name}' - {self.message}"


class RunGraph(_Record):
    """A flow run with its task runs (in creation order), the edges between them as
    ``(upstream_id, downstream_id)`` pairs, and its subflow runs."""

    flow_run: FlowRunRecord
    task_runs: list[TaskRunRecord]
    edges: list[tuple[str, str]]
    subflow_runs: list[FlowRunRecord] = []

