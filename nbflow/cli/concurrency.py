"""``nbflow concurrency-limit create/ls/inspect/update/reset/delete``: the limits every process shares."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from typing import Any

from nbflow.cli._format import table, when

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser(
        "concurrency-limit",
        help="Create and inspect concurrency limits shared by every process using NBFLOW_HOME.",
        description="Concurrency limits cap how many `with concurrency(NAME):` blocks, or task runs tagged "
        "NAME, run at once, across threads, processes and workers sharing NBFLOW_HOME.",
    )
    commands = group.add_subparsers(title="concurrency-limit commands", metavar="COMMAND")

    create = commands.add_parser("create", help="Create a limit of LIMIT slots (a rate limit with --slot-decay-per-second).")
    create.add_argument("name", metavar="NAME", help="The limit's name; a task tag of that name is limited too.")
    create.add_argument("limit", metavar="LIMIT", help="How many slots may be held at once (a whole number >= 0).")
    create.add_argument(
        "--slot-decay-per-second", metavar="R", default="0",
        help="Make it a rate limit: slots free themselves at R per second (used by rate_limit()).",
    )
    create.set_defaults(handler=_create)

    ls = commands.add_parser("ls", help="List the limits with their active slots.")
    ls.add_argument("--json", action="store_true", help="Print JSON for scripts.")
    ls.set_defaults(handler=_ls)

    inspect = commands.add_parser("inspect", help="Show a limit, its active slots, their holders and the waiters.")
    inspect.add_argument("name", metavar="NAME")
    inspect.add_argument("--json", action="store_true", help="Print JSON for scripts.")
    inspect.set_defaults(handler=_inspect)

    update = commands.add_parser("update", help="Change a limit's size (holders keep their slots).")
    update.add_argument("name", metavar="NAME")
    update.add_argument("limit", metavar="LIMIT", help="The new number of slots (a whole number >= 0).")
    update.add_argument("--slot-decay-per-second", metavar="R", default=None, help="Change the slot decay too.")
    update.set_defaults(handler=_update)

    reset = commands.add_parser("reset", help="Free every slot of a limit now (holders keep running, uncounted).")
    reset.add_argument("name", metavar="NAME")
    reset.set_defaults(handler=_reset)

    delete = commands.add_parser("delete", help="Delete a limit (holders finish; waiters go ahead unlimited).")
    delete.add_argument("name", metavar="NAME")
    delete.set_defaults(handler=_delete)

    group.set_defaults(handler=lambda args: group.print_help() or 2)


def _limits() -> Any:
    """``nbflow.concurrency.limits`` bound to a bare runtime: the CLI needs no store writer or cache."""
    import functools
    import types

    from nbflow._engine.runtime import Runtime
    from nbflow.concurrency import limits

    runtime = Runtime(console=False)  # settings from the environment, no services attached
    verbs = ("create", "ls", "inspect", "update", "reset", "delete")
    return types.SimpleNamespace(**{v: functools.partial(getattr(limits, v), runtime=runtime) for v in verbs})


def _describe(limit: Any) -> str:
    text = f"{limit.limit} slot(s)"
    if limit.slot_decay_per_second:
        text += f", freeing {_num(limit.slot_decay_per_second)} per second"
    return text


def _create(args: argparse.Namespace) -> int:
    limits = _limits()
    limit = limits.create(args.name, args.limit, slot_decay_per_second=args.slot_decay_per_second)
    print(f"Created concurrency limit {limit.name!r}: {_describe(limit)}.")
    return 0


def _update(args: argparse.Namespace) -> int:
    limit = _limits().update(args.name, args.limit, slot_decay_per_second=args.slot_decay_per_second)
    print(f"Updated concurrency limit {limit.name!r}: {_describe(limit)}, {_num(limit.active_slots)} active.")
    return 0


def _reset(args: argparse.Namespace) -> int:
    limit = _limits().reset(args.name)
    print(f"Reset concurrency limit {limit.name!r}: all {limit.limit} slot(s) free.")
    return 0


def _delete(args: argparse.Namespace) -> int:
    limits = _limits()
    before = limits.inspect(args.name)
    limits.delete(args.name)
    note = ""
    if before.holders or before.waiters:
        note = (f" {len(before.holders)} holder(s) finish normally; "
                f"{len(before.waiters)} waiter(s) go ahead unlimited.")
    print(f"Deleted concurrency limit {args.name!r}.{note}")
    return 0


def _ls(args: argparse.Namespace) -> int:
    found = _limits().ls()
    if args.json:
        print(json.dumps([asdict(limit) for limit in found], indent=2))
        return 0
    if not found:
        print("No concurrency limits. Create one with `nbflow concurrency-limit create NAME LIMIT`.")
        return 0
    rows = [("NAME", "LIMIT", "ACTIVE", "DECAY/S", "HOLDERS", "WAITING")]
    for limit in found:
        rows.append((
            limit.name, str(limit.limit), _num(limit.active_slots),
            _num(limit.slot_decay_per_second) if limit.slot_decay_per_second else "-",
            str(len(limit.holders)), str(len(limit.waiters)),
        ))
    table(rows)
    return 0


def _inspect(args: argparse.Namespace) -> int:
    limit = _limits().inspect(args.name)
    if args.json:
        print(json.dumps(asdict(limit), indent=2))
        return 0
    now = time.time()
    decay = f"{_num(limit.slot_decay_per_second)} slot(s) per second" if limit.slot_decay_per_second else "none"
    print(f"name:          {limit.name}")
    print(f"limit:         {limit.limit}")
    print(f"slot decay:    {decay}")
    print(f"active slots:  {_num(limit.active_slots)}")
    print(f"holders:       {len(limit.holders)}")
    if limit.holders:
        rows = [("  LEASE", "SLOTS", "HOLDER", "PROCESS", "SINCE", "LEASE ENDS")]
        for h in limit.holders:
            rows.append((f"  {h.lease_id[:8]}", str(h.occupy), h.holder, f"{h.pid}@{h.host}", when(h.acquired),
                         f"in {max(0.0, h.expires - now):.0f} s unless renewed"))
        table(rows)
    print(f"waiting:       {len(limit.waiters)}")
    if limit.waiters:
        rows = [("  TICKET", "SLOTS", "WAITER", "PROCESS", "SINCE")]
        for w in limit.waiters:
            rows.append((f"  {w.ticket}", str(w.occupy), w.holder, f"{w.pid}@{w.host}", when(w.since)))
        table(rows)
    return 0


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


