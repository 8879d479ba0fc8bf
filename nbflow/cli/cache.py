"""``nbflow cache ls / stats / clear``: the persisted task results in ``$NBFLOW_HOME/cache``."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict

from nbflow.cli import CliError
from nbflow.cli._format import when

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    cache = subparsers.add_parser("cache", help="List, summarise or clear persisted task results.")
    commands = cache.add_subparsers(title="cache commands", metavar="COMMAND")

    ls = commands.add_parser("ls", help="List persisted results, oldest first.")
    ls.add_argument("--task", metavar="NAME", help="Only results of the task with this name.")
    ls.add_argument("--json", action="store_true", help="Print JSON for scripts.")
    ls.set_defaults(handler=_ls)

    stats = commands.add_parser("stats", help="Entries, size on disk and totals per task.")
    stats.add_argument("--json", action="store_true", help="Print JSON for scripts.")
    stats.set_defaults(handler=_stats)

    clear = commands.add_parser("clear", help="Delete persisted results (all of them, unless filtered).")
    clear.add_argument("--task", metavar="NAME", help="Only results of the task with this name.")
    clear.add_argument("--older-than", metavar="D", help="Only results stored longer ago than D: 30m, 12h, 7d, 2w.")
    clear.set_defaults(handler=_clear)
    cache.set_defaults(handler=lambda args: cache.print_help() or 2)


def _ls(args: argparse.Namespace) -> int:
    import nbflow.cache

    entries = nbflow.cache.entries(args.task)
    if args.json:
        print(json.dumps([asdict(e) for e in entries], indent=2))
        return 0
    if not entries:
        print("No cached results" + (f" for task {args.task!r}." if args.task else "."))
        return 0
    now = time.time()
    rows = [("TASK", "KEY", "SIZE", "STORED", "LAST USED", "EXPIRES")]
    for e in entries:
        expires = "never" if e.expires is None else ("expired" if e.expires <= now else when(e.expires))
        used = when(e.accessed) if e.accessed else "-"
        rows.append((e.task or "?", e.key[:12], _size(e.size), when(e.stored), used, expires))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def _stats(args: argparse.Namespace) -> int:
    import nbflow.cache

    s = nbflow.cache.stats()
    if args.json:
        print(json.dumps(asdict(s), indent=2))
        return 0
    print(f"Directory:  {s.directory}")
    print(f"Entries:    {s.entries}" + (f" ({s.expired} expired, removed on the next write)" if s.expired else ""))
    print(f"Size:       {_size(s.volume)} of {_size(s.size_limit)} (least recently used go first)")
    if s.by_task:
        width = max(len(name) for name in s.by_task)
        print()
        print(f"{'TASK'.ljust(width)}  ENTRIES  SIZE")
        for name, (count, size) in sorted(s.by_task.items(), key=lambda kv: -kv[1][1]):
            print(f"{name.ljust(width)}  {str(count).rjust(7)}  {_size(size)}")
    return 0


def _clear(args: argparse.Namespace) -> int:
    import nbflow.cache

    older_than = None
    if args.older_than is not None:
        try:
            older_than = nbflow.cache.parse_duration(args.older_than)
        except ValueError as exc:
            raise CliError(f"--older-than: {exc}") from None
    removed = nbflow.cache.clear(args.task, older_than)
    what = f" of task {args.task!r}" if args.task else ""
    age = f" stored more than {args.older_than} ago" if args.older_than else ""
    print(f"Removed {removed} cached result{'s' if removed != 1 else ''}{what}{age}.")
    return 0


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"

