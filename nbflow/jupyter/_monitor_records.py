"""The run records a monitor reads when the live ones are gone: stored runs, and finished runs'
copies without their results and parameters. Also how a failure reads (error line, traceback).

Pure: no Jupyter imports.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterator, Mapping
from functools import partial
from itertools import chain, compress
from operator import attrgetter, eq
from typing import Any, NamedTuple

from nbflow._core.states import State, StateType

__all__ = ["RunRecord", "CompactRuns", "error_text", "format_error", "WIRE_TEXT_LIMIT", "TRACEBACK_LIMIT"]

WIRE_TEXT_LIMIT = 400
"""Characters of a log line or error message in the state log; the detail panel has the whole line."""

TRACEBACK_LIMIT = 20_000
"""Characters of a formatted traceback: a deep recursion error must not make a megabyte message."""

_NBFLOW_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_JUPYTER_DIR = os.path.join(_NBFLOW_DIR, "jupyter")
_IS_TASK = partial(eq, "task")
_ID, _KIND, _NAME, _STATE = attrgetter("id"), attrgetter("kind"), attrgetter("name"), attrgetter("state")
_TASK_KEY, _TASK_NAME, _FLOW_RUN_ID = attrgetter("task_key"), attrgetter("task_name"), attrgetter("flow_run_id")
_START, _END = attrgetter("start_time"), attrgetter("end_time")
_RUN_COUNT, _CACHE_KEY = attrgetter("run_count"), attrgetter("cache_key")


class RunRecord:
    """A run as the model reads it, when it is not a live engine record: read back from the run
    store, or a finished run's copy without its result and parameters. Same attribute names as
    ``TaskRun``/``FlowRun``."""

    __slots__ = (
        "id", "kind", "name", "task_key", "task_name", "flow_name", "flow_run_id", "parent_flow_run_id",
        "state", "start_time", "end_time", "run_count", "cache_key",
    )

    def __init__(self, id: str, kind: str, name: str, *, task_key: str = "", task_name: str = "",
                 flow_name: str = "", flow_run_id: str | None = None, parent_flow_run_id: str | None = None,
                 state: State | None = None, start_time: float | None = None, end_time: float | None = None,
                 run_count: int = 0, cache_key: str | None = None) -> None:
        self.id, self.kind, self.name = id, kind, name
        self.task_key, self.task_name, self.flow_name = task_key, task_name, flow_name
        self.flow_run_id, self.parent_flow_run_id = flow_run_id, parent_flow_run_id
        self.state, self.start_time, self.end_time = state, start_time, end_time
        self.run_count, self.cache_key = run_count, cache_key

    @classmethod
    def copy_of(cls, run: Any) -> RunRecord:
        """What the monitor needs of a live run, without its result or parameters."""
        state = run.state
        state = _strip(state)  # the result stays with the engine (and the result cache)
        if run.kind == "task":
            return cls(run.id, "task", run.name, task_key=run.task_key, task_name=run.task_name,
                       flow_run_id=run.flow_run_id, state=state, start_time=run.start_time,
                       end_time=run.end_time, run_count=run.run_count, cache_key=run.cache_key)
        return cls(run.id, "flow", run.name, flow_name=run.flow_name, parent_flow_run_id=run.parent_flow_run_id,
                   state=state, start_time=run.start_time, end_time=run.end_time, run_count=run.run_count)


class _TaskCopy(NamedTuple):
    """A finished task run as the monitor reads it: no result, no parameters (see ``compact``)."""

    id: str
    name: str
    task_key: str
    task_name: str
    flow_run_id: str
    state: State | None
    start_time: float | None
    end_time: float | None
    run_count: int
    cache_key: str | None
    kind: str = "task"


def _strip(state: State | None) -> State | None:
    """A state as a finished monitor keeps it: without a result, and a failure's exception as its
    formatted traceback (the exception's frames would keep the task's variables alive)."""
    if state is None or not state.has_data:
        return state
    return _state_of(state.type.value, state.name, state.message, _error_of(state), state.timestamp)


def _error_of(state: State | None) -> str | None:
    """What a finished monitor keeps of a state's data: a failure's traceback, as text."""
    if state is None or state.type == "COMPLETED" or not state.has_data:
        return None
    data = state.data
    return format_error(data) if isinstance(data, (BaseException, str)) and data else None


class CompactRuns(Mapping[str, Any]):
    """Finished runs by id; task runs kept as plain tuples of strings and numbers.

    The garbage collector stops tracking such tuples. A kernel keeps the monitors of its recent
    cells; had each kept an object per task run, every full collection in the kernel would walk
    them all, and a 10,000-task run after a few others took 20-30 % longer. A task run is rebuilt as a
    ``_TaskCopy`` when read (a detail panel, a group's member list); subflow runs are few and kept
    as copies.
    """

    __slots__ = ("_rows", "_copies")

    def __init__(self, runs: list[Any]) -> None:
        is_task = list(map(_IS_TASK, map(_KIND, runs)))
        tasks = list(compress(runs, is_task))
        states = list(map(_STATE, tasks))
        self._rows: dict[str, tuple] = dict(zip(map(_ID, tasks), zip(
            map(_ID, tasks), map(_NAME, tasks), map(_TASK_KEY, tasks), map(_TASK_NAME, tasks),
            map(_FLOW_RUN_ID, tasks), map(_type_of, states), map(_name_of, states), map(_message_of, states),
            map(_error_of, states), map(_START, tasks), map(_END, tasks), map(_RUN_COUNT, tasks),
            map(_CACHE_KEY, tasks),
        )))
        self._copies: dict[str, Any] = {run.id: RunRecord.copy_of(run) for run in runs if run.kind != "task"}

    def __getitem__(self, run_id: str) -> Any:
        row = self._rows.get(run_id)
        if row is None:
            return self._copies[run_id]
        run_id, name, task_key, task_name, flow_run_id, type_, state_name, message, error, start, end, count, key = row
        state = None if type_ is None else _state_of(type_, state_name, message, error)
        return _TaskCopy(run_id, name, task_key, task_name, flow_run_id, state, start, end, count, key)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._rows or run_id in self._copies

    def __iter__(self) -> Iterator[str]:
        return chain(self._rows, self._copies)

    def __len__(self) -> int:
        return len(self._rows) + len(self._copies)


def _type_of(state: State | None) -> str | None:
    return None if state is None else state.type.value


def _name_of(state: State | None) -> str | None:
    return None if state is None else state.name


def _message_of(state: State | None) -> str | None:
    return None if state is None else state.message


_SHARED: dict[tuple[str, str, str | None], State] = {}


def _state_of(type_: str, name: str, message: str | None, error: str | None, timestamp: float = 0.0) -> State:
    """A state without a result. Those without an error are shared, one object per type, name and
    message (the run keeps its own start and end times): 10,000 runs make a handful of states."""
    if error is not None:
        return State(StateType(type_), name, message, data=error, timestamp=timestamp)
    key = (type_, name, message)
    state = _SHARED.get(key)
    if state is None:
        if len(_SHARED) > 1000:  # names and messages are few; never let it grow unbounded
            _SHARED.clear()
        state = _SHARED[key] = State(StateType(type_), name, message, timestamp=timestamp)
    return state


def error_text(state: State | None) -> str:
    """One line saying why a run failed: ``ValueError: bad row`` (never a result's text)."""
    data = state.data if state is not None and state.type is not StateType.COMPLETED else None
    if isinstance(data, BaseException):
        text = f"{data.__class__.__name__}: {_safe_str(data)}"
    elif isinstance(data, str) and data.strip():
        text = data.strip().splitlines()[-1]
    else:
        text = (state.message if state else None) or (state.name if state else "")
    return text if len(text) <= WIRE_TEXT_LIMIT else text[: WIRE_TEXT_LIMIT - 1] + "…"


def format_error(error: BaseException | str) -> str:
    """The traceback of a failure without nbflow's engine frames: the user's code is the story."""
    if isinstance(error, str):
        text = error
    else:
        frames = [
            frame for frame in traceback.extract_tb(error.__traceback__)
            if not frame.filename.startswith(_NBFLOW_DIR) or frame.filename.startswith(_JUPYTER_DIR)
        ]
        lines = ["Traceback (most recent call last):\n"] if frames else []
        lines += traceback.format_list(frames)
        lines += traceback.format_exception_only(error.__class__, error)
        text = "".join(lines)
    return text if len(text) <= TRACEBACK_LIMIT else "…\n" + text[-TRACEBACK_LIMIT:]


def _safe_str(error: BaseException) -> str:
    try:
        return str(error)[:WIRE_TEXT_LIMIT]
    except Exception:  # a broken __str__ must not break the monitor
        return "<unprintable>"
