"""Durations for people: parsing ``"7d"`` on the way in, printing ``"2m 05s"`` on the way out."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)


def parse_duration(value: timedelta | float | str) -> float:
    """Seconds in ``value``: a timedelta, a number of seconds, or ``"90s"``, ``"30m"``, ``"12h"``, ``"7d"``, ``"2w"``.

    >>> parse_duration("36h")
    129600.0
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"{value!r} is not a duration: write a number and a unit, e.g. 90s, 30m, 12h, 7d or 2w")
        seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if seconds < 0:
        raise ValueError(f"a duration must not be negative, got {value!r}")
    return seconds


def format_duration(seconds: float | None) -> str:
    """``"12 ms"``, ``"3.4 s"``, ``"2m 05s"``, ``"1h 02m"``; empty for no duration.

    >>> format_duration(125)
    '2m 05s'
    """
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"
