"""The one piece of ambient state: which flow or task run the current code is running in."""

from __future__ import annotations

import threading
import weakref
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbflow._core.records import FlowRun, TaskRun
    from nbflow._engine.flow import Flow
    from nbflow._engine.runtime import Runtime
    from nbflow._engine.task import Task
    from nbflow._engine.task_runners import TaskRunner

__all__ = ["FlowRunContext", "TaskRunContext", "RootContext", "current", "flow_context"]


class RootContext:
    """No run, but a chosen runtime: ``with use_runtime(rt):`` outside any flow."""

    __slots__ = ("runtime",)

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime


class FlowRunContext:
    """Everything code inside one flow run needs: its runtime, run record and task runner."""

    __slots__ = (
        "runtime", "flow", "flow_run", "task_runner", "log_prints", "parent",
        "_name_counts", "_lock", "result_owners",
    )

    def __init__(
        self,
        runtime: Runtime,
        flow: Flow,
        flow_run: FlowRun,
        task_runner: TaskRunner,
        log_prints: bool,
        parent: AnyContext | None,  # the context the run started in: a RootContext under use_runtime()
    ) -> None:
        self.runtime = runtime
        self.flow = flow
        self.flow_run = flow_run
        self.task_runner = task_runner
        self.log_prints = log_prints
        self.parent = parent
        self._name_counts: dict[str, int] = {}
        self._lock = threading.Lock()
        # id(result) -> (task run id, a weak reference to the result, or the result itself when it
        # cannot be weakly referenced: lists, dicts, str...). Lets a value a task returned be
        # recognised when it is passed into another task, and recorded as a graph edge.
        self.result_owners: dict[int, tuple[str, Any]] = {}

    def track_result(self, value: Any, task_run_id: str) -> None:
        """Remember that ``value`` came from ``task_run_id``, without keeping a large result (a
        DataFrame, an array) alive once the user drops it: the entry goes when the value does."""
        key = id(value)
        owners = self.result_owners

        def forget(ref: weakref.ref) -> None:
            entry = owners.get(key)
            if entry is not None and entry[1] is ref:
                owners.pop(key, None)

        if type(value).__weakrefoffset__:
            owners[key] = (task_run_id, weakref.ref(value, forget))
        else:  # not weak-referenceable (int, str, list, dict...): hold it, its id must stay unique
            owners[key] = (task_run_id, value)

    def result_owner(self, value: Any) -> str | None:
        """The task run that returned this very object, if one did in this flow run."""
        entry = self.result_owners.get(id(value))
        if entry is None:
            return None
        held = entry[1]
        if held is value or (held.__class__ is weakref.ref and held() is value):
            return entry[0]
        return None

    def next_task_run_name(self, task_name: str) -> str:
        """``fetch``, then ``fetch-2``, ``fetch-3``: a suffix only for later runs in this flow run."""
        with self._lock:
            count = self._name_counts.get(task_name, 0) + 1
            self._name_counts[task_name] = count
        return task_name if count == 1 else f"{task_name}-{count}"


class TaskRunContext:
    """Code inside a task run: its task, run record, and the flow run it belongs to."""

    __slots__ = ("runtime", "task", "task_run", "flow_context", "log_prints")

    def __init__(self, flow_context: FlowRunContext, task: Task, task_run: TaskRun, log_prints: bool) -> None:
        self.runtime = flow_context.runtime
        self.flow_context = flow_context
        self.task = task
        self.task_run = task_run
        self.log_prints = log_prints


AnyContext = RootContext | FlowRunContext | TaskRunContext

current: ContextVar[AnyContext | None] = ContextVar("nbflow_current_run", default=None)


def flow_context() -> FlowRunContext | None:
    """The flow run the caller is in (also from inside one of its tasks), or None."""
    ctx = current.get()
    if ctx.__class__ is FlowRunContext:
        return ctx
    if ctx.__class__ is TaskRunContext:
        return ctx.flow_context
    return None  # no run (None), or a RootContext: a runtime chosen outside any flow
