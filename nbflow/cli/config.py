"""``nbflow config view``: the settings in force and where each comes from."""

from __future__ import annotations

import argparse
import json
import os

from nbflow._core.settings import ENV_PREFIX, SETTINGS_SPEC, load_settings

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    config = subparsers.add_parser("config", help="Show nbflow's settings.")
    commands = config.add_subparsers(title="config commands", metavar="COMMAND")
    view = commands.add_parser("view", help="Show the settings in force (NBFLOW_* variables and defaults).")
    view.add_argument("--json", action="store_true", help="Print JSON for scripts.")
    view.set_defaults(handler=_view)
    config.set_defaults(handler=lambda args: config.print_help() or 2)


def _view(args: argparse.Namespace) -> int:
    settings = load_settings()
    rows = []
    for name, (_type, _default, help_text) in SETTINGS_SPEC.items():
        variable = ENV_PREFIX + name.upper()
        source = "env" if variable in os.environ else "default"
        rows.append((variable, str(getattr(settings, name)), source, help_text))
    if args.json:
        print(json.dumps({variable: value for variable, value, _s, _h in rows}, indent=2))
        return 0
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    for variable, value, source, _help in rows:
        print(f"{variable:<{width}}  {value:<{vwidth}}  ({source})")
    return 0
