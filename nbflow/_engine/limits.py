"""Concurrency limits as runs see them: a tagged task run's slots, and who holds a slot.

The limit service (``nbflow._services.limits``) stores slots and queues and knows nothing of runs;
the states a waiting task run shows are emitted here, by the engine.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from nbflow._core import states
from nbflow._core.events import StateChanged
from nbflow._core.threads import on_event_loop
from nbflow._engine.context import FlowRunContext, TaskRunContext, current

if TYPE_CHECKING:
    from nbflow._core.records import TaskRun
    from nbflow._engine.ports import LimitsPort

__all__ = ["TaskSlots", "current_holder"]


class TaskSlots:
    """One slot of every limit named like one of the task run's tags, taken all or none.

    While it waits, the task run is ``Pending("Waiting for concurrency limit 'db' ...")``. The
    engine calls ``attempt()`` until it returns None, waiting the seconds it returns in between; on
    a thread that runs no event loop ``attempt()`` itself blocks until the slots are held (woken at
    once by a release in this process), so only an async lifecycle driven on a loop yields.
    Also a context manager.
    """

    __slots__ = ("service", "task_run", "ctx", "lease", "_steps")

    def __init__(self, service: LimitsPort, task_run: TaskRun, ctx: Any) -> None:
        self.service = service
        self.task_run = task_run
        self.ctx = ctx
        self.lease: str | None = None
        self._steps: Generator[float, None, str | None] | None = None

    def attempt(self) -> float | None:
        """Take the slots: None once they are held, else (on an event loop) seconds to wait first."""
        if not on_event_loop():
            self.__enter__()
            return None
        return self._step()

    def _step(self) -> float | None:
        try:
            if self._steps is None:
                names = tuple(dict.fromkeys(self.task_run.tags))
                flow_run = self.ctx.flow_run
                holder = f"task run {self.task_run.name!r} of flow run {flow_run.name!r}"
                req = self.service.request(names, 1, "lease", holder)
                self._steps = self.service.steps(req, None, False, tags=True, on_wait=self._waiting)
                return next(self._steps)
            return self._steps.send(None)
        except StopIteration as stop:
            self.lease = stop.value
            return None
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> TaskSlots:
        while (delay := self._step()) is not None:
            try:
                self.service.sleep(delay)
            except BaseException:
                self.close()
                raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
        lease, self.lease = self.lease, None
        self.service.release(lease)

    def close(self) -> None:
        """Stop waiting (leaving the queue); slots already held stay held until ``__exit__``."""
        if self._steps is not None:
            self._steps.close()

    def _waiting(self, message: str) -> None:
        """The run is ``Pending`` with the service's message while it waits (the engine's state)."""
        runtime = self.ctx.runtime
        state = states.Pending(message, timestamp=runtime.clock.now())
        self.task_run.state = state
        runtime.bus.emit(StateChanged(self.task_run, state))


def current_holder() -> str:
    """Who holds a slot, for ``nbflow concurrency-limit inspect``: the run, else the thread."""
    ctx = current.get()
    if ctx.__class__ is TaskRunContext:
        flow_run = ctx.flow_context.flow_run
        return f"task run {ctx.task_run.name!r} of flow run {flow_run.name!r}"
    if ctx.__class__ is FlowRunContext:
        return f"flow run {ctx.flow_run.name!r}"
    return f"thread {threading.current_thread().name!r}"
