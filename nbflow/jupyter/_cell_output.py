"""The log lines of a flow run started in a cell, printed into that cell.

ipykernel sends what a thread writes to ``sys.stderr`` to the cell named by the thread's *parent
header*; worker threads, which have none of their own, fall back to whichever cell runs at the time
of the write. A ``RunOutput`` remembers the cell that started the run and writes every line under
that cell's header, so lines of task runs on worker threads, or of an async flow still going after
its cell ended, land under the cell that started them.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import IO, Any

from nbflow._core.events import ENGINE_LOGGER, LogEmitted, StateChanged
from nbflow._core.records import TaskRun
from nbflow._engine.logging import format_line

__all__ = ["RunOutput"]

_TRACEBACK = "\nTraceback (most recent call last):"


def _shorten(message: str) -> str:
    """A logged traceback cut to its exception line: the monitor shows the whole of it, and a failing
    cell shows the user's traceback anyway. A thousand failed tasks must not print a thousand traces.

    >>> _shorten("Failed:\\nTraceback (most recent call last):\\n  File...\\nValueError: bad\\n")
    'Failed: ValueError: bad'
    """
    head, _, trace = message.partition(_TRACEBACK)
    last = next((line for line in reversed(trace.splitlines()) if line.strip()), "")
    return f"{head.rstrip().rstrip(':')}: {last.strip()}" if last else head


class RunOutput:
    """Prints the log lines of one flow run tree (the run and its subflows) into its cell.

    With a monitor shown (``quiet=True``), the engine's INFO lines of task runs and subflow runs
    ("Finished in state Completed()", one per task) go only to the monitor; the run's own lines,
    every warning and error, ``log_prints`` output and the user's own log lines are still printed,
    logged tracebacks cut to their exception line (the monitor's task details have them whole).
    """

    __slots__ = ("root_id", "level", "quiet", "_stream", "_parent", "_lock")

    def __init__(self, root_id: str, level: int, quiet: bool, stream: IO[str] | None = None) -> None:
        self.root_id = root_id
        self.level = level
        self.quiet = quiet
        self._stream = stream or sys.stderr
        # The cell's header, read now (on the thread running the cell); None outside ipykernel.
        self._parent: dict[str, Any] | None = getattr(self._stream, "parent_header", None)
        self._lock = threading.Lock()

    def shows(self, event: LogEmitted) -> bool:
        """Whether the cell shows this line (the monitor's state log shows every line regardless)."""
        if event.level < self.level:
            return False
        if not self.quiet or event.level >= logging.WARNING or event.logger != ENGINE_LOGGER:
            return True
        run = event.run
        return run.__class__ is not TaskRun and run.id == self.root_id

    def closing(self, event: StateChanged) -> None:
        """A task run's final state that stands for its closing line (``event.closing_at``)."""
        if not self.quiet and self.level <= logging.INFO:  # quiet: it goes only to the monitor
            self(event.closing_line())

    def __call__(self, event: LogEmitted) -> None:
        if not self.shows(event):
            return
        if self.quiet and _TRACEBACK in event.message:
            event = LogEmitted(event.run, event.level, _shorten(event.message), event.timestamp, event.logger)
        with self._lock:
            line = format_line(event) + "\n"
            stream, parent = self._stream, self._parent
            if parent is None or not hasattr(stream, "set_thread_parent"):
                stream.write(line)
                return
            token = stream.set_thread_parent(parent)  # type: ignore[attr-defined]
            try:
                stream.write(line)
            finally:
                stream.reset_thread_parent(token)  # type: ignore[attr-defined]
