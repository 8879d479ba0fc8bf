"""Run states: what a flow or task run is doing, and what it ended with."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from nbflow.exceptions import UnfinishedRun

__all__ = [
    "State",
    "StateType",
    "Scheduled",
    "Pending",
    "Running",
    "Retrying",
    "Completed",
    "Cached",
    "Failed",
    "Crashed",
    "Cancelled",
    "TimedOut",
    "NotReady",
]


class StateType(str, enum.Enum):
    """The kind of a state; several named states share one type (``Cached`` is ``COMPLETED``)."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLED = "CANCELLED"

    def __str__(self) -> str:  # "COMPLETED", not "StateType.COMPLETED"
        return self.value


FINAL_TYPES = frozenset({StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})
FINAL_TYPE_NAMES = frozenset(t.value for t in FINAL_TYPES)  # as stored: the run store's state_type column

_NO_DATA: Any = object()  # sentinel: None is a real result
_NO_DETAILS: Mapping[str, Any] = MappingProxyType({})  # shared: most states have no details


class State:
    """An immutable state of a run, with its result or exception once final.

    >>> Completed(data=3)
    Completed()
    >>> Completed(data=3).result()
    3
    """

    __slots__ = ("type", "name", "message", "timestamp", "_data", "details")

    def __init__(
        self,
        type: StateType,
        name: str | None = None,
        message: str | None = None,
        data: Any = _NO_DATA,
        timestamp: float | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.type = type
        self.name = name or type.value.title()
        self.message = message
        self._data = data
        self.timestamp = time.time() if timestamp is None else timestamp
        self.details = details or _NO_DETAILS

    # --- predicates, named as in Prefect -------------------------------------------------
    def is_scheduled(self) -> bool:
        return self.type is StateType.SCHEDULED

    def is_pending(self) -> bool:
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        return self.type is StateType.RUNNING

    def is_completed(self) -> bool:
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        return self.type is StateType.FAILED

    def is_crashed(self) -> bool:
        return self.type is StateType.CRASHED

    def is_cancelled(self) -> bool:
        return self.type is StateType.CANCELLED

    def is_final(self) -> bool:
        return self.type in FINAL_TYPES

    @property
    def has_data(self) -> bool:
        return self._data is not _NO_DATA

    @property
    def data(self) -> Any:
        return None if self._data is _NO_DATA else self._data

    def result(self, raise_on_failure: bool = True) -> Any:
        """The run's return value; for a failed run, raise (or return) its exception.

        A run that has not finished has no result yet: asking raises ``ValueError``.
        """
        __tracebackhide__ = True
        if self.type is StateType.COMPLETED:
            return self.data
        if not self.is_final():
            raise UnfinishedRun(f"{self!r} is not final: the run has no result yet; wait for it first.")
        exc = self._data if isinstance(self._data, BaseException) else None
        if exc is None:
            from nbflow.exceptions import RunFailedError

            exc = RunFailedError(f"Run ended in {self!r} without an exception to raise.")
        if raise_on_failure:
            raise exc
        return exc

    def copy(self, **changes: Any) -> State:
        fields = {
            "type": self.type,
            "name": self.name,
            "message": self.message,
            "data": self._data,
            "timestamp": self.timestamp,
            "details": dict(self.details),
        }
        fields.update(changes)
        return State(**fields)

    def __repr__(self) -> str:
        parts = [repr(self.message)] if self.message else []
        if self.name.upper() != self.type.value:
            parts.append(f"type={self.type.value}")
        return f"{self.name}({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, State):
            return NotImplemented
        return (self.type, self.name, self.message) == (other.type, other.name, other.message)

    __hash__ = None  # type: ignore[assignment]  # mutable-looking value; compare, don't key


def user_error(state: State) -> BaseException | None:
    """The exception a failed state carries, if any: what the engine logs with its traceback.

    Decided by the type and the data, never by the name: ``State(FAILED, name="Rejected", data=exc)``
    is a failure like ``Failed`` (the engine leaves out only a timeout, which it knows by its outcome).
    """
    data = state._data if state.type is StateType.FAILED else None
    return data if isinstance(data, BaseException) else None


def _factory(type_: StateType, name: str | None = None) -> Callable[..., State]:
    def make(message: str | None = None, *, data: Any = _NO_DATA, **kwargs: Any) -> State:
        return State(type_, name, message, data, **kwargs)

    make.__name__ = name or type_.value.title()
    make.__doc__ = f"A ``{make.__name__}`` state (type ``{type_.value}``)."
    return make


Scheduled = _factory(StateType.SCHEDULED)
Pending = _factory(StateType.PENDING)
Running = _factory(StateType.RUNNING)
Retrying = _factory(StateType.RUNNING, "Retrying")
Completed = _factory(StateType.COMPLETED)
Cached = _factory(StateType.COMPLETED, "Cached")
Failed = _factory(StateType.FAILED)
TimedOut = _factory(StateType.FAILED, "TimedOut")
Crashed = _factory(StateType.CRASHED)
Cancelled = _factory(StateType.CANCELLED)
# A task whose upstream did not complete never runs. Prefect leaves it Pending("NotReady");
# nbflow makes it final (type FAILED) so runs and monitors never show it waiting forever.
NotReady = _factory(StateType.FAILED, "NotReady")
