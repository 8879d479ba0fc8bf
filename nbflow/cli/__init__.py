"""The ``nbflow`` command line. Each command group lives in its own module with a ``register``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from nbflow.exceptions import NbflowError, UsageError

__all__ = ["main", "CliError"]

# Command group modules, each with `register(subparsers)`; a group's handlers are set with
# `parser.set_defaults(handler=fn)` and get the parsed `args`, returning an exit status or None.
_GROUPS = (
    "nbflow.cli.config",
    "nbflow.cli.demo",
    "nbflow.cli.cache",
    "nbflow.cli.concurrency",
    "nbflow.cli.flow_runs",
    "nbflow.cli.rerun",  # adds `rerun` to `flow-run`: keep it after the module that defines `flow-run`
)


CliError = UsageError
"""Bad input on the command line: printed as one line, exit status 2, no traceback (the CLI's old name)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nbflow", description="Orchestrate Python work from Jupyter: flow runs, their history, the result cache, concurrency limits."
    )
    from nbflow import __version__

    parser.add_argument("--version", action="version", version=f"nbflow {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in _GROUPS:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except NbflowError as exc:
        print(f"nbflow: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `nbflow ... | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
