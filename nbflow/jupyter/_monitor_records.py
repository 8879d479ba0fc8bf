"""The run records a monitor reads when the live ones are gone: stored runs, and finished runs'
copies without their results and parameters. Also how a failure reads (error line, traceback).

Pure: no Jupyter imports.
"""

from __future__ import annotations

import os
import traceback
from functools import partial
from itertools import compress, repeat
from operator import attrgetter, eq, not_
from typing import Any, NamedTuple

from nbflow._states import State, StateType

__all__ = ["RunRecord", "copy_runs", "error_text", "format_error", "WIRE_TEXT_LIMIT", "TRACEBACK_LIMIT"]

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


_RESULTLESS: dict[tuple[str, str | None], State] = {}


def _without_result(state: State) -> State:
    """A completed state without its result; one shared object per name and message (the run keeps
    its own start and end times), so compacting 10,000 runs makes a handful of states."""
    key = (state.name, state.message)
    copy = _RESULTLESS.get(key)
    if copy is None:
        if len(_RESULTLESS) > 1000:  # names and messages are few; never let it grow unbounded
            _RESULTLESS.clear()
        copy = _RESULTLESS[key] = State(state.type, state.name, state.message, timestamp=state.timestamp)
    return copy


class _TaskCopy(NamedTuple):
    """A finished task run as the monitor keeps it: no result, no parameters (see ``compact``)."""

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
    """A state without its result: a completed state's data is the result; a failure keeps its error."""
    if state is None or state.type != "COMPLETED" or not state.has_data:
        return state
    return _without_result(state)


def copy_runs(runs: list[Any]) -> dict[str, Any]:
    """Copies of run records without results or parameters, by run id.

    Task runs can be many: they are copied by C-level passes into immutable records.
    """
    is_task = list(map(_IS_TASK, map(_KIND, runs)))
    tasks = list(compress(runs, is_task))
    copies: dict[str, Any] = dict(zip(map(_ID, tasks), map(_TaskCopy._make, zip(
        map(_ID, tasks), map(_NAME, tasks), map(_TASK_KEY, tasks), map(_TASK_NAME, tasks),
        map(_FLOW_RUN_ID, tasks), map(_strip, map(_STATE, tasks)), map(_START, tasks), map(_END, tasks),
        map(_RUN_COUNT, tasks), map(_CACHE_KEY, tasks), repeat("task"),
    ))))
    copies.update((run.id, RunRecord.copy_of(run)) for run in compress(runs, map(not_, is_task)))
    return copies


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
