"""Run events and the bus that carries them from the engine to its subscribers.

The engine only emits; the console logger, the run store, the result cache writer and the widget
monitor subscribe. Events are read-only by convention (not frozen dataclasses: a frozen one costs
three times as much to build, and the engine builds three per task run). Subscribers run
synchronously in the emitting thread, so they must be quick: anything slow (disk, network, widget
messages) is queued and done elsewhere.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from nbflow._core.records import FlowRun, TaskRun
from nbflow._core.states import State

ENGINE_LOGGER = "nbflow.engine"
"""The logger name of the engine's own lines (``Created flow run ...``, ``Finished in state ...``)."""

__all__ = [
    "ENGINE_LOGGER", "closing_text", "RunCreated", "StateChanged", "LogEmitted", "EdgesAdded", "FlowRunFinished",
    "Event", "EventBus", "Subscriber",
]


@dataclass(slots=True)
class RunCreated:
    """A flow or task run exists, in its first state ``state`` (``Pending``): no ``StateChanged``
    announces that one. ``run`` is live: read what you need now, it changes later. (``state`` is None
    only where a monitor is handed a run it did not see start.)"""

    run: FlowRun | TaskRun
    state: State | None = None


@dataclass(slots=True)
class StateChanged:
    """``run`` entered ``state`` (already set on ``run.state``). ``state`` itself never changes.

    ``closing_at``: set on a final state that is also the run's closing line, ``Finished in state
    ...``, written at that time (after the lines the engine wrote since the outcome, such as a
    failure's traceback); that line is then not emitted as a ``LogEmitted`` of its own: subscribers
    that print or keep log lines take it from ``closing_line()``. A task run without hooks ends in
    one event instead of two (with hooks, their lines come first and the closing line follows as usual).
    """

    run: FlowRun | TaskRun
    state: State
    closing_at: float | None = None

    def closing_line(self) -> LogEmitted:
        """The closing log line this final state stands for (``closing_at`` is set)."""
        return LogEmitted(self.run, logging.INFO, closing_text(self.state), self.closing_at or 0.0, ENGINE_LOGGER)


@dataclass(slots=True)
class LogEmitted:
    """A log line of a run (engine lines, ``get_run_logger()`` and ``log_prints`` alike)."""

    run: FlowRun | TaskRun
    level: int
    message: str
    timestamp: float
    logger: str


@dataclass(slots=True)
class EdgesAdded:
    """Task run ``downstream_id`` consumes the results of the task runs ``upstream_ids`` (same flow
    run, in the order found): one event per consuming task run, however many inputs it reduces."""

    flow_run_id: str
    upstream_ids: tuple[str, ...]
    downstream_id: str


@dataclass(slots=True)
class FlowRunFinished:
    """The last event of a flow run: its final state, hooks and closing log line came before.

    Subscribers that buffer (the run store, a monitor) flush on it.
    """

    run: FlowRun


def closing_text(state: State) -> str:
    """A run's last log line, as Prefect writes it."""
    return f"Finished in state {state!r}"


Event = RunCreated | StateChanged | LogEmitted | EdgesAdded | FlowRunFinished
Subscriber = Callable[[Event], None]


class EventBus:
    """Fan-out of run events to subscribers, safe to use from many threads.

    The subscriber list is replaced, never mutated, so ``emit`` takes no lock. A subscriber that
    raises is reported once on stderr and never breaks the run that emitted.
    """

    __slots__ = ("_subscribers", "_lock", "_reported")

    def __init__(self, subscribers: tuple[Subscriber, ...] = ()) -> None:
        self._subscribers: tuple[Subscriber, ...] = tuple(subscribers)
        self._lock = threading.Lock()
        self._reported: set[int] = set()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add ``subscriber``; returns a function that removes it again."""
        with self._lock:
            self._subscribers = (*self._subscribers, subscriber)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not subscriber)

        return unsubscribe

    @property
    def subscribers(self) -> tuple[Subscriber, ...]:
        return self._subscribers

    def emit(self, event: Event) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception as exc:  # a broken subscriber must not change any run's outcome
                if id(subscriber) not in self._reported:
                    self._reported.add(id(subscriber))
                    print(f"nbflow: run event subscriber {subscriber!r} failed: {exc!r}", file=sys.stderr)
