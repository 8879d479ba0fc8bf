"""``nbflow flow-run rerun ID``: run a recorded flow run again, reusing every unchanged task result."""

from __future__ import annotations

import argparse
import asyncio
import inspect
from typing import Any

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    # `flow-run` belongs to the run store's CLI module; add to its parser when it is there.
    flow_run = subparsers.choices.get("flow-run")
    if flow_run is None:
        flow_run = subparsers.add_parser("flow-run", help="Inspect and rerun flow runs.")
        flow_run.set_defaults(handler=lambda args: flow_run.print_help() or 2)
    commands = next((a for a in flow_run._actions if isinstance(a, argparse._SubParsersAction)), None)
    if commands is None:
        commands = flow_run.add_subparsers(title="flow-run commands", metavar="COMMAND")
    rerun = commands.add_parser(
        "rerun",
        help="Run a flow run again with the same parameters; unchanged tasks are Cached.",
        description="Run a recorded flow run again with the same parameters, as a new flow run linked to it. "
        "Tasks whose inputs and code are unchanged end Cached without running; failed, edited and downstream "
        "tasks run. The flow must be importable from here (defined in a module or script, not a notebook).",
    )
    rerun.add_argument("id", metavar="ID", help="The flow run's id (or a unique prefix of it, or its name).")
    rerun.set_defaults(handler=_rerun)


def _rerun(args: argparse.Namespace) -> int:
    from nbflow._app.reruns import find_flow_run, load_flow
    from nbflow._core.events import RunCreated, StateChanged
    from nbflow._engine.runtime import get_runtime

    runtime = get_runtime()
    record = find_flow_run(args.id)
    flow = load_flow(record)
    record.parameters()  # fail here, before anything runs, if they cannot be loaded
    seen: dict[str, Any] = {}
    finals: dict[str, str] = {}

    def watch(event: Any) -> None:
        if event.__class__ is RunCreated and event.run.kind == "flow" and event.run.rerun_of == record.id:
            seen.setdefault("run", event.run)
        elif event.__class__ is StateChanged and event.run.kind == "task" and event.state.is_final():
            finals[event.run.id] = event.state.name

    unsubscribe = runtime.bus.subscribe(watch)
    try:
        state = flow.rerun(record.id, return_state=True)
        if inspect.isawaitable(state):
            state = asyncio.run(state)
    finally:
        unsubscribe()
    new = seen.get("run")
    cached = sum(1 for name in finals.values() if name == "Cached")
    target = f" as flow run {new.name!r} ({new.id})" if new is not None else ""
    print(f"Rerun of {record.name!r} finished in state {state!r}{target}: "
          f"{cached} of {len(finals)} task runs Cached, {len(finals) - cached} ran.")
    return 0 if state.is_completed() else 1
