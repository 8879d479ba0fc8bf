"""``@task``: a function whose calls inside a flow become task runs."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar, overload

from nbflow._core.annotations import unmapped
from nbflow._core.names import format_run_name
from nbflow._core.options import TaskOptions, build_options, replace_options
from nbflow._engine.context import FlowRunContext, flow_context
from nbflow._engine.drive import adrive, drive
from nbflow._engine.futures import FutureList, NbflowFuture
from nbflow._engine.task_run import cancelled_state, create_task_run, task_lifecycle
from nbflow.exceptions import ArgumentTypeError, InvalidArgumentError, MissingContextError

__all__ = ["Task", "task"]

R = TypeVar("R")
_SIMPLE_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


class Task(Generic[R]):
    """A task: call it in a flow to run it (blocking), ``.submit()`` it, or ``.map()`` it.

    Outside any flow, calling a task is a plain function call, as in Prefect.
    """

    def __init__(self, fn: Callable[..., R], options: TaskOptions) -> None:
        if not callable(fn):
            raise ArgumentTypeError(f"@task needs a function, got {fn!r}")
        self.fn = fn
        self.options = options
        fallback: str = getattr(fn, "__name__", type(fn).__name__)  # a callable object may have no __name__
        self.name = options.name or fallback
        self.task_key = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', self.name)}"
        self.isasync = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        params = self.signature.parameters.values()
        self._names = tuple(p.name for p in params)
        self._simple = all(p.kind in _SIMPLE_KINDS for p in params)
        functools.update_wrapper(self, fn)

    def with_options(self, **changes: Any) -> Task[R]:
        """A copy of this task with some options changed: ``fetch.with_options(retries=3)``."""
        return Task(self.fn, replace_options(self.options, changes, "with_options()"))

    # --- calling -----------------------------------------------------------------------------
    def __call__(self, *args: Any, return_state: bool = False, wait_for: Iterable[Any] | None = None, **kwargs: Any) -> Any:
        __tracebackhide__ = True  # IPython: show the user's frames, not ours
        ctx = flow_context()
        if ctx is None:
            if return_state:
                return _plain_call_state(self.fn, args, kwargs)
            return self.fn(*args, **kwargs)
        parameters = self.bind(args, kwargs)
        task_run, upstream = create_task_run(self, ctx, parameters, wait_for)
        lifecycle = task_lifecycle(self, ctx, task_run, parameters, upstream, submitted=False)
        runtime = ctx.runtime
        if self.isasync:
            return self._acall(lifecycle, runtime, return_state)
        state = drive(lifecycle, runtime.clock, runtime.loop_thread)
        return state if return_state else state.result()

    async def _acall(self, lifecycle: Any, runtime: Any, return_state: bool) -> Any:
        __tracebackhide__ = True
        state = await adrive(lifecycle, runtime.clock)
        return state if return_state else state.result()

    def submit(self, *args: Any, wait_for: Iterable[Any] | None = None, **kwargs: Any) -> NbflowFuture:
        """Run the task concurrently on the flow's task runner; returns a future at once."""
        ctx = self._require_flow("submit")
        return self._submit(ctx, self.bind(args, kwargs), wait_for)

    def _submit(self, ctx: FlowRunContext, parameters: dict[str, Any], wait_for: Iterable[Any] | None) -> NbflowFuture:
        task_run, upstream = create_task_run(self, ctx, parameters, wait_for)
        runtime = ctx.runtime

        runner = ctx.task_runner

        def run() -> Any:
            lifecycle = task_lifecycle(self, ctx, task_run, parameters, upstream, submitted=True)
            return drive(lifecycle, runtime.clock, runtime.loop_thread, getattr(runner, "perform_call", None))

        def cancel() -> Any:
            return cancelled_state(ctx, task_run, "Flow run was cancelled before this task run started")

        return runner.submit(run, task_run, cancel)

    def map(self, *args: Any, wait_for: Iterable[Any] | None = None, **kwargs: Any) -> FutureList:
        """Submit one task run per element of the iterable arguments; ``unmapped(x)`` stays constant.

        Strings, bytes and mappings are passed whole to every run, like ``unmapped`` values.
        """
        ctx = self._require_flow("map")
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ArgumentTypeError(f"{self.name}.map(): {exc}") from None
        mapped: dict[str, list[Any]] = {}
        static: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            if isinstance(value, unmapped):
                static[name] = value.value
            elif isinstance(value, (str, bytes, Mapping)) or not _iterable(value):
                static[name] = value
            else:
                mapped[name] = list(value)
        if not mapped:
            raise ArgumentTypeError(f"{self.name}.map() needs at least one iterable argument to map over; got none")
        lengths = {name: len(values) for name, values in mapped.items()}
        if len(set(lengths.values())) > 1:
            raise InvalidArgumentError(f"{self.name}.map() got iterables of different lengths: {lengths}")
        count = next(iter(lengths.values()))
        futures = FutureList()
        for i in range(count):
            arguments = {**static, **{name: values[i] for name, values in mapped.items()}}
            parameters = self._with_defaults(arguments)
            futures.append(self._submit(ctx, parameters, wait_for))
        return futures

    # --- parameters ----------------------------------------------------------------------------
    def bind(self, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Arguments of one call, by parameter name, defaults filled in."""
        if self._simple and not kwargs and len(args) == len(self._names):
            return dict(zip(self._names, args))
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ArgumentTypeError(f"{self.name}(): {exc}") from None
        bound.apply_defaults()
        return dict(bound.arguments)

    def _with_defaults(self, arguments: dict[str, Any]) -> dict[str, Any]:
        bound = inspect.BoundArguments(self.signature, arguments)
        bound.apply_defaults()
        return dict(bound.arguments)

    def call_arguments(self, parameters: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        """``(args, kwargs)`` to call the function with, from parameters by name."""
        if self._simple:
            return (), parameters
        bound = inspect.BoundArguments(self.signature, parameters)
        return bound.args, bound.kwargs

    def task_run_name_for(self, parameters: dict[str, Any]) -> str | None:
        template = self.options.task_run_name
        return None if template is None else format_run_name(template, parameters, "task_run_name")

    def _require_flow(self, what: str) -> FlowRunContext:
        ctx = flow_context()
        if ctx is None:
            raise MissingContextError(
                f"{self.name}.{what}() needs a running flow: call it inside a @flow function or a "
                f"%%flow cell. To just run the function here, call {self.name}(...) directly."
            )
        return ctx

    def __repr__(self) -> str:
        return f"Task(name={self.name!r})"

    def __get__(self, instance: Any, owner: Any) -> Any:
        """Tasks defined as methods bind like functions."""
        if instance is None:
            return self
        return functools.partial(self, instance)


def _plain_call_state(fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
    """Outside a flow, ``return_state=True`` still gives a state: ``Completed`` or ``Failed``."""
    from nbflow._core import states

    if inspect.iscoroutinefunction(fn):
        async def wrapped() -> Any:
            try:
                return states.Completed(data=await fn(*args, **kwargs))
            except Exception as exc:
                return states.Failed(f"{type(exc).__name__}: {exc}", data=exc)

        return wrapped()
    try:
        return states.Completed(data=fn(*args, **kwargs))
    except Exception as exc:
        return states.Failed(f"{type(exc).__name__}: {exc}", data=exc)


def _iterable(value: Any) -> bool:
    try:
        iter(value)
    except TypeError:
        return False
    return True


@overload
def task(__fn: Callable[..., R]) -> Task[R]: ...
@overload
def task(**options: Any) -> Callable[[Callable[..., R]], Task[R]]: ...


def task(__fn: Any = None, **options: Any) -> Any:
    """Make a function a task: ``@task`` or ``@task(retries=3, retry_delay_seconds=10, ...)``.

    The options are those of ``TaskOptions`` (name, tags, retries, retry_delay_seconds,
    retry_jitter_factor, retry_condition_fn, timeout_seconds, cache_key_fn, cache_policy,
    cache_expiration, refresh_cache, persist_result, log_prints, on_completion, on_failure,
    task_run_name, ...).
    """
    opts = build_options(TaskOptions, options, "@task")
    if __fn is not None:
        return Task(__fn, opts)
    return lambda fn: Task(fn, opts)
