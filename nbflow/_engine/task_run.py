"""The lifecycle of one task run: upstream, cache, retries, timeout, hooks, final state."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from nbflow._core import states
from nbflow._core.events import EdgesAdded, RunCreated, StateChanged, closing_text
from nbflow._core.options import jittered, retry_delays
from nbflow._core.records import FlowRun, TaskRun
from nbflow._core.states import State
from nbflow._engine.context import FlowRunContext, TaskRunContext, current
from nbflow._engine.drive import Call, Interrupted, Lifecycle, Outcome, Sleep, cancellations
from nbflow._engine.futures import NbflowFuture
from nbflow._engine.limits import TaskSlots
from nbflow._engine.logging import format_user_traceback, log, print_redirect
from nbflow.exceptions import CancelledRun, TaskRunTimeoutError, UpstreamTaskError

if TYPE_CHECKING:
    from nbflow._engine.task import Task

__all__ = ["create_task_run", "task_lifecycle", "set_state", "run_hooks", "cancelled_state", "next_retry"]

_UNTRACKED = (type(None), bool)
_CONTAINERS = (list, tuple, set, frozenset)


def set_state(bus: Any, run: FlowRun | TaskRun, state: State, closing_at: float | None = None) -> State:
    """``closing_at``: ``state`` is final and also stands for the run's closing line (``StateChanged``)."""
    run.state = state
    bus.emit(StateChanged(run, state, closing_at))
    return state


def _trackable(value: Any) -> bool:
    """Whether ``id(value)`` identifies one task's result (not a shared singleton like ``1`` or ``""``)."""
    cls = value.__class__
    if cls in _UNTRACKED:
        return False
    if cls is int:
        return not -5 <= value <= 256
    if cls is str or cls is tuple or cls is bytes:
        return len(value) > 1
    return True


def _visit(value: Any, ctx: FlowRunContext, futures: list[NbflowFuture], ids: list[str], depth: int) -> None:
    if value.__class__ is NbflowFuture:
        futures.append(value)
        return
    owner = ctx.result_owner(value)
    if owner is not None:
        ids.append(owner)
        return
    if depth < 3:
        if value.__class__ in _CONTAINERS and len(value) <= 10_000:
            for item in value:
                _visit(item, ctx, futures, ids, depth + 1)
        elif value.__class__ is dict and len(value) <= 10_000:
            for item in value.values():
                _visit(item, ctx, futures, ids, depth + 1)


def _resolve(value: Any, depth: int = 0) -> Any:
    """``value`` with futures replaced by their results (containers rebuilt only when needed)."""
    if value.__class__ is NbflowFuture:
        return value.result()
    if depth < 3:
        if value.__class__ in _CONTAINERS and any(_has_future(v) for v in value):
            return value.__class__(_resolve(v, depth + 1) for v in value)
        if value.__class__ is dict and any(_has_future(v) for v in value.values()):
            return {k: _resolve(v, depth + 1) for k, v in value.items()}
    return value


def _has_future(value: Any) -> bool:
    if value.__class__ is NbflowFuture:
        return True
    if value.__class__ in _CONTAINERS:
        return any(_has_future(v) for v in value)
    if value.__class__ is dict:
        return any(_has_future(v) for v in value.values())
    return False


def create_task_run(
    task: Task, ctx: FlowRunContext, parameters: dict[str, Any], wait_for: Any = None
) -> tuple[TaskRun, list[NbflowFuture]]:
    """Create the run record, announce it (and its edges), and find the futures it must wait for."""
    runtime = ctx.runtime
    futures: list[NbflowFuture] = []
    upstream_ids: list[str] = []
    for value in parameters.values():
        cls = value.__class__
        if cls is int or cls is float or cls is bool or value is None:
            continue
        _visit(value, ctx, futures, upstream_ids, 0)
    if wait_for:
        for value in wait_for:
            _visit(value, ctx, futures, upstream_ids, 0)
    name = task.task_run_name_for(parameters) or ctx.next_task_run_name(task.name)
    task_run = TaskRun(name, task.name, task.task_key, ctx.flow_run.id, parameters, task.options.tags)
    bus = runtime.bus
    task_run.state = pending = State(states.StateType.PENDING, timestamp=runtime.clock.now())
    bus.emit(RunCreated(task_run, pending))
    if futures or upstream_ids:
        ordered = dict.fromkeys([f.task_run.id for f in futures] + upstream_ids)
        task_run.upstream_ids = tuple(ordered)
        bus.emit(EdgesAdded(ctx.flow_run.id, task_run.upstream_ids, task_run.id))
    return task_run, futures


def cancelled_state(ctx: FlowRunContext, task_run: TaskRun, why: str) -> State:
    """End a task run that will never start (its flow run was cancelled)."""
    runtime = ctx.runtime
    state = states.Cancelled(why, data=CancelledRun(why), timestamp=runtime.clock.now())
    return set_state(runtime.bus, task_run, state, closing_at=state.timestamp)


def task_lifecycle(
    task: Task,
    ctx: FlowRunContext,
    task_run: TaskRun,
    parameters: dict[str, Any],
    upstream: list[NbflowFuture],
    submitted: bool,
) -> Lifecycle:
    """Generator: the whole life of ``task_run``; yields ``Call``/``Sleep`` effects to its driver."""
    runtime = ctx.runtime
    bus, clock, options = runtime.bus, runtime.clock, task.options
    cache, limits = runtime.cache, runtime.limits
    slots = token = redirect = None
    try:  # from here on, whatever happens, the task run ends in a final state
        for future in upstream:
            future.wait()
            if not future.state.is_completed():
                return _finish(task, ctx, task_run, _not_ready(future, clock.now()))
        if upstream:
            parameters = {k: _resolve(v) for k, v in parameters.items()}
        if cache is not None:
            hit = cache.lookup(task, task_run, parameters, ctx)
            if hit is not None:
                return _finish(task, ctx, task_run, hit)
        if limits is not None and task_run.tags:
            slots = TaskSlots(limits, task_run, ctx)
            while (wait := slots.attempt()) is not None:  # an async run on a loop waits without blocking it
                yield Sleep(wait)
        log_prints = options.log_prints if options.log_prints is not None else ctx.log_prints
        token = current.set(TaskRunContext(ctx, task, task_run, log_prints))
        if log_prints:
            redirect = print_redirect()
            redirect.__enter__()
        task_run.start_time = now = clock.now()
        task_run.run_count += 1  # before the state: subscribers copy the run as each state is emitted
        set_state(bus, task_run, State(states.StateType.RUNNING, timestamp=now))
        delays = retry_delays(options) if options.retries else ()
        args, kwargs = task.call_arguments(parameters)
        while True:
            outcome: Outcome = yield Call(task.fn, args, kwargs, options.timeout_seconds, task.isasync)
            state = _outcome_state(task_run, outcome, options.timeout_seconds, clock.now())
            delay = next_retry(task, task_run, state, runtime, delays)
            if delay is None:
                break
            yield Sleep(delay)
            task_run.run_count += 1
    except cancellations() as exc:
        state = states.Cancelled("Task run was interrupted", data=CancelledRun("interrupted"), timestamp=clock.now())
        _finish(task, ctx, task_run, state)
        if submitted and isinstance(exc, Interrupted):
            return state
        raise
    except BaseException as exc:
        _finish(task, ctx, task_run, states.Crashed(f"Task run crashed: {exc!r}", data=exc, timestamp=clock.now()))
        raise
    finally:
        if redirect is not None:
            redirect.__exit__(None, None, None)
        if token is not None:
            current.reset(token)
        if slots is not None:
            slots.__exit__(None, None, None)
    # A completed run pays one identity check here (the hot path); a timeout's message says it all.
    error = states.user_error(state) if state.type is states.StateType.FAILED and not outcome.timed_out else None
    if error is not None:
        trace = format_user_traceback(error)
        log(bus, task_run, logging.ERROR, f"Task run failed with exception: {error!r} - Retries are exhausted\n{trace}", clock.now())
    elif state.is_completed() and cache is not None:
        cache.store(task, task_run, parameters, state, ctx)
    return _finish(task, ctx, task_run, state)


def _outcome_state(task_run: TaskRun, outcome: Outcome, timeout: float | None, now: float) -> State:
    if outcome.timed_out:
        message = f"Task run exceeded timeout of {timeout} second(s)"
        timeout_error = TaskRunTimeoutError(f"Task run {task_run.name!r} exceeded timeout of {timeout} second(s)")
        return states.TimedOut(message, data=timeout_error, timestamp=now)
    if outcome.error is not None:
        error = outcome.error
        return states.Failed(f"Task run encountered an exception {type(error).__name__}: {error}", data=error, timestamp=now)
    return State(states.StateType.COMPLETED, data=outcome.value, timestamp=now)


def next_retry(owner: Any, run: FlowRun | TaskRun, state: State, runtime: Any, delays: Sequence[float]) -> float | None:
    """After an attempt of a task or flow (``owner``) ended in ``state``: the delay before the next
    attempt (announced with a ``Retrying`` state and log lines), or None when the run is over."""
    options = owner.options
    retry = run.run_count - 1
    if state.is_completed() or retry >= options.retries:
        return None
    condition = options.retry_condition_fn
    if condition is not None:
        try:
            if not condition(owner, run, state):
                return None
        except Exception as exc:  # a broken condition must not hide the run's own failure
            log(runtime.bus, run, logging.ERROR, f"retry_condition_fn raised {exc!r}; not retrying", state.timestamp)
            return None
    bus, clock = runtime.bus, runtime.clock
    delay = jittered(delays[retry], options.retry_jitter_factor)
    log(bus, run, logging.WARNING, f"Encountered exception during execution: {state.data!r}", clock.now())
    set_state(bus, run, states.Retrying(f"Retry {retry + 1}/{options.retries} in {delay:.1f} seconds", timestamp=clock.now()))
    log(bus, run, logging.INFO, f"Retrying in {delay:.1f} seconds...", clock.now())
    return delay


def _not_ready(future: NbflowFuture, now: float) -> State:
    upstream = future.task_run
    message = f"Upstream task run {upstream.name!r} did not complete: it ended {future.state!r}"
    return states.NotReady(message, data=UpstreamTaskError(message), timestamp=now)


def _finish(task: Task, ctx: FlowRunContext, task_run: TaskRun, state: State) -> State:
    runtime = ctx.runtime
    task_run.end_time = state.timestamp
    hooks = task.options.on_completion if state.is_completed() else task.options.on_failure if state.is_failed() else ()
    # Without hooks nothing follows: the final state is the closing line too.
    set_state(runtime.bus, task_run, state, closing_at=None if hooks else runtime.clock.now())
    if state.is_completed() and _trackable(state.data):
        ctx.track_result(state.data, task_run.id)
    if hooks:
        run_hooks(runtime, hooks, (task, task_run, state), task_run)
        log(runtime.bus, task_run, logging.INFO, closing_text(state), runtime.clock.now())
    return state


def run_hooks(runtime: Any, hooks: tuple[Callable[..., Any], ...], args: tuple, run: FlowRun | TaskRun) -> None:
    """Call each hook; one that raises is logged and never changes the run's state."""
    for hook in hooks:
        name = getattr(hook, "__name__", repr(hook))
        try:
            hook(*args)
        except Exception as exc:
            trace = format_user_traceback(exc)
            message = f"An error was encountered while running hook {name!r}: {exc!r}\n{trace}"
            log(runtime.bus, run, logging.ERROR, message, runtime.clock.now())
        else:
            log(runtime.bus, run, logging.DEBUG, f"Hook {name!r} finished running successfully", runtime.clock.now())
