"""Run records: the engine's live view of one flow run or task run."""

from __future__ import annotations

import os
import random
import socket
from typing import Any

from nbflow._core.states import State

__all__ = ["FlowRun", "TaskRun", "new_run_id"]


def new_run_id() -> str:
    """A random 128-bit run id as 32 hex digits (like a uuid4's hex); unique across processes and hosts.

    Drawn from a generator seeded from the OS at start and after a fork: ``os.urandom`` per id is a
    system call that releases the GIL, and on a busy process getting it back cost ~30 µs a task.
    """
    return f"{_ids.getrandbits(128):032x}"


_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


class FlowRun:
    """One execution of a flow. The engine mutates it; subscribers read it when an event names it.

    Passed to flow hooks as ``hook(flow, flow_run, state)``.
    """

    __slots__ = (
        "id", "name", "flow_name", "parameters", "parent_flow_run_id", "parent_task_run_id",
        "tags", "state", "start_time", "end_time", "run_count", "rerun_of", "deployment_id",
        "pid", "host", "entrypoint", "__weakref__",
    )

    def __init__(
        self,
        name: str,
        flow_name: str,
        parameters: dict[str, Any],
        *,
        parent_flow_run_id: str | None = None,
        parent_task_run_id: str | None = None,
        tags: tuple[str, ...] = (),
        rerun_of: str | None = None,
        deployment_id: str | None = None,
        id: str | None = None,
    ) -> None:
        self.id = id or new_run_id()
        self.name = name
        self.flow_name = flow_name
        self.parameters = parameters
        self.parent_flow_run_id = parent_flow_run_id
        self.parent_task_run_id = parent_task_run_id
        self.tags = tags
        self.state: State | None = None
        self.start_time: float | None = None
        self.end_time: float | None = None
        self.run_count = 0
        self.rerun_of = rerun_of
        self.deployment_id = deployment_id
        self.pid = os.getpid()
        self.host = HOST
        # Where the flow's function can be imported from (``nbflow._core.entrypoints``), set by the
        # engine when a store records the run: reruns and crash hooks read it back.
        self.entrypoint: str | None = None

    kind = "flow"

    def __repr__(self) -> str:
        return f"FlowRun(name={self.name!r}, flow_name={self.flow_name!r}, state={self.state!r})"


class TaskRun:
    """One execution of a task inside a flow run. Passed to task hooks as ``hook(task, task_run, state)``."""

    __slots__ = (
        "id", "name", "task_key", "task_name", "flow_run_id", "parameters", "tags", "state",
        "start_time", "end_time", "run_count", "cache_key", "upstream_ids", "__weakref__",
    )

    def __init__(
        self,
        name: str,
        task_name: str,
        task_key: str,
        flow_run_id: str,
        parameters: dict[str, Any],
        tags: tuple[str, ...] = (),
    ) -> None:
        self.id = new_run_id()
        self.name = name
        self.task_name = task_name
        self.task_key = task_key
        self.flow_run_id = flow_run_id
        self.parameters = parameters
        self.tags = tags
        self.state: State | None = None
        self.start_time: float | None = None
        self.end_time: float | None = None
        self.run_count = 0
        self.cache_key: str | None = None
        self.upstream_ids: tuple[str, ...] = ()

    kind = "task"

    def __repr__(self) -> str:
        return f"TaskRun(name={self.name!r}, state={self.state!r})"


HOST = socket.gethostname()  # recorded with every flow run; the crash sweep and leases compare it
