"""``DaskTaskRunner``: submitted tasks run on a Dask cluster, for when one machine is not enough.

Only the task's function goes to Dask. Its run (states, retries, timeouts, cache, hooks, events)
stays in the flow's process, so the run store, the console and the monitor see every task run as
they do with threads. Log lines (and ``log_prints`` output) written on a worker travel back with the
result and are logged on the task run.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any

from nbflow._core.events import EventBus, LogEmitted
from nbflow._core.records import TaskRun
from nbflow._engine.context import TaskRunContext, current
from nbflow._engine.drive import Call, Outcome
from nbflow._engine.logging import print_redirect
from nbflow._engine.task_runners import ThreadPoolTaskRunner

__all__ = ["DaskTaskRunner"]


class DaskTaskRunner(ThreadPoolTaskRunner):
    """Run submitted tasks on Dask: an existing cluster (``address="tcp://..."``) or a temporary
    ``LocalCluster(**cluster_kwargs)`` started for the flow run and closed after it.

    >>> @flow(task_runner=DaskTaskRunner(cluster_kwargs={"n_workers": 4}))  # doctest: +SKIP
    ... def big(): ...
    """

    def __init__(
        self,
        address: str | None = None,
        cluster_kwargs: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
        max_workers: int | None = None,
    ) -> None:
        # max_workers: local threads that wait on Dask futures; many may be in flight at once.
        super().__init__(max_workers or 64)
        self.address = address
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.client_kwargs = dict(client_kwargs or {})
        self._client: Any = None
        self._cluster: Any = None
        self._in_flight: set[Any] = set()
        self._lock = threading.Lock()

    def duplicate(self) -> DaskTaskRunner:
        return type(self)(self.address, self.cluster_kwargs, self.client_kwargs, self.max_workers)

    def __enter__(self) -> DaskTaskRunner:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            from nbflow.exceptions import ConfigurationError

            raise ConfigurationError("DaskTaskRunner needs Dask: pip install 'nbflow-lab[dask]'") from exc
        if self.address:
            self._client = Client(self.address, **self.client_kwargs)
        else:
            self._cluster = LocalCluster(**{"dashboard_address": ":0", **self.cluster_kwargs})
            self._client = Client(self._cluster, **self.client_kwargs)
        super().__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is not None:
                with self._lock:
                    in_flight = list(self._in_flight)
                if in_flight:
                    self._client.cancel(in_flight)  # Dask tasks can be stopped; threads cannot
            super().__exit__(exc_type, exc, tb)
        finally:
            client, cluster, self._client, self._cluster = self._client, self._cluster, None, None
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` while a flow run uses this runner."""
        return self._client

    def perform_call(self, call: Call) -> Outcome:
        """Send the task's function to Dask and wait for it (up to the task's timeout)."""
        ctx = current.get()
        task_run: TaskRun | None = getattr(ctx, "task_run", None)
        log_prints = bool(getattr(ctx, "log_prints", False))
        level = ctx.runtime.log_level if ctx is not None else 20
        future = self._client.submit(
            _run_on_worker, call.fn, call.args, call.kwargs, level, log_prints,
            # one key per attempt: Dask would hand a retry the previous attempt's (failed) result
            key=f"{getattr(task_run, 'name', 'task')}-{getattr(task_run, 'id', '')}-{getattr(task_run, 'run_count', 0)}",
            pure=False,
        )
        with self._lock:
            self._in_flight.add(future)
        try:
            ok, value, lines = future.result(timeout=call.timeout)
        except TimeoutError:
            future.cancel()
            return Outcome(timed_out=True)
        except Exception as exc:  # the worker died, or the task could not be sent
            return Outcome(error=exc)
        except BaseException:
            future.cancel()
            raise
        finally:
            with self._lock:
                self._in_flight.discard(future)
        if ctx is not None and task_run is not None:
            for level_no, message, timestamp, logger in lines:
                ctx.runtime.bus.emit(LogEmitted(task_run, level_no, message, timestamp, logger))
        return Outcome(value) if ok else Outcome(error=value)

    def __repr__(self) -> str:
        where = self.address or f"LocalCluster({self.cluster_kwargs})"
        return f"DaskTaskRunner({where})"


class _WorkerRuntime:
    """Just enough of a runtime for ``get_run_logger()`` and ``print`` inside a task on a worker."""

    __slots__ = ("bus", "log_level")

    def __init__(self, bus: EventBus, log_level: int) -> None:
        self.bus = bus
        self.log_level = log_level


def _run_on_worker(fn: Any, args: tuple, kwargs: dict[str, Any], level: int, log_prints: bool) -> tuple[bool, Any, list[tuple]]:
    """Runs on a Dask worker: call ``fn`` and return ``(ok, value or exception, log lines)``."""
    lines: list[tuple] = []

    def collect(event: Any) -> None:
        if event.__class__ is LogEmitted:
            lines.append((event.level, event.message, event.timestamp, event.logger))

    ctx = TaskRunContext.__new__(TaskRunContext)
    ctx.runtime = _WorkerRuntime(EventBus((collect,)), level)  # type: ignore[assignment]
    ctx.task_run = TaskRun("worker", "worker", "worker", "", {})
    ctx.task, ctx.flow_context, ctx.log_prints = None, None, log_prints  # type: ignore[assignment]
    token = current.set(ctx)
    redirect = print_redirect() if log_prints else None
    if redirect is not None:
        redirect.__enter__()
    try:
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))  # a worker thread has no loop of its own
        return True, result, lines
    except Exception as exc:
        return False, exc, lines
    finally:
        if redirect is not None:
            redirect.__exit__(None, None, None)
        current.reset(token)


async def _await(awaitable: Any) -> Any:
    return await awaitable
