"""Errors nbflow raises: every one is an ``NbflowError``.

    NbflowError                      something nbflow itself refuses or cannot do
    ├── ConfigurationError           a setting or NBFLOW_HOME is unusable (names the variable/path)
    │   └── DiskFullError            the disk holding the run store is full (the store itself is fine)
    ├── InvalidArgumentError         an argument or option has a bad value (names it; also a ValueError)
    ├── ArgumentTypeError            an argument or option has the wrong type, or a call misses the signature (also a TypeError)
    ├── ParameterTypeError           flow parameters failed validation (names the parameter; also a TypeError)
    ├── MissingContextError          a run-only operation was used outside a flow run (also a RuntimeError)
    ├── UnfinishedRun                a state's result was asked for before the run finished (also a ValueError)
    ├── RunFailedError               a run ended unsuccessfully with no exception of its own
    │   └── UpstreamTaskError        a task did not run because an upstream task did not complete
    ├── CancelledRun                 the run was cancelled (interrupt, timeout of a parent)
    ├── RunTimeoutError              a run exceeded ``timeout_seconds`` (also a TimeoutError)
    │   ├── TaskRunTimeoutError
    │   └── FlowRunTimeoutError
    ├── RunNotFoundError             no stored run (or more than one) matches an id, id prefix or name
    ├── ParametersNotStoredError     a stored flow run's parameters cannot be loaded for a rerun
    ├── FlowRunOnImport              importing a flow's module for a rerun started a flow run
    ├── UnhashableInputError         a task input has no stable content to hash for a cache key (also a TypeError)
    ├── CacheUnavailableError        the result cache folder cannot be opened or written
    ├── ConcurrencyLimitError        a concurrency limit request is invalid (bad size, occupy > limit; also a ValueError)
    │   └── ConcurrencyLimitNotFoundError   no limit has that name (strict=True, inspect/update/delete)
    ├── AcquireConcurrencySlotTimeoutError  slots were not free within ``timeout_seconds`` (names the limit)
    └── UsageError                   bad input on the command line (``nbflow ...`` prints it, exit status 2)

The builtin second base (``TypeError``, ``TimeoutError``...) lets code written for plain Python keep
catching what it caught. "Your code failed" is always your own exception, re-raised unchanged; these
are for everything else.
"""

from __future__ import annotations

__all__ = [
    "NbflowError",
    "ConfigurationError",
    "DiskFullError",
    "InvalidArgumentError",
    "ArgumentTypeError",
    "ParameterTypeError",
    "MissingContextError",
    "UnfinishedRun",
    "RunFailedError",
    "UpstreamTaskError",
    "CancelledRun",
    "RunNotFoundError",
    "ParametersNotStoredError",
    "FlowRunOnImport",
    "UnhashableInputError",
    "CacheUnavailableError",
    "RunTimeoutError",
    "TaskRunTimeoutError",
    "FlowRunTimeoutError",
    "ConcurrencyLimitError",
    "ConcurrencyLimitNotFoundError",
    "AcquireConcurrencySlotTimeoutError",
    "UsageError",
]


class NbflowError(Exception):
    """Base class of nbflow's own errors."""


class ConfigurationError(NbflowError):
    """A setting or the home folder is unusable; the message names it and says how to fix it."""


class DiskFullError(ConfigurationError):
    """The disk holding the run store is full: the store is fine, space is what is missing."""


class FlowRunOnImport(NbflowError):
    """Importing a flow's module for a rerun started a flow run (a call at the module's top level)."""


class InvalidArgumentError(NbflowError, ValueError):
    """An argument or option has a bad value; the message names it and what a valid one looks like."""


class ArgumentTypeError(NbflowError, TypeError):
    """An argument or option has the wrong type, or a call does not match the function's signature."""


class UnfinishedRun(NbflowError, ValueError):
    """A state's result was asked for before its run finished (Prefect's name)."""


class ParameterTypeError(NbflowError, TypeError):
    """Flow parameters did not validate against the flow's type hints."""


class MissingContextError(NbflowError, RuntimeError):
    """An operation that needs a flow run was used outside one."""


class RunFailedError(NbflowError):
    """A run ended unsuccessfully and had no exception of its own to re-raise."""


class UpstreamTaskError(RunFailedError):
    """A task did not run because a task it depends on did not complete."""


class CancelledRun(NbflowError):
    """The run was cancelled before it finished."""


class RunTimeoutError(NbflowError, TimeoutError):
    """A run exceeded its ``timeout_seconds``."""


class TaskRunTimeoutError(RunTimeoutError):
    """A task run exceeded its ``timeout_seconds``."""


class FlowRunTimeoutError(RunTimeoutError):
    """A flow run exceeded its ``timeout_seconds``."""


class ConcurrencyLimitError(NbflowError, ValueError):
    """A concurrency limit (or a request for its slots) is invalid; the message says how to fix it."""


class ConcurrencyLimitNotFoundError(ConcurrencyLimitError, LookupError):
    """No concurrency limit has the given name."""


class AcquireConcurrencySlotTimeoutError(NbflowError, TimeoutError):
    """Concurrency slots did not become free within ``timeout_seconds``; the message names the limit."""


class RunNotFoundError(NbflowError, LookupError):
    """No stored run matches the id, id prefix or name given, or more than one does."""


class ParametersNotStoredError(NbflowError):
    """A stored flow run's parameters were not picklable, or cannot be unpickled in this process."""


class UnhashableInputError(NbflowError, TypeError):
    """A task input has no deterministic content to hash; the task runs uncached (or gets a cache_key_fn)."""

    def __init__(self, message: str, *, argument: str | None, path: str, type_name: str) -> None:
        super().__init__(message)
        self.argument = argument  # top-level parameter name, when hashed through hash_parameters
        self.path = path  # e.g. "parameters['conn'].sock"
        self.type_name = type_name  # e.g. "socket.socket"


class CacheUnavailableError(NbflowError):
    """The result cache folder cannot be opened or written (permissions, disk full, corrupt database)."""


class UsageError(NbflowError):
    """Bad input on the command line: ``nbflow`` prints it as one line and exits with status 2."""
