"""``on_crashed`` hooks of runs the store's sweep marked ``Crashed``, called by the next process that
runs a flow.

Not before: calling them imports the module a row names, and a process that only reads the history
(``nbflow flow-run ls``, ``nbflow.runs``, ``%flow runs``) must import nothing the database names. A
process that runs flows runs the user's code anyway. Each run's hooks are claimed in the store
first, so exactly one process calls them.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nbflow._core.entrypoints import importable
from nbflow._core.events import EventBus, RunCreated
from nbflow._core.records import FlowRun
from nbflow._core.states import Crashed
from nbflow._core.threads import start_thread
from nbflow._engine.flow import Flow
from nbflow._services.store.sweep import CrashedRun, HookLedger

__all__ = ["call_when_a_run_starts", "start_hooks"]


def call_when_a_run_starts(bus: EventBus, path: Path, owed: list[CrashedRun]) -> None:
    """Call the hooks ``owed`` on a thread when this process's first run is created."""
    if not owed:
        return
    unsubscribe: Callable[[], None] | None = None

    def first_run(event: Any) -> None:
        nonlocal unsubscribe
        if event.__class__ is not RunCreated or unsubscribe is None:
            return
        unsubscribe()
        unsubscribe = None
        thread = start_hooks(path, owed)
        if thread is not None:
            atexit.register(thread.join, 10.0)  # let hooks finish, but never hang the exit

    unsubscribe = bus.subscribe(first_run)


def start_hooks(path: Path, crashed: list[CrashedRun]) -> threading.Thread | None:
    """Call the ``on_crashed`` hooks of importable flows, on a thread (imports can be slow).

    A hook's failure is logged to the run; it never stops the process.
    """
    todo = [(run, spec) for run in crashed if (spec := importable(run.flow_ref)) is not None]
    if not todo:
        return None
    thread = threading.Thread(target=_call_hooks, args=(path, todo), name="nbflow-crash-hooks", daemon=True)
    start_thread(thread)
    return thread


def _load_flow(module: str, qualname: str) -> Flow | None:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj if isinstance(obj, Flow) else None


def _call_hooks(path: Path, todo: list[tuple[CrashedRun, tuple[str, str]]]) -> None:
    try:
        ledger = HookLedger(path)
    except Exception as exc:  # the store went away under us: say so, never raise in a thread
        print(f"nbflow: on_crashed hooks could not finish: {exc!r}", file=sys.stderr)
        return
    lines: list[tuple[str, int, float, str]] = []
    try:
        for run, (module, qualname) in todo:
            if not ledger.claim(run.id):
                continue  # another process that runs flows called them
            try:
                flow = _load_flow(module, qualname)
            except Exception:
                continue  # moved, renamed, or needs what this process lacks: nothing to call
            hooks = tuple(getattr(getattr(flow, "options", None), "on_crashed", ()) or ())
            if not hooks:
                continue
            flow_run = FlowRun(run.name, run.flow_name, ledger.parameters(run.id), id=run.id)
            state = Crashed(run.message, timestamp=run.timestamp)
            flow_run.state, flow_run.end_time = state, run.timestamp
            for hook in hooks:
                name = getattr(hook, "__name__", repr(hook))
                try:
                    hook(flow, flow_run, state)
                except Exception as exc:
                    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                    message = f"An error was encountered while running hook {name!r}: {exc!r}\n{trace}"
                    lines.append((run.id, logging.ERROR, time.time(), message))
                else:
                    lines.append((run.id, logging.INFO, time.time(), f"Hook {name!r} finished running successfully"))
        ledger.log(lines)
    except Exception as exc:  # the store went away under us: say so, never raise in a thread
        print(f"nbflow: on_crashed hooks could not finish: {exc!r}", file=sys.stderr)
    finally:
        ledger.close()
