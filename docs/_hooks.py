"""mkdocs hooks: the pages that the code defines are generated from it, so they cannot drift.

``<!-- generated: settings -->`` becomes the table of ``SETTINGS_SPEC`` (the one list of settings);
``<!-- generated: cli -->`` becomes the ``--help`` of every command that ``build_parser()`` builds.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

SETTINGS = "<!-- generated: settings -->"
CLI = "<!-- generated: cli -->"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if SETTINGS in markdown:
        markdown = markdown.replace(SETTINGS, settings_table())
    if CLI in markdown:
        markdown = markdown.replace(CLI, cli_reference())
    return markdown


def settings_table() -> str:
    from nbflow._core.settings import ENV_PREFIX, SETTINGS_SPEC

    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, (_type, default, help_) in SETTINGS_SPEC.items():
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | `{_shown(default)}` | {help_.replace('|', '&#124;')} |")
    return "\n".join(rows)


def _shown(value: object) -> str:
    """A default as it is written in the environment (``true``, ``10``, ``~/.nbflow``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if not isinstance(value, Path) else value.as_posix()


def cli_reference() -> str:
    from nbflow.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "86"  # argparse wraps help to the terminal; pages get one fixed width
    try:
        parser = build_parser()
        parts = [_help_section("nbflow", parser, 2)]
        for name, sub in _children(parser):
            parts.append(_help_section(f"nbflow {name}", sub, 2))
            for child, subsub in _children(sub):
                parts.append(_help_section(f"nbflow {name} {child}", subsub, 3))
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "\n\n".join(parts)


def _children(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    return [(name, sub) for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for name, sub in action.choices.items()]


def _help_section(title: str, parser: argparse.ArgumentParser, level: int) -> str:
    return f"{'#' * level} `{title}`\n\n```text\n{parser.format_help().rstrip()}\n```"
