"""Plain-text output shared by the command groups: timestamps and aligned tables."""

from __future__ import annotations

import time

__all__ = ["table", "when"]


def when(timestamp: float | None) -> str:
    """``2026-11-22 15:42:01`` in local time; empty for no timestamp."""
    return "" if timestamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def table(rows: list[tuple[str, ...]]) -> None:
    """Print rows as left-aligned columns (the first row is the header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
