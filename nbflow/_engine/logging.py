"""Run logging: ``get_run_logger()``, engine log lines, ``log_prints``, and the console subscriber.

Every log line of a run becomes a ``LogEmitted`` event (but a task run's closing line, which its final
``StateChanged`` stands for); the console prints them, the store keeps them.
User lines go through the standard ``logging`` module (so handlers and filters work); engine lines
skip it, because they are on the hot path of every task.
"""

from __future__ import annotations

import builtins
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import IO, Any

from nbflow._core.events import ENGINE_LOGGER, Event, EventBus, LogEmitted, StateChanged
from nbflow._core.forkguard import ForkGuard
from nbflow._core.records import FlowRun, TaskRun
from nbflow._core.threads import renew_after_fork
from nbflow._engine.context import RootContext, TaskRunContext, current
from nbflow.exceptions import MissingContextError

__all__ = ["get_run_logger", "log", "ConsoleLogger", "format_line", "format_user_traceback", "print_redirect"]

_LOGGER = logging.getLogger("nbflow")
_LOGGER.propagate = False  # the console subscriber prints run lines; don't print them twice
_LOGGER.setLevel(logging.DEBUG)  # each run logger filters by its own runtime's level


class _BusHandler(logging.Handler):
    """Turns records of run loggers into ``LogEmitted`` events on the run's bus."""

    def emit(self, record: logging.LogRecord) -> None:
        run = getattr(record, "nbflow_run", None)
        bus = getattr(record, "nbflow_bus", None)
        if run is None or bus is None:
            return
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{logging.Formatter().formatException(record.exc_info)}"
        bus.emit(LogEmitted(run, record.levelno, message, record.created, record.name))


_LOGGER.addHandler(_BusHandler())


class RunLogger(logging.LoggerAdapter):
    """A logger bound to one run: ``logger.info("...")`` lands in that run's log.

    Its threshold is the run's runtime's level (``NBFLOW_LOGGING_LEVEL``), held here rather than set
    on the shared ``logging`` logger, so runtimes with different levels never race.
    """

    def __init__(self, logger: logging.Logger, extra: dict[str, Any], level: int) -> None:
        super().__init__(logger, extra)
        self.level = level

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        return level >= self.level and self.logger.isEnabledFor(level)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(kwargs.get("extra") or {}), **self.extra}  # type: ignore[dict-item]
        return msg, kwargs


def get_run_logger() -> RunLogger:
    """The logger of the flow or task run the caller is in.

    >>> from nbflow import flow, get_run_logger
    >>> @flow
    ... def hello():
    ...     get_run_logger().info("hi")
    """
    ctx = current.get()
    if ctx is None or ctx.__class__ is RootContext:
        raise MissingContextError(
            "get_run_logger() works only inside a flow or task run; use logging.getLogger(...) elsewhere."
        )
    if ctx.__class__ is TaskRunContext:
        run: FlowRun | TaskRun = ctx.task_run
        name = "nbflow.task_runs"
    else:
        run = ctx.flow_run  # type: ignore[union-attr]
        name = "nbflow.flow_runs"
    return RunLogger(logging.getLogger(name), {"nbflow_run": run, "nbflow_bus": ctx.runtime.bus}, ctx.runtime.log_level)


def log(bus: EventBus, run: FlowRun | TaskRun, level: int, message: str, timestamp: float) -> None:
    """An engine line (``Finished in state ...``): straight onto the bus, without ``logging``."""
    bus.emit(LogEmitted(run, level, message, timestamp, ENGINE_LOGGER))


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def format_user_traceback(error: BaseException) -> str:
    """The traceback of ``error`` as the user wrote it: the engine's own leading frames left out."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb))


# --- console -------------------------------------------------------------------------------

_LEVEL_NAMES = {level: f"{logging.getLevelName(level):<7}" for level in (10, 20, 30, 40, 50)}


class _ClockText:
    """``15:42:01.234`` for a timestamp; the ``HH:MM:SS`` part is reused within a second."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self, timestamp: float) -> str:
        second = int(timestamp)
        if second != self._second:
            self._second, self._text = second, time.strftime("%H:%M:%S", time.localtime(second))
        return f"{self._text}.{int((timestamp - second) * 1000):03d}"


def format_line(event: LogEmitted, clock_text: Callable[[float], str] | None = None) -> str:
    """``15:42:01.234 | INFO    | Flow run 'nimble-falcon' - Finished in state Completed()``."""
    return (clock_text or _ClockText())(event.timestamp) + _line_body(event)


def _line_body(event: LogEmitted) -> str:
    """A console line after its time: `` | INFO    | Flow run 'nimble-falcon' - ...``."""
    run = event.run
    kind = "Task run" if run.__class__ is TaskRun else "Flow run"
    level = _LEVEL_NAMES.get(event.level) or f"{logging.getLevelName(event.level):<7}"
    return f" | {level} | {kind} '{run.name}' - {event.message}"


class ConsoleLogger:
    """Subscriber that prints run log lines at or above ``level``.

    ``stream`` is looked up at each write (default: the current ``sys.stderr``), so a notebook's
    redirected streams are honoured. ``task_lines=False`` keeps per-task INFO lines off the console
    (the notebook monitor shows them instead); warnings and errors are always printed.
    """

    def __init__(self, level: int = logging.INFO, stream: IO[str] | None = None, task_lines: bool = True) -> None:
        self.level = level
        self.task_lines = task_lines
        self._stream = stream
        # A fork waits for a line being written (a child would inherit the lock, or stderr's own
        # buffer lock, held by a thread it does not have, and hang on its first line).
        self._guard = ForkGuard(innermost=True)
        self._clock_text = _ClockText()
        self._last = 0.0  # the time shown on the last line written
        self._claimed: set[str] = set()

    def claim(self, flow_run_id: str) -> None:
        """Leave the lines of this flow run to another printer (a notebook prints a cell's runs in that cell)."""
        self._claimed.add(flow_run_id)

    def release(self, flow_run_id: str) -> None:
        self._claimed.discard(flow_run_id)

    def __call__(self, event: Event) -> None:
        cls = event.__class__
        if cls is LogEmitted:
            level = event.level  # type: ignore[union-attr]
        elif cls is StateChanged and event.closing_at is not None:  # type: ignore[union-attr]
            level = logging.INFO  # the run's closing line
        else:
            return
        if level < self.level:
            return
        run = event.run  # type: ignore[union-attr]
        if self._claimed and (run.flow_run_id if run.__class__ is TaskRun else run.id) in self._claimed:
            return
        if not self.task_lines and level < logging.WARNING and run.__class__ is TaskRun:
            return
        if cls is StateChanged:
            event = event.closing_line()  # type: ignore[union-attr]
        body = _line_body(event) + "\n"  # type: ignore[arg-type]  # formatted outside the lock
        # Lines reach us in the order their threads get here, not the order they were dated: a
        # thread preempted between dating its line and writing it would print an earlier time
        # after a later one. Under the lock, a late line shows the time of the line before it:
        # still within the span between its making and its writing, and times never go back.
        timestamp = event.timestamp  # type: ignore[union-attr]
        with self._guard.lock:
            if timestamp < self._last:
                timestamp = self._last
            self._last = timestamp
            (self._stream or sys.stderr).write(self._clock_text(timestamp) + body)


# --- log_prints ----------------------------------------------------------------------------

_original_print = builtins.print
_print_users = 0
_print_lock = threading.Lock()
renew_after_fork(globals(), "_print_lock")  # a fork while another thread holds it


def _routing_print(*args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False) -> None:
    ctx = current.get()
    if file is None and ctx is not None and getattr(ctx, "log_prints", False):
        text = (sep if sep is not None else " ").join(str(a) for a in args)
        get_run_logger().info(text)
        return
    _original_print(*args, sep=sep, end=end, file=file, flush=flush)


class print_redirect:
    """While any ``log_prints`` run is active, ``print()`` in such a run goes to its logger.

    ``builtins.print`` is swapped for a router that checks the *current run context*, so prints of
    other threads and of runs without ``log_prints`` are untouched. The swap is reference-counted.
    """

    def __enter__(self) -> None:
        global _print_users
        with _print_lock:
            _print_users += 1
            if _print_users == 1:
                builtins.print = _routing_print

    def __exit__(self, *exc: object) -> None:
        global _print_users
        with _print_lock:
            _print_users -= 1
            if _print_users == 0 and builtins.print is _routing_print:
                builtins.print = _original_print
