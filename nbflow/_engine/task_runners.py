"""Task runners: where submitted task runs execute. ``ThreadPoolTaskRunner`` is the default."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, Protocol

from nbflow._core.records import TaskRun
from nbflow._core.states import State
from nbflow._core.threads import start_thread, starting
from nbflow._engine.drive import interrupt_thread
from nbflow._engine.futures import NbflowFuture
from nbflow.exceptions import InvalidArgumentError, MissingContextError

__all__ = ["TaskRunner", "ThreadPoolTaskRunner"]

CANCEL_GRACE_SECONDS = 2.0  # how long a cancelled flow run waits for its interrupted tasks to stop


class TaskRunner(Protocol):
    """Each flow run enters its own ``duplicate()`` for the duration of the run."""

    def duplicate(self) -> TaskRunner: ...

    def __enter__(self) -> TaskRunner: ...

    def __exit__(self, *exc_info: Any) -> None: ...

    def submit(self, run: Callable[[], State], task_run: TaskRun, cancel: Callable[[], State]) -> NbflowFuture: ...


class _Job:
    """One submitted task run, and the completion its future waits on.

    Whoever claims it first runs it: a worker, or a worker that waits for it (see ``help``).
    Completion is a few slots and plain locks: a ``concurrent.futures.Future`` costs a Condition per
    task, which dominated memory in 100,000-task flows.
    """

    __slots__ = ("run", "cancel_fn", "pool", "thread", "_claim", "_done", "_result", "_error", "_waiters", "_callbacks")

    def __init__(self, run: Callable[[], State], cancel: Callable[[], State], pool: _Pool) -> None:
        self.run: Callable[[], State] | None = run
        self.cancel_fn: Callable[[], State] | None = cancel
        self.pool = pool
        self.thread: threading.Thread | None = None
        self._claim = threading.Lock()
        self._done = False
        self._result: State | None = None
        self._error: BaseException | None = None
        self._waiters: list[threading.Lock] | None = None
        self._callbacks: list[Callable[[], None]] | None = None

    def execute(self) -> None:
        if not self._claim.acquire(blocking=False):
            return
        run, self.run, self.cancel_fn = self.run, None, None  # drop arguments as soon as they are used
        self.thread = threading.current_thread()
        try:
            result = run()  # type: ignore[misc]
        except BaseException as exc:  # noqa: BLE001 - waiters see it; the lifecycle already recorded it
            self._complete(None, exc)
        else:
            self._complete(result, None)
        finally:
            self.thread = None

    def cancel(self) -> None:
        if self._claim.acquire(blocking=False):
            cancel, self.run, self.cancel_fn = self.cancel_fn, None, None
            self._complete(cancel(), None)  # type: ignore[misc]

    def help(self) -> None:
        """Called by a thread about to wait for this job: a worker of the same pool runs it itself.

        Without this, tasks that submit and wait for other tasks could fill every worker with waiters
        and deadlock a bounded pool.
        """
        if not self._done and getattr(threading.current_thread(), "nbflow_pool", None) is self.pool:
            self.execute()

    # --- completion --------------------------------------------------------------------------
    def _complete(self, result: State | None, error: BaseException | None) -> None:
        with self.pool.lock:
            self._result, self._error, self._done = result, error, True
            waiters, callbacks = self._waiters, self._callbacks
            self._waiters = self._callbacks = None
            self.pool.unfinished.pop(self, None)
        for waiter in waiters or ():
            waiter.release()
        for callback in callbacks or ():
            callback()

    def done(self) -> bool:
        return self._done

    def wait(self, timeout: float | None = None) -> bool:
        """Block until done or ``timeout``; True when done. Interruptible by Ctrl-C."""
        if self._done:
            return True
        self.help()
        waiter = threading.Lock()
        waiter.acquire()
        with self.pool.lock:
            if self.done():  # help() may have run it here, or a worker finished it since the check above
                return True
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
        if waiter.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            return True
        with self.pool.lock:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return self._done

    def state(self) -> State:
        """The final state (or the interrupt that ended the run); only once done."""
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        with self.pool.lock:
            if not self._done:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(callback)
                return
        callback()


class _Pool:
    """A bounded thread pool whose threads start only when needed."""

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers
        self._queue: SimpleQueue[_Job | None] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)
        # Jobs not finished yet, in submission order. A finished job is dropped at once, so the
        # results of a long flow's tasks are freed as soon as nobody holds their futures.
        self.unfinished: dict[_Job, None] = {}
        self._lock = threading.Lock()
        self.lock = threading.Lock()  # guards job completion, waiter lists and `unfinished`

    def submit(self, job: _Job) -> None:
        with self.lock:
            self.unfinished[job] = None
        self._queue.put(job)
        if not self._idle.acquire(blocking=False):
            with self._lock:
                if len(self._threads) < self.max_workers:
                    thread = threading.Thread(target=self._work, name=f"nbflow-worker-{len(self._threads)}", daemon=True)
                    thread.nbflow_pool = self  # type: ignore[attr-defined]
                    with starting():  # started and recorded together (see nbflow._core.threads)
                        self._threads.append(thread)
                        start_thread(thread)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            job.execute()
            del job  # an idle worker must not keep its last task's result alive
            self._idle.release()

    def wait_all(self) -> None:
        """Wait until every job is done, also those that tasks submit while we wait."""
        while True:
            with self.lock:
                job = next(iter(self.unfinished), None)
            if job is None:
                return
            job.wait()

    def _snapshot(self) -> list[_Job]:
        with self.lock:
            return list(self.unfinished)

    def cancel_all(self, grace: float = CANCEL_GRACE_SECONDS) -> None:
        """Cancel jobs that have not started; interrupt the running ones and give them ``grace``
        seconds to record how they ended (a thread stuck inside C may take longer: it is left)."""
        jobs = self._snapshot()
        for job in jobs:
            job.cancel()
        # A worker clears `job.thread` when the job ends, at any moment: read it once (reading it
        # twice could hand None to interrupt_thread, and an AttributeError would replace the interrupt).
        running = [(job, thread) for job in jobs if (thread := job.thread) is not None]
        for _job, thread in running:
            interrupt_thread(thread)
        deadline = time.monotonic() + grace
        for job, _thread in running:
            job.wait(max(0.0, deadline - time.monotonic()))

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
            raise InvalidArgumentError(f"max_workers must be a whole number >= 1, got {max_workers!r}")
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
            raise MissingContextError("ThreadPoolTaskRunner.submit() needs the runner entered (`with runner:`)")
        job = _Job(run, cancel, self._pool)
        future = NbflowFuture(task_run, job)
        self._pool.submit(job)
        return future

    def __repr__(self) -> str:
        return f"ThreadPoolTaskRunner(max_workers={self.max_workers})"
