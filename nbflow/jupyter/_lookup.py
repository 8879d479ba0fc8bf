"""What a ``%flow`` line names: flow runs (by id or id prefix) and flows (by name).

Runs come from the run store when there is one (runs of other processes and earlier kernels too),
else from the runs this kernel's cells started. Flows come from this kernel: ``%%flow`` cells and
``@flow`` functions defined in the notebook, since only code defined here can run again here.
"""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError

from nbflow._engine.flow import Flow
from nbflow.jupyter._runs_table import RunRow, row_of
from nbflow.jupyter._session import NotebookSession

__all__ = ["run_history", "find_run", "find_flow", "resolve_rerun", "open_monitor"]


def _store() -> Any:
    """The run store's query module, or None where there is none (``NBFLOW_STORE_ENABLED=false``)."""
    from nbflow._engine.runtime import get_runtime

    if get_runtime().store is None:
        return None
    try:
        from nbflow import runs
    except ImportError:  # pragma: no cover - a build without the run store
        return None
    return runs


def run_history(session: NotebookSession, flow_name: str | None, limit: int) -> list[RunRow]:
    """The latest top-level flow runs (subflows are part of their parent's run), newest first."""
    store = _store()
    if store is None:
        runs = [r for r in reversed(session.recent) if flow_name is None or r.flow_name == flow_name]
        return [row_of(r) for r in runs[:limit]]
    fetch = limit * 2
    while True:  # subflow runs are rows too: read more until `limit` top-level runs are found
        records = store.flow_runs(flow_name=flow_name, limit=fetch)
        top = [r for r in records if r.parent_flow_run_id is None]
        if len(top) >= limit or len(records) < fetch:
            return [row_of(r) for r in top[:limit]]
        fetch *= 4


def find_run(session: NotebookSession, ref: str) -> Any:
    """A flow run by id, unique id prefix or run name: a live record of this kernel, else a stored one."""
    live = session.find_recent(ref)
    if live is not None:
        return live
    store = _store()
    if store is None:
        return None
    from nbflow.exceptions import RunNotFoundError

    try:
        return store.flow_run(ref)
    except RunNotFoundError as exc:
        if "several" in str(exc):
            raise UsageError(str(exc)) from None
        return None


def latest_run(session: NotebookSession) -> Any:
    if session.recent:
        return session.recent[-1]
    store = _store()
    if store is None:
        return None
    found = [r for r in store.flow_runs(limit=20) if r.parent_flow_run_id is None]
    return found[0] if found else None


def find_flow(session: NotebookSession, name: str) -> Flow[Any] | None:
    """The flow named ``name`` in this kernel: a ``%%flow`` cell's, else an ``@flow`` in the notebook."""
    cell = session.cell_flows.get(name)
    if cell is not None:
        return cell.flow
    found = None
    for value in list(session.shell.user_ns.values()):
        if isinstance(value, Flow) and value.name == name:
            found = value  # the one defined last wins, as a redefinition would
    return found


def resolve_rerun(session: NotebookSession, target: str | None) -> tuple[Flow[Any], str | None]:
    """``%flow rerun [RUN_ID|NAME]`` -> (the flow, the run to rerun; None: the flow's latest run)."""
    if target is not None:
        flow = find_flow(session, target)
        if flow is not None:
            return flow, None
        run = find_run(session, target)
        if run is None:
            raise UsageError(
                f"%flow rerun: no flow or flow run {target!r}. Name a %%flow cell or a flow defined in "
                "this notebook, or give a run id from %flow runs."
            )
    else:
        run = latest_run(session)
        if run is None:
            raise UsageError("%flow rerun: no flow run yet. Run a %%flow cell or a flow first.")
    flow = find_flow(session, run.flow_name)
    if flow is None:
        raise UsageError(
            f"%flow rerun: flow {run.flow_name!r} of run {run.name!r} is not defined in this kernel. "
            "Run the cell that defines it first."
        )
    return flow, run.id


def open_monitor(session: NotebookSession, run_id: str | None) -> Any:
    """``%flow monitor [RUN_ID]``: show a monitor of a live run of this kernel or of a stored run."""
    run = latest_run(session) if run_id is None else find_run(session, run_id)
    if run is None:
        what = "no flow run yet" if run_id is None else f"no flow run {run_id!r}"
        raise UsageError(f"%flow monitor: {what}. See %flow runs for run ids.")
    from nbflow.exceptions import NbflowError
    from nbflow.jupyter._widget import monitor

    try:
        return monitor(run.id)  # a run of this kernel shows its monitor again; others come from the store
    except NbflowError as exc:
        raise UsageError(f"%flow monitor: {exc}") from None
