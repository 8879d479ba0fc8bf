"""Futures of submitted task runs: ``result()``, ``state``, ``wait()``, and ``wait``/``as_completed``."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from queue import Empty, SimpleQueue
from typing import Any, NamedTuple

from nbflow._core.records import TaskRun
from nbflow._core.states import State

__all__ = ["NbflowFuture", "PrefectFuture", "FutureList", "wait", "as_completed", "DoneAndNotDoneFutures"]


class NbflowFuture:
    """A task run that was submitted; its final ``State`` arrives later.

    ``result()`` waits and returns the task's return value, or raises its exception.
    """

    __slots__ = ("task_run", "_job")

    def __init__(self, task_run: TaskRun, job: Any) -> None:
        self.task_run = task_run
        # The runner's completion: done(), wait(timeout) -> bool, state(), add_done_callback(fn).
        self._job = job

    @property
    def task_run_id(self) -> str:
        return self.task_run.id

    @property
    def state(self) -> State:
        """The current state: final once done, else what the run is doing now."""
        if self._job.done():
            return self._job.state()  # type: ignore[no-any-return]
        return self.task_run.state  # type: ignore[return-value]

    def done(self) -> bool:
        return self._job.done()  # type: ignore[no-any-return]

    def wait(self, timeout: float | None = None) -> None:
        """Block until the task run is final, or ``timeout`` seconds pass."""
        self._job.wait(timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        """The task's return value; its exception if it failed (or the exception, if not raising)."""
        __tracebackhide__ = True
        if not self._job.wait(timeout):
            raise TimeoutError(f"Task run {self.task_run.name!r} did not finish within {timeout} seconds")
        return self._job.state().result(raise_on_failure=raise_on_failure)

    def add_done_callback(self, fn: Any) -> None:
        """Call ``fn(future)`` once the task run is final (at once if it already is)."""
        self._job.add_done_callback(lambda: fn(self))

    def __repr__(self) -> str:
        return f"NbflowFuture({self.task_run.name!r}, state={self.state!r})"


PrefectFuture = NbflowFuture  # the name Prefect users reach for


class FutureList(list):
    """What ``task.map(...)`` returns: a list of futures that can be waited on or resolved at once."""

    def wait(self, timeout: float | None = None) -> None:
        wait(self, timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        return [
            f.result(None if deadline is None else max(0.0, deadline - time.monotonic()), raise_on_failure)
            for f in self
        ]


class DoneAndNotDoneFutures(NamedTuple):
    done: set[NbflowFuture]
    not_done: set[NbflowFuture]


def wait(futures: Iterable[NbflowFuture], timeout: float | None = None) -> DoneAndNotDoneFutures:
    """Wait until all ``futures`` are final or ``timeout`` passes; returns ``(done, not_done)``.

    >>> done, not_done = wait([fut_a, fut_b], timeout=10)  # doctest: +SKIP
    """
    futures = list(futures)
    deadline = None if timeout is None else time.monotonic() + timeout
    for future in futures:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        future.wait(remaining)
        if deadline is not None and time.monotonic() >= deadline:
            break
    done = {f for f in futures if f.done()}
    return DoneAndNotDoneFutures(done, set(futures) - done)


def as_completed(futures: Iterable[NbflowFuture], timeout: float | None = None) -> Iterator[NbflowFuture]:
    """Yield futures as their task runs finish, first finished first.

    Raises ``TimeoutError`` if ``timeout`` seconds pass before all are done.
    """
    futures = list(futures)
    finished: SimpleQueue[NbflowFuture] = SimpleQueue()
    for future in futures:
        future.add_done_callback(finished.put)
    deadline = None if timeout is None else time.monotonic() + timeout
    for _ in futures:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            yield finished.get(timeout=remaining)
        except Empty:
            raise TimeoutError(f"{len(futures)} futures did not all finish within {timeout} seconds") from None
