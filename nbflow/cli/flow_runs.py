"""``nbflow flow-run ls / inspect / logs / delete`` and ``nbflow runs prune``: the run history.

Flow runs are named by id, a unique prefix of the id, or run name. Tables for people, ``--json`` for
scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from nbflow._core.durations import format_duration, parse_duration
from nbflow.cli import CliError
from nbflow.cli._format import table, when

__all__ = ["register"]

_FOLLOW_POLL_S = 0.5
_CLOSING_SKEW_S = 1.0
_TASK_ROWS_SHOWN = 50


def register(subparsers: argparse._SubParsersAction) -> None:
    flow_run = subparsers.add_parser("flow-run", help="List, inspect, follow and delete flow runs.")
    commands = flow_run.add_subparsers(title="flow-run commands", metavar="COMMAND")
    flow_run.set_defaults(handler=lambda args: flow_run.print_help() or 2)

    ls = commands.add_parser("ls", help="List flow runs, newest first.")
    ls.add_argument("--flow", metavar="NAME", help="Only runs of the flow with this name.")
    ls.add_argument("--state", metavar="S", help="Only runs in this state: a type (failed, running) or a name (Cached).")
    ls.add_argument("--limit", metavar="N", type=_positive_int, default=20, help="Show at most N runs (default 20).")
    ls.add_argument("--json", action="store_true", help="Print JSON for scripts.")
    ls.set_defaults(handler=_ls)

    inspect = commands.add_parser("inspect", help="Show one flow run: parameters, states, task runs.")
    inspect.add_argument("id", metavar="ID", help="Flow run id, unique id prefix, or run name.")
    inspect.add_argument("--json", action="store_true", help="Print JSON (the run, its task runs and edges).")
    inspect.set_defaults(handler=_inspect)

    logs = commands.add_parser("logs", help="Print a flow run's log lines (its task runs' too).")
    logs.add_argument("id", metavar="ID", help="Flow run id, unique id prefix, or run name.")
    logs.add_argument("--follow", "-f", action="store_true", help="Keep printing new lines until the run ends.")
    logs.add_argument("--level", metavar="L", default="DEBUG", type=_level, help="Lowest level shown (default DEBUG).")
    logs.add_argument("--json", action="store_true", help="Print one JSON object per line.")
    logs.set_defaults(handler=_logs)

    delete = commands.add_parser("delete", help="Delete a flow run with its subflow runs, task runs and logs.")
    delete.add_argument("id", metavar="ID", help="Flow run id, unique id prefix, or run name.")
    delete.set_defaults(handler=_delete)

    runs = subparsers.add_parser("runs", help="Maintain the run history.")
    runs_commands = runs.add_subparsers(title="runs commands", metavar="COMMAND")
    runs.set_defaults(handler=lambda args: runs.print_help() or 2)
    prune = runs_commands.add_parser("prune", help="Delete finished flow runs older than a duration.")
    prune.add_argument("--older-than", metavar="D", required=True,
                       help="Delete finished runs created longer ago than D: 90s, 30m, 12h, 30d, 2w.")
    prune.add_argument("--json", action="store_true", help="Print JSON for scripts.")
    prune.set_defaults(handler=_prune)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _level(text: str) -> int:
    names = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
    level = names.get(text.strip().upper())
    if level is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a level: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


# --- formatting ------------------------------------------------------------------------------------




def _dump(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


# --- commands --------------------------------------------------------------------------------------

def _check_state(state: str | None) -> None:
    """A state that is no state would list nothing, as if there were no such runs: say so instead."""
    from nbflow._services.store.reader import state_words

    if state is None:
        return
    types, named = state_words()
    if state.lower() not in types + [n.lower() for n in named]:
        raise CliError(f"--state {state!r} is not a state: use a type ({', '.join(types)}) "
                       f"or a name ({', '.join(named)}), in any case.")


def _ls(args: argparse.Namespace) -> int:
    import nbflow.runs

    _check_state(args.state)
    records = nbflow.runs.flow_runs(flow_name=args.flow, state=args.state, limit=args.limit)
    if args.json:
        _dump([r.model_dump(mode="json") for r in records])
        return 0
    if not records:
        what = " ".join(filter(None, [f"of flow {args.flow!r}" if args.flow else "", f"in state {args.state!r}" if args.state else ""]))
        print(f"No flow runs{' ' + what if what else ''}.")
        return 0
    rows = [("ID", "NAME", "FLOW", "STATE", "STARTED", "DURATION")]
    for r in records:
        name = r.name if r.parent_flow_run_id is None else f"{r.name} (subflow)"
        rows.append((r.id[:8], name, r.flow_name, r.state_name or "", when(r.start_time or r.created), format_duration(r.duration)))
    table(rows)
    return 0


def _inspect(args: argparse.Namespace) -> int:
    import nbflow.runs

    graph = nbflow.runs.graph(args.id)
    run = graph.flow_run
    if args.json:
        _dump(graph.model_dump(mode="json"))
        return 0
    state = run.state
    fields = [
        ("Flow run", f"{run.name} ({run.id})"),
        ("Flow", run.flow_name + (f"  [{run.flow_ref}]" if run.flow_ref else "")),
        ("State", f"{state!r}" if state else "(none yet)"),
        ("Started", when(run.start_time)),
        ("Ended", when(run.end_time)),
        ("Duration", format_duration(run.duration)),
        ("Attempts", str(run.run_count)),
        ("Process", f"pid {run.pid} on {run.host}" if run.pid else ""),
        ("Parameters", json.dumps(run.parameters) if run.parameters else "{}"),
    ]
    if run.tags:
        fields.append(("Tags", ", ".join(run.tags)))
    for label, value in (("Parent flow run", run.parent_flow_run_id), ("Rerun of", run.rerun_of),
                         ("Deployment", run.deployment_id)):
        if value:
            fields.append((label, value))
    width = max(len(label) for label, _ in fields)
    for label, value in fields:
        if value:
            print(f"{label + ':':<{width + 1}} {value}")
    print("\nStates:")
    for s in run.history:
        print(f"  {when(s.timestamp)}  {s!r}")
    if graph.subflow_runs:
        print("\nSubflow runs:")
        table([("ID", "NAME", "FLOW", "STATE", "DURATION")] + [
            (r.id[:8], r.name, r.flow_name, r.state_name or "", format_duration(r.duration)) for r in graph.subflow_runs])
    tasks = graph.task_runs
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t.state_name or "?"] = counts.get(t.state_name or "?", 0) + 1
    summary = ", ".join(f"{n} {name}" for name, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    print(f"\nTask runs: {len(tasks)}" + (f" ({summary}); {len(graph.edges)} edge{'' if len(graph.edges) == 1 else 's'}" if tasks else ""))
    if tasks:
        rows = [("NAME", "STATE", "ATTEMPTS", "STARTED", "DURATION")]
        for t in tasks[:_TASK_ROWS_SHOWN]:
            rows.append((t.name, t.state_name or "", str(t.run_count), when(t.start_time), format_duration(t.duration)))
        table(rows)
        if len(tasks) > _TASK_ROWS_SHOWN:
            print(f"... and {len(tasks) - _TASK_ROWS_SHOWN} more (--json shows them all)")
    return 0


def _logs(args: argparse.Namespace) -> int:
    from nbflow._app.history import current_store
    from nbflow._core.states import FINAL_TYPE_NAMES
    from nbflow._services.store import reader
    from nbflow._services.store.sweep import sweep

    store = current_store()
    with store.reading(flush=True) as conn:
        flow_id = reader.resolve_flow_run(conn, args.id)
    last = 0
    closed: set[str] = set()  # task runs whose closing line (kept in their row) was printed
    newest = None  # the time of the newest of those lines
    finished_line = False  # the engine's "Finished in state" line of the flow run itself
    grace = 1  # the final state can be committed one batch before that line: poll once more for it
    next_sweep = time.monotonic() + 5
    while True:
        with store.reading() as conn:
            state = conn.execute("SELECT state_type FROM flow_runs WHERE id = ?", (flow_id,)).fetchone()
            ended = state is None or state[0] in FINAL_TYPE_NAMES
            # Rows are committed in the order their lines were written: one committed later is older
            # than the newest seen by the time between dating a line and queueing it, far below a second.
            since = None if newest is None else newest - _CLOSING_SKEW_S
            rows = [row for row in reader.lines(conn, flow_id, after=last, since=since)
                    if row[0] is not None or row[2] not in closed]
            for row in rows:
                if row[0] is None:  # a closing line kept in its task run's row
                    closed.add(row[2])
                    newest = max(newest or 0.0, row[4])
            names = reader.task_names(conn, flow_id) if rows else {}
            flow_name = conn.execute("SELECT name FROM flow_runs WHERE id = ?", (flow_id,)).fetchone()
        for row in rows:
            last = row[0] or last
            finished_line = finished_line or (row[2] is None and row[6].startswith("Finished in state"))
            _print_log(row, names, flow_name[0] if flow_name else "?", args)
        sys.stdout.flush()
        if not args.follow:
            return 0
        if ended:
            if finished_line or grace == 0:
                return 0
            grace -= 1
        if time.monotonic() > next_sweep:  # a run whose process died while we watch ends Crashed
            with store.reading() as conn:
                sweep(conn, float(store.settings.crash_after_seconds))
            next_sweep = time.monotonic() + 5
        time.sleep(_FOLLOW_POLL_S)


def _print_log(row: tuple, names: dict[str, str], flow_name: str, args: argparse.Namespace) -> None:
    from nbflow._services.store.models import LogRecord

    log_id, flow_run_id, task_run_id, level, timestamp, logger, message = row
    if level < args.level:
        return
    record = LogRecord(id=log_id, flow_run_id=flow_run_id, task_run_id=task_run_id, level=level, timestamp=timestamp,
                       logger=logger, message=message,
                       run_name=names.get(task_run_id, "?") if task_run_id else flow_name)
    print(record.model_dump_json() if args.json else record.format())


def _delete(args: argparse.Namespace) -> int:
    import nbflow.runs

    run = nbflow.runs.flow_run(args.id)
    if run.state is not None and not run.state.is_final():
        raise CliError(f"Flow run {run.name!r} is {run.state_name}: wait until it ends (or is marked Crashed) to delete it.")
    deleted = nbflow.runs.delete_flow_run(run.id)
    subflows = deleted - 1
    extra = f" and {subflows} subflow run{'s' if subflows != 1 else ''}" if subflows > 0 else ""
    print(f"Deleted flow run {run.name!r} ({run.id}){extra}, with its task runs and logs.")
    return 0


def _prune(args: argparse.Namespace) -> int:
    import nbflow.runs

    try:
        seconds = parse_duration(args.older_than)
    except ValueError as exc:
        raise CliError(f"--older-than: {exc}") from None
    deleted = nbflow.runs.prune(seconds)
    if args.json:
        _dump({"deleted_flow_runs": deleted, "older_than_seconds": seconds})
    else:
        print(f"Deleted {deleted} finished flow run{'s' if deleted != 1 else ''} created more than {args.older_than} ago.")
    return 0
