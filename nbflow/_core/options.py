"""Flow and task options, defined once: the decorators, ``with_options`` and the docs derive from here."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any

from nbflow.exceptions import ArgumentTypeError, InvalidArgumentError

__all__ = ["TaskOptions", "FlowOptions", "exponential_backoff", "option_names", "retry_delays"]

RetryDelay = float | Sequence[float] | Callable[[int], Sequence[float]]
Hooks = tuple[Callable[..., Any], ...]


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """Retry delays that double: ``backoff_factor * 2**n`` for retry ``n`` (as in Prefect).

    >>> exponential_backoff(10)(4)
    [10, 20, 40, 80]
    """
    if backoff_factor < 0:
        raise InvalidArgumentError("exponential_backoff(backoff_factor=...) must be >= 0")

    def delays(retries: int) -> list[float]:
        return [backoff_factor * 2**n for n in range(retries)]

    return delays


def retry_delays(options: _RunOptions) -> list[float]:
    """The delay before each retry: a number repeats, a list's last value repeats, a callable decides."""
    spec, retries = options.retry_delay_seconds, options.retries
    if callable(spec):
        values = list(spec(retries))
    elif isinstance(spec, (int, float)):
        values = [float(spec)]
    else:
        values = list(spec)
    if not values:
        return [0.0] * retries
    values += [values[-1]] * (retries - len(values))
    return [float(v) for v in values[:retries]]


def jittered(delay: float, factor: float | None, rng: random.Random | None = None) -> float:
    """``delay`` moved by up to ``factor * delay`` either way, never below zero (spreads retry storms)."""
    if not factor or delay <= 0:
        return delay
    return max(0.0, delay * (1.0 + (rng or random).uniform(-factor, factor)))


def _as_hooks(value: Any, what: str) -> Hooks:
    hooks = (value,) if callable(value) else tuple(value or ())
    for hook in hooks:
        if not callable(hook):
            raise ArgumentTypeError(f"{what} must be a list of callables; {hook!r} is not callable")
    return hooks


@dataclass(frozen=True, kw_only=True)
class _RunOptions:
    """Options flows and tasks share."""

    name: str | None = None
    description: str | None = None
    version: str | None = None
    retries: int = 0
    retry_delay_seconds: RetryDelay = 0
    retry_jitter_factor: float | None = None
    retry_condition_fn: Callable[..., bool] | None = None
    timeout_seconds: float | None = None
    log_prints: bool | None = None
    persist_result: bool | None = None
    on_completion: Hooks = ()
    on_failure: Hooks = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        # The fields' types are what the engine reads after this method; what callers pass can be
        # anything (a timedelta for a timeout, one tag as a str, a function for a name): check it as Any.
        given: Any = self.name
        if given is not None and not isinstance(given, str):
            hint = " (did you mean to call it?)" if callable(given) else ""
            raise ArgumentTypeError(f"name must be a string, got {type(given).__name__}{hint}")
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            raise InvalidArgumentError(f"retries must be a whole number >= 0, got {self.retries!r}")
        delay = self.retry_delay_seconds
        if not callable(delay):
            numbers = [delay] if isinstance(delay, (int, float)) else list(delay)
            if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf for v in numbers):
                raise InvalidArgumentError(  # not 0 <= v < inf: NaN and infinity too, which would wait forever or fail later
                    "retry_delay_seconds must be a number >= 0, a list of them, or "
                    f"exponential_backoff(...); got {delay!r}"
                )
        if self.retry_jitter_factor is not None and not 0 <= self.retry_jitter_factor < math.inf:
            raise InvalidArgumentError(f"retry_jitter_factor must be >= 0, got {self.retry_jitter_factor!r}")
        timeout: Any = self.timeout_seconds
        if timeout is not None:
            if isinstance(timeout, timedelta):
                timeout = timeout.total_seconds()
                set_(self, "timeout_seconds", timeout)
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
                raise InvalidArgumentError(f"timeout_seconds must be a number > 0, got {self.timeout_seconds!r}")
        for name in ("flow_run_name", "task_run_name"):
            template = getattr(self, name, None)
            if template is not None and not isinstance(template, str) and not callable(template):
                raise ArgumentTypeError(f"{name} must be a template string such as 'etl-{{date}}' or a function, got {template!r}")
        for name in ("on_completion", "on_failure", "on_cancellation", "on_crashed"):
            if hasattr(self, name):
                set_(self, name, _as_hooks(getattr(self, name), name))


@dataclass(frozen=True, kw_only=True)
class TaskOptions(_RunOptions):
    """Everything ``@task(...)`` accepts."""

    tags: tuple[str, ...] = ()
    cache_key_fn: Callable[[Any, dict[str, Any]], str | None] | None = None
    cache_policy: Any = None
    cache_expiration: timedelta | None = None
    refresh_cache: bool | None = None
    task_run_name: str | Callable[[], str] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cache_policy is not None:
            from nbflow._core.cache_policies import CachePolicy  # only tasks that set a policy pay for it

            if not isinstance(self.cache_policy, CachePolicy):
                raise ArgumentTypeError(
                    f"cache_policy must be a policy from nbflow.cache_policies (INPUTS, DEFAULT, "
                    f"INPUTS - 'arg', ...) or a CachePolicy subclass instance, got {self.cache_policy!r}"
                )
        if self.cache_key_fn is not None and not callable(self.cache_key_fn):
            raise ArgumentTypeError(f"cache_key_fn must be a function (context, parameters) -> str, got {self.cache_key_fn!r}")
        given: Any = self.tags
        tags = (given,) if isinstance(given, str) else tuple(given)
        if not all(isinstance(t, str) for t in tags):
            raise ArgumentTypeError(f"tags must be strings, got {self.tags!r}")
        object.__setattr__(self, "tags", tags)


@dataclass(frozen=True, kw_only=True)
class FlowOptions(_RunOptions):
    """Everything ``@flow(...)`` accepts."""

    task_runner: Any = None
    on_cancellation: Hooks = ()
    on_crashed: Hooks = ()
    flow_run_name: str | Callable[[], str] | None = None
    validate_parameters: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        runner = self.task_runner
        if isinstance(runner, type):  # as in Prefect: a runner class is used with its defaults
            runner = runner()
            object.__setattr__(self, "task_runner", runner)
        if runner is not None and not all(callable(getattr(runner, m, None)) for m in ("duplicate", "submit")):
            raise ArgumentTypeError(
                f"task_runner must be a task runner such as ThreadPoolTaskRunner(max_workers=8) or "
                f"nbflow.dask.DaskTaskRunner(), got {runner!r}"
            )


def option_names(options_type: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(options_type))


def _check_names(options_type: type, values: dict[str, Any], what: str) -> None:
    unknown = set(values) - set(option_names(options_type))
    if unknown:
        raise ArgumentTypeError(
            f"{what} got unexpected option(s) {', '.join(sorted(unknown))}; "
            f"valid options: {', '.join(option_names(options_type))}"
        )


def build_options(options_type: type, values: dict[str, Any], what: str) -> Any:
    """``options_type(**values)``, but an unknown keyword names the valid ones."""
    _check_names(options_type, values, what)
    return options_type(**values)


def replace_options(options: Any, changes: dict[str, Any], what: str) -> Any:
    """A copy of ``options`` with ``changes`` (``.with_options(...)``), validated again."""
    _check_names(type(options), changes, what)
    return dataclasses.replace(options, **changes)
