"""Pydantic models of stored runs, as ``nbflow.runs`` returns them (imported only by that API).

Times are epoch seconds (floats), as on the engine's live ``FlowRun``/``TaskRun``, so code that shows
runs (the monitor, ``%flow runs``) reads a live run and a stored one alike.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, TypeAdapter

__all__ = ["StateRecord", "FlowRunRecord", "TaskRunRecord", "LogRecord", "Edge", "RunGraph"]

_FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class StateRecord(_Record):
    """One state a run was in: ``Completed()``, ``Retrying('Retry 1/3 in 2.0 seconds')``..."""

    type: str
    name: str
    message: Optional[str] = None
    timestamp: float

    def is_final(self) -> bool:
        return self.type in _FINAL

    def __repr__(self) -> str:  # as the engine's State, so logs and records read alike
        return f"{self.name}({self.message!r})" if self.message else f"{self.name}()"

    __str__ = __repr__


class _RunRecord(_Record):
    id: str
    name: str
    state: Optional[StateRecord] = None
    history: list[StateRecord] = []
    tags: list[str] = []
    start_time: Optional[float] = None
    end_time: Optional[float] = None
    run_count: int = 0

    @property
    def state_type(self) -> Optional[str]:
        return self.state.type if self.state else None

    @property
    def state_name(self) -> Optional[str]:
        return self.state.name if self.state else None

    @property
    def state_message(self) -> Optional[str]:
        return self.state.message if self.state else None

    @property
    def duration(self) -> Optional[float]:
        """Seconds run so far (to now for a run still going), None before it started."""
        if self.start_time is None:
            return None
        return (self.end_time if self.end_time is not None else time.time()) - self.start_time


class FlowRunRecord(_RunRecord):
    """A stored flow run. ``parameters`` is the display rendering (large values cut short); load the
    real values with ``nbflow.runs.load_parameters(id)``."""

    flow_name: str
    flow_ref: Optional[str] = None
    parameters: dict[str, Any] = {}
    parent_flow_run_id: Optional[str] = None
    parent_task_run_id: Optional[str] = None
    deployment_id: Optional[str] = None
    rerun_of: Optional[str] = None
    created: Optional[float] = None
    pid: Optional[int] = None
    host: Optional[str] = None
    heartbeat: Optional[float] = None


class TaskRunRecord(_RunRecord):
    """A stored task run; ``run_count`` is the number of attempts."""

    flow_run_id: str
    task_name: str
    task_key: str
    cache_key: Optional[str] = None


class LogRecord(_Record):
    """One log line of a flow run or of one of its task runs (``task_run_id`` set)."""

    id: int
    flow_run_id: str
    task_run_id: Optional[str] = None
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


class Edge(_Record):
    """Task run ``downstream_id`` consumed the result of task run ``upstream_id``."""

    upstream_id: str
    downstream_id: str


class RunGraph(_Record):
    """A flow run with its task runs (in creation order), the edges between them, and its subflow runs."""

    flow_run: FlowRunRecord
    task_runs: list[TaskRunRecord]
    edges: list[Edge]
    subflow_runs: list[FlowRunRecord] = []


flow_run_list = TypeAdapter(list[FlowRunRecord])
task_run_list = TypeAdapter(list[TaskRunRecord])
log_list = TypeAdapter(list[LogRecord])
edge_list = TypeAdapter(list[Edge])
