"""The monitor's state log (timestamped transitions and log lines, bounded) and each run's own lines.

The state log is what the panel under the graph shows: the latest ``LOG_LIMIT`` entries, one line
each, numbered so that a keyframe and a delta never show a line twice. A burst of lines between two
messages sends only its last ``WIRE_LOG_LIMIT`` entries and a count of the ones skipped; the run
store keeps them all. Each run also keeps its own recent lines for its detail panel.

Pure: no Jupyter imports. Not thread-safe by itself: ``MonitorModel`` calls it under its lock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from nbflow._core.events import ENGINE_LOGGER, Event, LogEmitted, StateChanged
from nbflow.jupyter._monitor_records import WIRE_TEXT_LIMIT

__all__ = ["LOG_LIMIT", "RUN_LOG_LIMIT", "WIRE_LOG_LIMIT", "QUIET", "BAD", "StateLog"]

LOG_LIMIT = 500
"""State log entries kept (oldest dropped): the monitor shows what goes on; the run store keeps all."""

RUN_LOG_LIMIT = 200
"""Log lines kept per run for the detail panel."""

WIRE_LOG_LIMIT = 60
"""State log entries per live message; a burst beyond that is sent as a count of skipped lines."""

QUIET = frozenset({"PENDING", "SCHEDULED"})
"""State types whose transitions are not worth a state log line."""

BAD = frozenset({"FAILED", "CRASHED", "CANCELLED"})
"""State types shown in red."""

Entry = list[Any]
"""``[number, timestamp, run id, run name, "state" | "log", level, text]`` (protocol.ts: LogEntry)."""


class StateLog:
    """The bounded state log of one monitor, and the recent log lines of each run it shows."""

    def __init__(self, limit: int = LOG_LIMIT) -> None:
        # (number, event): an entry is written out only when a message carries it. Events never
        # change, and a burst of thousands of lines between two messages sends sixty of them.
        self._entries: deque[tuple[int, Event | _Closing] | Entry] = deque(maxlen=limit)
        self._n = 0
        self._new: deque[tuple[int, Event | _Closing] | Entry] = deque(maxlen=WIRE_LOG_LIMIT)  # not sent yet
        self._new_total = 0  # entries not sent yet, the ones ``_new`` could not keep included
        self._run_lines: dict[str, list[tuple[float, int, str]]] = {}

    # --- adding -----------------------------------------------------------------------------------
    def keep_run_lines(self, logs: list[LogEmitted], owns: Callable[[str], bool]) -> None:
        """Keep each run's own lines, warnings and errors for its detail panel.

        The engine's routine lines ("Finished in state ...") are in the state log already.
        """
        for event in logs:
            if event.logger != ENGINE_LOGGER or event.level >= 30:
                run_id = event.run.id
                if owns(run_id):
                    lines = self._run_lines.setdefault(run_id, [])
                    lines.append((event.timestamp, event.level, event.message))
                    if len(lines) > RUN_LOG_LIMIT + RUN_LOG_LIMIT // 2:  # trim in batches: amortised O(1)
                        del lines[: len(lines) - RUN_LOG_LIMIT]

    def add_tail(self, batch: list[Event], classes: list[type], shown: int, owns: Callable[[str], bool]) -> None:
        """Entries for the batch's last lines; earlier lines of a burst are only counted.

        ``shown``: how many entries the batch's events would make (log lines, transitions that are
        not ``QUIET``, and the closing lines that final states stand for), of any flow run on the
        bus; ``owns`` picks this monitor's.
        """
        limit = self._entries.maxlen or LOG_LIMIT
        picked: list[Any] = []
        for i in range(len(batch) - 1, -1, -1):
            cls = classes[i]
            if cls is LogEmitted or (cls is StateChanged and batch[i].state.type not in QUIET):  # type: ignore[union-attr]
                event = batch[i]
                if owns(event.run.id):  # type: ignore[union-attr]
                    if cls is StateChanged and event.closing_at is not None:  # type: ignore[union-attr]
                        picked.append(_Closing(event))  # written out (a state's repr) only if sent
                    picked.append(event)
                    if len(picked) >= limit:
                        break
        picked.reverse()
        first = self._n + shown - len(picked) + 1
        numbered = list(zip(range(first, first + len(picked)), picked))
        self._entries.extend(numbered)
        self._new.extend(numbered)
        self._n += shown
        self._new_total += shown

    def compact(self) -> None:
        """Write out the entries kept: their events hold live run records (the run has ended)."""
        self._entries = deque(map(_written, self._entries), maxlen=self._entries.maxlen)
        self._new = deque(map(_written, self._new), maxlen=self._new.maxlen)

    # --- reading ----------------------------------------------------------------------------------
    @property
    def unsent(self) -> int:
        """Entries added since the last take, skipped ones included."""
        return self._new_total

    def take_new(self) -> tuple[list[Entry], int]:
        """The entries added since the last take (at most ``WIRE_LOG_LIMIT``) and how many were skipped."""
        entries, total = list(map(_written, self._new)), self._new_total
        self._new.clear()
        self._new_total = 0
        return entries, total - len(entries)

    def take_latest(self, count: int) -> tuple[list[Entry], int]:
        """The latest ``count`` entries, for a full picture; also counts as a take of the new ones.

        Returns them with the number of new entries they cannot show (skipped).
        """
        entries = list(map(_written, list(self._entries)[-count:])) if count else []
        skipped = max(0, self._new_total - len(entries))
        self._new.clear()
        self._new_total = 0
        return entries, skipped

    def run_lines(self, run_id: str, count: int) -> list[list[Any]]:
        """The latest ``count`` lines of one run: ``[timestamp, level, message]``."""
        return [list(line) for line in self._run_lines.get(run_id, [])[-count:]]


class _Closing:
    """The closing line a final state stands for (``StateChanged.closing_at``), in the state log."""

    __slots__ = ("state_changed",)

    def __init__(self, state_changed: StateChanged) -> None:
        self.state_changed = state_changed


def _written(item: tuple[int, Event | _Closing] | Entry) -> Entry:
    """One line of the state log as the front-end takes it (``item``: a number and an event, or an
    entry written out already)."""
    if item.__class__ is list:
        return item  # type: ignore[return-value]
    n, event = item
    if event.__class__ is _Closing:
        event = event.state_changed.closing_line()  # type: ignore[union-attr]
    run = event.run
    if event.__class__ is StateChanged:
        state = event.state
        text = f"→ {state.name}: {state.message}" if state.message else f"→ {state.name}"
        timestamp, kind, level = state.timestamp, "state", 40 if state.type in BAD else 20
    else:
        text, timestamp, kind, level = event.message, event.timestamp, "log", event.level
    cut = text.find("\n")  # one line per entry: a traceback in a log line is read in the detail panel
    if cut != -1:
        text = text[:cut] + " …"
    if len(text) > WIRE_TEXT_LIMIT:
        text = text[: WIRE_TEXT_LIMIT - 1] + "…"
    return [n, round(timestamp, 3), run.id, run.name, kind, level, text]
