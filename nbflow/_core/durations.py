"""Durations for people: parsing ``"7d"`` on the way in, printing ``"2m 05s"`` on the way out."""

from __future__ import annotations

import math
import re
from datetime import timedelta

from nbflow.exceptions import InvalidArgumentError

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = r"(\d+(?:\.\d+)?)\s*(ms|[smhdw])"
# One part ("90s") or several ("1h 02m", "2m 05s": what format_duration prints, pasted back).
_DURATION = re.compile(rf"^\s*(?:{_PART}\s*)+$", re.IGNORECASE)
_PARTS = re.compile(_PART, re.IGNORECASE)


def parse_duration(value: timedelta | float | str) -> float:
    """Seconds in ``value``: a timedelta, a number of seconds, or ``"90s"``, ``"30m"``, ``"12h"``, ``"7d"``, ``"2w"``.

    Parts add up, so what ``format_duration`` prints reads back: ``"1h 02m"``, ``"2m 05s"``, ``"12 ms"``.

    >>> parse_duration("36h")
    129600.0
    >>> parse_duration("2m 05s")
    125.0
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value)
        if _DURATION.match(text) is None:
            raise InvalidArgumentError(f"{value!r} is not a duration: write a number and a unit, e.g. 90s, 30m, 12h, 7d or 2w")
        seconds = sum(float(number) * _UNITS[unit.lower()] for number, unit in _PARTS.findall(text))
    if not math.isfinite(seconds):
        raise InvalidArgumentError(f"a duration must be a finite number of seconds, got {value!r}")
    if seconds < 0:
        raise InvalidArgumentError(f"a duration must not be negative, got {value!r}")
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
