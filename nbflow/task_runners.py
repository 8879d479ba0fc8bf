"""Task runners: where submitted task runs execute. ``ThreadPoolTaskRunner`` is the default."""

from __future__ import annotations

import concurrent.futures as cf
import os
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, Protocol

from nbflow._engine import interrupt_thread
from nbflow._runs import TaskRun
from nbflow._states import State
from nbflow.futures import NbflowFuture

__all__ = ["TaskRunner", "ThreadPoolTaskRunner"]


class TaskRunner(Protocol):
    """Each flow run enters its own ``duplicate()`` for the duration of the run."""

    def duplicate(self) -> TaskRunner: ...

    def __enter__(self) -> TaskRunner: ...

    def __exit__(self, *exc_info: Any) -> None: ...

    def submit(self, run: Callable[[], State], task_run: TaskRun, cancel: Callable[[], State]) -> NbflowFuture: ...


class _Job:
    """One submitted task run. Whoever claims it first runs it: a worker, or a worker that waits for it."""

    __slots__ = ("run", "cancel_fn", "future", "_claim", "pool", "thread")

    def __init__(self, run: Callable[[], State], cancel: Callable[[], State], pool: _Pool) -> None:
        self.run = run
        self.cancel_fn = cancel
        self.future: cf.Future = cf.Future()
        self._claim = threading.Lock()
        self.pool = pool
        self.thread: threading.Thread | None = None

    def execute(self) -> None:
        if not self._claim.acquire(blocking=False):
            return
        self.future.set_running_or_notify_cancel()
        self.thread = threading.current_thread()
        run, self.run = self.run, None  # drop arguments as soon as they are used
        try:
            self.future.set_result(run())  # type: ignore[misc]
        except BaseException as exc:  # noqa: BLE001 - waiters see it; the lifecycle already recorded it
            self.future.set_exception(exc)
        finally:
            self.thread = None

    def cancel(self) -> None:
        if self._claim.acquire(blocking=False):
            self.future.set_running_or_notify_cancel()
            self.run = None
            self.future.set_result(self.cancel_fn())

    def help(self) -> None:
        """Called by a thread about to wait for this job: a worker of the same pool runs it itself.

        Without this, tasks that submit and wait for other tasks could fill every worker with waiters
        and deadlock a bounded pool.
        """
        if getattr(threading.current_thread(), "nbflow_pool", None) is self.pool:
            self.execute()


class _Pool:
    """A bounded thread pool whose threads start only when needed."""

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers
        self._queue: SimpleQueue[_Job | None] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)
        self._jobs: list[_Job] = []
        self._lock = threading.Lock()

    def submit(self, job: _Job) -> None:
        self._jobs.append(job)
        self._queue.put(job)
        if not self._idle.acquire(blocking=False):
            with self._lock:
                if len(self._threads) < self.max_workers:
                    thread = threading.Thread(target=self._work, name=f"nbflow-worker-{len(self._threads)}", daemon=True)
                    thread.nbflow_pool = self  # type: ignore[attr-defined]
                    self._threads.append(thread)
                    thread.start()

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            job.execute()
            self._idle.release()

    def wait_all(self) -> None:
        for job in self._jobs:
            job.help()
        cf.wait([job.future for job in self._jobs])

    def cancel_all(self) -> None:
        """Cancel jobs that have not started; interrupt the ones that are running."""
        for job in self._jobs:
            job.cancel()
        for job in self._jobs:
            if job.thread is not None:
                interrupt_thread(job.thread)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)


class ThreadPoolTaskRunner:
    """Runs submitted tasks on a bounded pool of threads (default ``min(32, cores + 4)``).

    Threads start lazily, so a flow that submits nothing pays nothing. A task may submit and wait on
    other tasks: a worker that waits for a task no one has started runs it itself.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
            raise ValueError(f"max_workers must be a whole number >= 1, got {max_workers!r}")
        self.max_workers = max_workers
        self._pool: _Pool | None = None

    def duplicate(self) -> ThreadPoolTaskRunner:
        return type(self)(self.max_workers)

    def __enter__(self) -> ThreadPoolTaskRunner:
        workers = self.max_workers or min(32, (os.cpu_count() or 1) + 4)
        self._pool = _Pool(workers)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if exc_type is None:
            pool.wait_all()
        else:
            pool.cancel_all()
        pool.shutdown()

    def submit(self, run: Callable[[], State], task_run: TaskRun, cancel: Callable[[], State]) -> NbflowFuture:
        if self._pool is None:
            raise RuntimeError("ThreadPoolTaskRunner.submit() needs the runner entered (`with runner:`)")
        job = _Job(run, cancel, self._pool)
        future = NbflowFuture(task_run, job.future, job)
        self._pool.submit(job)
        return future

    def __repr__(self) -> str:
        return f"ThreadPoolTaskRunner(max_workers={self.max_workers})"
