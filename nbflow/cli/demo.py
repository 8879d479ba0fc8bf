"""``nbflow demo``: run a small pipeline, then rerun it from the cache."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo", help="Run a demo pipeline (parallel tasks, retries, a subflow), then rerun it from the cache."
    )
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from nbflow.cli._demo import main

    return main()
