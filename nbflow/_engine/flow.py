"""``@flow``: a function whose call is a flow run, orchestrating the tasks it calls."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

from nbflow._core import states
from nbflow._core.entrypoints import flow_entrypoint
from nbflow._core.events import FlowRunFinished, RunCreated, closing_text
from nbflow._core.names import format_run_name, generate_run_name
from nbflow._core.options import FlowOptions, build_options, replace_options, retry_delays
from nbflow._core.parameters import ParameterValidator
from nbflow._core.records import FlowRun
from nbflow._core.states import State
from nbflow._engine.context import FlowRunContext, current, flow_context
from nbflow._engine.drive import Call, Lifecycle, Outcome, Sleep, adrive, cancellations, drive
from nbflow._engine.futures import NbflowFuture
from nbflow._engine.logging import format_user_traceback, log, print_redirect
from nbflow._engine.runtime import Runtime, get_runtime
from nbflow._engine.task_run import next_retry, run_hooks, set_state
from nbflow._engine.task_runners import ThreadPoolTaskRunner
from nbflow.exceptions import ArgumentTypeError, CancelledRun, FlowRunTimeoutError, NbflowError

__all__ = ["Flow", "flow"]

R = TypeVar("R")


class Flow(Generic[R]):
    """A flow: each call is a flow run with its own name, state, logs and task runs.

    Calling an ``async def`` flow returns a coroutine to await (``await my_flow()`` in a notebook).
    """

    def __init__(self, fn: Callable[..., R], options: FlowOptions) -> None:
        if not callable(fn):
            raise ArgumentTypeError(f"@flow needs a function, got {fn!r}")
        self.fn = fn
        self.options = options
        self.name: str = options.name or getattr(fn, "__name__", "flow").replace("_", "-")
        self.isasync = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        self._validator: ParameterValidator | None = None
        functools.update_wrapper(self, fn)

    def with_options(self, **changes: Any) -> Flow[R]:
        """A copy with some options changed: ``etl.with_options(retries=2)``."""
        return Flow(self.fn, replace_options(self.options, changes, "with_options()"))

    def __call__(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        parameters = self.validate(self.bind(args, kwargs))
        return self.run(parameters, return_state=return_state)

    def run(self, parameters: dict[str, Any], *, return_state: bool = False, runtime: Runtime | None = None,
            flow_run: FlowRun | None = None) -> Any:
        """Start a flow run with already-validated ``parameters`` (used by reruns and workers)."""
        __tracebackhide__ = True
        runtime = runtime or get_runtime()
        parent = flow_context()
        flow_run = flow_run or self.new_flow_run(parameters, parent)
        if runtime.store is not None:
            flow_run.entrypoint = flow_entrypoint(self.fn)
        lifecycle = flow_lifecycle(self, flow_run, parameters, runtime, parent)
        if self.isasync:
            return _finish_async(adrive(lifecycle, runtime.clock), return_state)
        state = drive(lifecycle, runtime.clock, runtime.loop_thread)
        return state if return_state else state.result()

    def new_flow_run(self, parameters: dict[str, Any], parent: FlowRunContext | None = None, **fields: Any) -> FlowRun:
        template = self.options.flow_run_name
        name = format_run_name(template, parameters, "flow_run_name") if template else generate_run_name()
        return FlowRun(
            name, self.name, parameters,
            parent_flow_run_id=parent.flow_run.id if parent else None, **fields,
        )

    def bind(self, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ArgumentTypeError(f"Flow {self.name!r}: {exc}") from None
        bound.apply_defaults()
        return dict(bound.arguments)

    def validate(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Coerce parameters to the type hints (``validate_parameters=True``), else pass through."""
        if not self.options.validate_parameters:
            return parameters
        if self._validator is None:
            self._validator = ParameterValidator(self.fn, self.name)
        return self._validator(parameters)

    def call_arguments(self, parameters: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        bound = inspect.BoundArguments(self.signature, parameters)
        return bound.args, bound.kwargs

    def rerun(self, flow_run_id: str | None = None, *, return_state: bool = False) -> Any:
        """Run again with the parameters of an earlier run (default: the latest), as a new flow run
        linked to it: tasks whose inputs and code are unchanged end ``Cached`` without running."""
        __tracebackhide__ = True
        runtime = get_runtime()
        if runtime.rerun is None:
            raise NbflowError("flow.rerun() needs a runtime wired with the run store (build it with nbflow's defaults)")
        return runtime.rerun(self, flow_run_id, return_state=return_state)

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r})"


async def _finish_async(running: Any, return_state: bool) -> Any:
    __tracebackhide__ = True
    state = await running
    return state if return_state else state.result()


def flow_lifecycle(
    flow: Flow, flow_run: FlowRun, parameters: dict[str, Any], runtime: Runtime, parent: FlowRunContext | None
) -> Lifecycle:
    """Generator: the whole life of ``flow_run``; yields ``Call``/``Sleep`` effects to its driver."""
    bus, clock, options = runtime.bus, runtime.clock, flow.options
    flow_run.state = pending = State(states.StateType.PENDING, timestamp=clock.now())
    bus.emit(RunCreated(flow_run, pending))
    if parent is not None:
        log(bus, parent.flow_run, logging.INFO, f"Created subflow run {flow_run.name!r} for flow {flow.name!r}", clock.now())
    else:
        log(bus, flow_run, logging.INFO, f"Created flow run {flow_run.name!r} for flow {flow.name!r}", clock.now())
    log_prints = bool(options.log_prints) if options.log_prints is not None else bool(parent and parent.log_prints)
    # NBFLOW_TASK_RUNNER_MAX_WORKERS sizes the default pool (0: min(32, cores + 4)).
    template = options.task_runner or ThreadPoolTaskRunner(runtime.settings.task_runner_max_workers or None)
    ctx = FlowRunContext(runtime, flow, flow_run, template, log_prints, current.get())
    token = current.set(ctx)
    redirect = print_redirect() if log_prints else None
    if redirect is not None:
        redirect.__enter__()
    flow_run.start_time = clock.now()
    set_state(bus, flow_run, State(states.StateType.RUNNING, timestamp=flow_run.start_time))
    try:  # from here on the run ends final and the context is reset, whatever raises
        delays = retry_delays(options) if options.retries else ()  # may call the user's function
        args, kwargs = flow.call_arguments(parameters)
        while True:
            flow_run.run_count += 1
            ctx.task_runner = runner = template.duplicate()
            runner.__enter__()
            try:
                outcome: Outcome = yield Call(flow.fn, args, kwargs, options.timeout_seconds, flow.isasync)
            except BaseException as exc:
                runner.__exit__(type(exc), exc, None)
                raise
            if outcome.timed_out:
                runner.__exit__(FlowRunTimeoutError, None, None)  # cancel what the body left running
            else:
                runner.__exit__(None, None, None)  # wait for submitted task runs
            state = _outcome_state(flow_run, outcome, options.timeout_seconds, clock.now())
            delay = next_retry(flow, flow_run, state, runtime, delays)
            if delay is None:
                break
            yield Sleep(delay)
    except cancellations():
        state = states.Cancelled("Flow run was interrupted", data=CancelledRun("interrupted"), timestamp=clock.now())
        _finish(flow, flow_run, runtime, state, options.on_cancellation)
        raise
    except BaseException as exc:
        state = states.Crashed(f"Flow run crashed: {exc!r}", data=exc, timestamp=clock.now())
        _finish(flow, flow_run, runtime, state, options.on_crashed)
        raise
    finally:
        if redirect is not None:
            redirect.__exit__(None, None, None)
        current.reset(token)
    error = None if outcome.timed_out else states.user_error(state)  # a timeout's message says it all
    if error is not None:
        trace = format_user_traceback(error)
        log(bus, flow_run, logging.ERROR, f"Encountered exception during execution:\n{trace}", clock.now())
    hooks = options.on_completion if state.is_completed() else options.on_failure
    return _finish(flow, flow_run, runtime, state, hooks)


def _outcome_state(flow_run: FlowRun, outcome: Outcome, timeout: float | None, now: float) -> State:
    if outcome.timed_out:
        timeout_error = FlowRunTimeoutError(f"Flow run {flow_run.name!r} exceeded timeout of {timeout} second(s)")
        return states.TimedOut(f"Flow run exceeded timeout of {timeout} second(s)", data=timeout_error, timestamp=now)
    if outcome.error is not None:
        error = outcome.error
        return states.Failed(f"Flow run encountered an exception: {type(error).__name__}: {error}", data=error, timestamp=now)
    return _return_value_state(outcome.value, now)


def _return_value_state(value: Any, now: float) -> State:
    """As in Prefect: a returned state or future decides; returned failed states fail the flow."""
    if isinstance(value, State):
        return value
    if isinstance(value, NbflowFuture):
        value.wait()
        return value.state
    if isinstance(value, (list, tuple, set)) and value and all(isinstance(v, (State, NbflowFuture)) for v in value):
        finals = [v.state if isinstance(v, NbflowFuture) else v for v in value]
        bad = [s for s in finals if not s.is_completed()]
        if bad:
            error = bad[0].result(raise_on_failure=False)
            return states.Failed(f"{len(bad)}/{len(finals)} states failed.", data=error, timestamp=now)
    return State(states.StateType.COMPLETED, data=value, timestamp=now)


def _finish(flow: Flow, flow_run: FlowRun, runtime: Runtime, state: State, hooks: tuple) -> State:
    flow_run.end_time = state.timestamp
    set_state(runtime.bus, flow_run, state)
    if hooks:
        run_hooks(runtime, hooks, (flow, flow_run, state), flow_run)
    log(runtime.bus, flow_run, logging.INFO, closing_text(state), runtime.clock.now())
    runtime.bus.emit(FlowRunFinished(flow_run))
    return state



@overload
def flow(__fn: Callable[..., R]) -> Flow[R]: ...
@overload
def flow(**options: Any) -> Callable[[Callable[..., R]], Flow[R]]: ...


def flow(__fn: Any = None, **options: Any) -> Any:
    """Make a function a flow: ``@flow`` or ``@flow(name=..., retries=..., timeout_seconds=...)``.

    The options are those of ``FlowOptions`` (name, retries, retry_delay_seconds, timeout_seconds,
    log_prints, task_runner, on_completion, on_failure, on_cancellation, on_crashed, flow_run_name,
    validate_parameters, ...).
    """
    opts = build_options(FlowOptions, options, "@flow")
    if __fn is not None:
        return Flow(__fn, opts)
    return lambda fn: Flow(fn, opts)
