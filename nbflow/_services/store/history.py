"""The ``history`` column of a run's row: every state it went through, as comma-separated JSON arrays.

``["PENDING",null,1718000000000000],["FAILED","TimedOut",1718000001500000,"too slow"]``: the type,
the name (null when it is the type's default), the time in whole microseconds, and the message when
there is one. The writer appends entries with ``history = COALESCE(history || ',', '') || ?``.
"""

from __future__ import annotations

import json
from typing import Any

from nbflow._core.states import FINAL_TYPE_NAMES, StateType

__all__ = ["history_entry", "entry_text", "parse_history", "FINAL_SQL"]

# By type (as stored): its default name (stored as null), and the start of an entry for a state that has it.
_DEFAULT_NAME = {t.value: t.value.title() for t in StateType}
_PLAIN = {t.value: f'["{t.value}",null,' for t in StateType}
FINAL_SQL = "(" + ", ".join(f"'{name}'" for name in sorted(FINAL_TYPE_NAMES)) + ")"
"""The final state types as an SQL list, for ``state_type IN {FINAL_SQL}``."""
_encode = json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":")).encode


def history_entry(state: Any) -> str:
    """One state as stored.

    >>> from nbflow._core.states import Completed, Retrying
    >>> history_entry(Completed(timestamp=1.5))
    '["COMPLETED",null,1500000]'
    >>> history_entry(Retrying("Retry 1/3", timestamp=2.0))
    '["RUNNING","Retrying",2000000,"Retry 1/3"]'
    """
    return entry_text(state.type.value, state.name, state.message, state.timestamp)


def entry_text(type_: str, name: str, message: str | None, timestamp: float) -> str:
    """A state given by its parts (``type_`` as stored), its timestamp in whole microseconds (a
    float's shortest repr costs the writer six times more than an int's)."""
    if message is None and name == _DEFAULT_NAME[type_]:
        return f"{_PLAIN[type_]}{int(timestamp * 1e6)}]"
    return _encode([type_, name, int(timestamp * 1e6), message])


def parse_history(text: str | None) -> list[tuple[str, str, str | None, float]]:
    """``[(type, name, message, timestamp), ...]`` from a ``history`` column, oldest first.

    >>> parse_history('["PENDING",null,1500000],["FAILED","TimedOut",2000000,"too slow"]')
    [('PENDING', 'Pending', None, 1.5), ('FAILED', 'TimedOut', 'too slow', 2.0)]
    """
    if not text:
        return []
    return [
        (entry[0], entry[1] or entry[0].title(), entry[3] if len(entry) > 3 else None, entry[2] / 1e6)
        for entry in json.loads(f"[{text}]")
    ]
