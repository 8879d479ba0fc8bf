"""Rerun a flow run: the same parameters, a new flow run linked to the old one, cached tasks reused.

In a rerun every task looks its key up (inputs + source by default), so tasks whose inputs and code
are unchanged end ``Cached`` without running; failed tasks, edited tasks and every task downstream of
a changed result (its inputs changed) run. ``flow.rerun()`` does it where the flow is defined;
``nbflow flow-run rerun ID`` imports the flow from where the run recorded it was defined.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbflow._app import history
from nbflow.exceptions import FlowRunOnImport, NbflowError, RunNotFoundError

if TYPE_CHECKING:
    from nbflow._engine.flow import Flow

__all__ = ["RecordedRun", "FlowRunOnImport", "find_flow_run", "load_flow", "rerun"]

_MAIN = "__main__"


@dataclass(frozen=True)
class RecordedRun:
    """What a rerun needs of an earlier flow run (read through ``nbflow.runs``)."""

    id: str
    name: str
    flow_name: str
    flow_ref: str | None  # "module:qualname" or "/path/to/script.py:qualname"

    def parameters(self) -> dict[str, Any]:
        """The run's real parameter values; ``ParametersNotStoredError`` says why when they are gone."""
        return history.load_parameters(self.id)


# --- finding the run ---------------------------------------------------------------------------------

def find_flow_run(flow_run_id: str | None = None, flow_name: str | None = None) -> RecordedRun:
    """The flow run ``flow_run_id`` (an id, a unique id prefix, or a run name), else the latest
    top-level run of ``flow_name``, in the current runtime's run store. ``RunNotFoundError`` when none."""
    if flow_run_id is None:
        runs = history.flow_runs(flow_name=flow_name, limit=1, top_level=True)
        if not runs:
            raise RunNotFoundError(f"Flow {flow_name!r} has no recorded runs to rerun: run it first.")
        record = runs[0]
    else:
        record = history.flow_run(flow_run_id)
    return RecordedRun(record.id, record.name, record.flow_name, record.flow_ref)


# --- rerunning -----------------------------------------------------------------------------------------

def rerun(flow: Flow, flow_run_id: str | None = None, *, return_state: bool = False) -> Any:
    """Run ``flow`` again with the parameters of ``flow_run_id`` (default: its latest run).

    The new flow run records ``rerun_of``; every task whose key is unchanged ends ``Cached``.
    Returns what calling the flow returns (a coroutine for an ``async`` flow).
    """
    from nbflow._engine.context import flow_context
    from nbflow._engine.runtime import get_runtime

    runtime = get_runtime()
    record = find_flow_run(flow_run_id, flow.name)
    if record.flow_name != flow.name:
        raise NbflowError(
            f"Flow run {record.name!r} is a run of flow {record.flow_name!r}, not of {flow.name!r}: "
            f"rerun it with {record.flow_name.replace('-', '_')}.rerun({record.id[:8]!r})."
        )
    parameters = record.parameters()
    flow_run = flow.new_flow_run(parameters, flow_context(), rerun_of=record.id)
    return flow.run(parameters, return_state=return_state, runtime=runtime, flow_run=flow_run)


# --- the flow's code, from another process ------------------------------------------------------------

def load_flow(record: RecordedRun) -> Flow:
    """Import the flow a run recorded; a clear ``NbflowError`` when it cannot be imported here."""
    from nbflow._engine.flow import Flow

    ref = record.flow_ref
    if not ref or ":" not in ref:
        raise NbflowError(
            f"Flow run {record.name!r} did not record where flow {record.flow_name!r} is defined; rerun it "
            f"where it is defined, with {_python_name(record)}.rerun({record.id[:8]!r})."
        )
    location, _, qualname = ref.rpartition(":")  # rpartition: a Windows path has a colon too
    if location == _MAIN or "<locals>" in qualname:
        where = "inside a function" if "<locals>" in qualname else "in a notebook or an interactive session"
        raise NbflowError(
            f"Flow {record.flow_name!r} of run {record.name!r} was defined {where}, so no other process can "
            f"import it. Rerun it from the notebook: `%flow rerun {record.id[:8]}` or "
            f"`{_python_name(record)}.rerun({record.id[:8]!r})`. (A flow in a .py file can be rerun from here.)"
        )
    _check_ref(record, location, qualname)
    try:
        with _no_flow_runs(record, location) as guard:
            if location.endswith(".py"):
                module = _load_script(Path(location))
            else:
                if os.getcwd() not in sys.path:
                    sys.path.insert(0, os.getcwd())  # the `nbflow` script does not add the project folder
                module = importlib.import_module(location)
        guard.check()  # a flow call the module caught and went on from
        obj: Any = module
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except NbflowError:
        raise
    except Exception as exc:
        raise NbflowError(
            f"Cannot import flow {record.flow_name!r} from {ref} to rerun {record.name!r}: {type(exc).__name__}: {exc}. "
            "Run this command from the project folder (where the flow's module is importable)."
        ) from None
    if not isinstance(obj, Flow):
        raise NbflowError(f"{ref} is a {type(obj).__name__}, not a flow: was the @flow decorator removed?")
    return obj


def _dotted(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def _check_ref(record: RecordedRun, location: str, qualname: str) -> None:
    """Refuse a recorded ``flow_ref`` nbflow would not have written, before importing anything.

    nbflow records ``package.module:qualname`` or ``/absolute/path/script.py:qualname``; anything
    else in the database (a relative path, a file that is not Python, junk) is not imported.
    """
    script = location.endswith(".py") and os.path.isabs(location)
    if _dotted(qualname) and (script or _dotted(location)):
        return
    raise NbflowError(
        f"Flow run {record.name!r} records {record.flow_ref!r} as where flow {record.flow_name!r} is defined, which is "
        "neither `package.module:qualname` nor the absolute path of a .py file with `:qualname`, so nbflow imports "
        f"nothing. Rerun it where the flow is defined, with {_python_name(record)}.rerun({record.id[:8]!r})."
    )


class _ImportGuard:
    """Stands in for the runtime while a flow's module is imported: any flow run started then stops
    at its first use of the runtime, before it records or runs anything."""

    def __init__(self, record: RecordedRun, location: str) -> None:
        self.message = (
            f"Importing {location} to rerun flow {record.flow_name!r} started a flow run: its top-level code calls a "
            "flow. nbflow stopped that run before it did anything. Put the script's own calls under "
            '`if __name__ == "__main__":` so that importing it only defines the flow, then rerun.'
        )
        self.called = False

    def __getattr__(self, name: str) -> Any:
        self.called = True
        raise FlowRunOnImport(self.message)

    def check(self) -> None:
        if self.called:
            raise FlowRunOnImport(self.message)


@contextlib.contextmanager
def _no_flow_runs(record: RecordedRun, location: str) -> Iterator[_ImportGuard]:
    """While importing: flow calls raise ``FlowRunOnImport``, and a script sees ``sys.argv`` as if it
    were run with no arguments (not the ``nbflow flow-run rerun ...`` of this process)."""
    from nbflow._engine.runtime import use_runtime

    guard = _ImportGuard(record, location)
    argv = sys.argv
    if location.endswith(".py"):
        sys.argv = [location]
    try:
        with use_runtime(guard):  # type: ignore[arg-type]
            yield guard
    finally:
        sys.argv = argv


def _load_script(path: Path) -> Any:
    """Import a script by path without running its ``if __name__ == "__main__":`` block."""
    if not path.exists():
        raise NbflowError(f"The script {path} that defined this flow is gone; rerun from where it lives now.")
    name = f"nbflow_rerun_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    from nbflow._core.entrypoints import SCRIPT_MARK

    module = importlib.util.module_from_spec(spec)
    setattr(module, SCRIPT_MARK, str(path.resolve()))  # its flows' runs are recorded under this path
    sys.path.insert(0, str(path.parent))  # its sibling imports
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)  # half a module: never found by a later import
        raise
    return module


def _python_name(record: RecordedRun) -> str:
    if record.flow_ref and ":" in record.flow_ref:
        return record.flow_ref.rpartition(":")[2].split(".")[-1]
    return record.flow_name.replace("-", "_")
