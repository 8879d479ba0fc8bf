"""One kernel's notebook session: its cell flows, and what flow runs started in its cells show.

``%load_ext nbflow`` makes the session. It subscribes to the run events of every runtime in the
process (each attaches itself when built, see ``attach``) and, for each flow run started by a cell
(a ``%%flow`` cell, a decorated flow called in a cell, ``%flow rerun``):

- shows a live monitor under the cell, unless turned off (``%%flow --no-monitor``, ``no_monitor()``,
  ``NBFLOW_MONITOR_ENABLED=false``);
- prints the run's log lines into that cell through a ``RunOutput``, which leaves per-task lines
  to the monitor when one is shown. The runtime's own console is told to skip the run (``claim``),
  so nothing is printed twice and runs not started by a cell print exactly as before.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from nbflow._core.events import Event, LogEmitted, RunCreated, StateChanged
from nbflow._core.records import FlowRun, TaskRun
from nbflow._core.states import State
from nbflow.jupyter._cell_output import RunOutput

if TYPE_CHECKING:
    from nbflow._engine.runtime import Runtime
    from nbflow.jupyter._cell_flow import CellFlow

__all__ = ["NotebookSession", "RecentRun", "attach", "active_session", "no_monitor"]

RECENT_RUNS = 200
"""Flow runs started by cells that the session remembers (``%flow runs`` without a run store)."""

KEEP_FINISHED = 32
"""Finished runs whose stray late lines still go to their cell; older ones go back to the console."""

_active: NotebookSession | None = None  # one kernel, one shell, one session (like get_ipython())


def active_session() -> NotebookSession | None:
    return _active


def attach(runtime: Runtime) -> None:
    """Called by ``nbflow._app.wiring.build_runtime`` when this module is loaded: watch the new runtime's runs."""
    session = _active
    if session is not None:
        session.watch(runtime)


class RecentRun:
    """What the session remembers of a flow run started by a cell: never its parameters or result.

    The live ``FlowRun`` holds both (a DataFrame argument, a model it returned); keeping the last
    runs alive here would keep those in memory for the kernel's lifetime.
    """

    __slots__ = ("id", "name", "flow_name", "rerun_of", "parent_flow_run_id", "state", "start_time", "end_time")

    def __init__(self, run: FlowRun) -> None:
        self.id, self.name, self.flow_name, self.rerun_of = run.id, run.name, run.flow_name, run.rerun_of
        self.parent_flow_run_id = None
        self.state: State | None = None
        self.start_time: float | None = None
        self.end_time: float | None = None

    def update(self, run: FlowRun, state: State) -> None:
        self.state = State(state.type, state.name, state.message, timestamp=state.timestamp)  # without data
        self.start_time, self.end_time = run.start_time, run.end_time

    def __repr__(self) -> str:
        return f"RecentRun(name={self.name!r}, flow_name={self.flow_name!r}, state={self.state!r})"


class _Tree:
    """A flow run started by a cell, and its subflows: where their lines go, whether a monitor shows them."""

    __slots__ = ("record", "output", "runtime", "members", "monitor")

    def __init__(self, record: RecentRun, output: RunOutput | None, runtime: Runtime) -> None:
        self.record = record
        self.output = output
        self.runtime = runtime
        self.members = [record.id]
        self.monitor: Any = None


class NotebookSession:
    """The notebook side of one kernel: registered cell flows, watched runtimes, runs started by cells."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.cell_flows: dict[str, CellFlow] = {}
        """``%%flow`` cells by flow name, for ``%flow rerun NAME``."""
        self.cell_info: Any = None
        """IPython's ``ExecutionInfo`` of the cell running now (its ``cell_id`` names unnamed cell flows)."""
        self.recent: deque[RecentRun] = deque(maxlen=RECENT_RUNS)
        """The latest flow runs started by cells, oldest first."""
        self._trees: dict[str, _Tree] = {}  # flow run id (a root or one of its subflows) -> its tree
        self._finished: deque[str] = deque()
        self._watched: weakref.WeakKeyDictionary[Runtime, Callable[[], None]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        global _active  # the session of this process's shell, found by runtimes as they are built
        _active = self
        self.shell.events.register("pre_run_cell", self._pre_run_cell)
        from nbflow._engine.runtime import default_runtime

        default = default_runtime(create=False)  # built before %load_ext? (never build it here)
        if default is not None:
            self.watch(default)

    def stop(self) -> None:
        global _active
        if _active is self:
            _active = None
        try:
            self.shell.events.unregister("pre_run_cell", self._pre_run_cell)
        except ValueError:
            pass
        for unsubscribe in list(self._watched.values()):
            unsubscribe()
        self._watched.clear()
        with self._lock:
            for tree in {id(t): t for t in self._trees.values()}.values():
                self._release(tree)
            self._trees.clear()

    def watch(self, runtime: Runtime) -> None:
        """Follow the runs of ``runtime`` (idempotent)."""
        with self._lock:
            if runtime in self._watched:
                return
            ref = weakref.ref(runtime)  # the bus must not keep its runtime alive through us

            def subscriber(event: Event) -> None:
                self._on_event(ref, event)

            self._watched[runtime] = runtime.bus.subscribe(subscriber)

    def _pre_run_cell(self, info: Any) -> None:
        self.cell_info = info

    # --- run events (on the engine's threads: quick) ------------------------------------------
    def _on_event(self, ref: weakref.ref[Runtime], event: Event) -> None:
        cls = event.__class__
        if cls is LogEmitted:
            if self._trees:
                run = event.run  # type: ignore[union-attr]
                tree = self._trees.get(run.flow_run_id if run.__class__ is TaskRun else run.id)
                if tree is not None and tree.output is not None:
                    tree.output(event)  # type: ignore[arg-type]
        elif cls is RunCreated:
            run = event.run  # type: ignore[union-attr]
            if run.__class__ is FlowRun:
                runtime = ref()
                if runtime is not None:
                    self._flow_run_created(runtime, run)  # type: ignore[arg-type]
        elif cls is StateChanged:
            run = event.run  # type: ignore[union-attr]
            if event.closing_at is not None and self._trees:  # type: ignore[union-attr]
                tree = self._trees.get(run.flow_run_id if run.__class__ is TaskRun else run.id)
                if tree is not None and tree.output is not None:
                    tree.output.closing(event)  # type: ignore[arg-type]
            if run.__class__ is FlowRun and run.parent_flow_run_id is None:  # type: ignore[union-attr]
                tree = self._trees.get(run.id)
                if tree is not None:
                    tree.record.update(run, event.state)  # type: ignore[arg-type, union-attr]
                    if event.state.is_final():  # type: ignore[union-attr]
                        self._root_finished(tree)

    def _flow_run_created(self, runtime: Runtime, run: FlowRun) -> None:
        parent = run.parent_flow_run_id
        if parent is not None:  # a subflow: it goes where its parent goes
            with self._lock:
                tree = self._trees.get(parent)
                if tree is not None:
                    tree.members.append(run.id)
                    self._trees[run.id] = tree
                    if runtime.console is not None:
                        runtime.console.claim(run.id)
            return
        # Only runs started by the code of a cell: those run on the kernel's main thread. Runs a
        # background thread starts belong to no cell; they print as they would anywhere.
        if threading.current_thread() is not threading.main_thread():
            return
        show = bool(runtime.settings.monitor_enabled) and not _suppressed.get()
        console = runtime.console
        output = RunOutput(run.id, console.level, quiet=show) if console is not None else None
        tree = _Tree(RecentRun(run), output, runtime)
        with self._lock:
            self._trees[run.id] = tree
            self.recent.append(tree.record)
            if console is not None:
                console.claim(run.id)
        if show:
            tree.monitor = _show_monitor(runtime, run)
            if tree.monitor is None and output is not None:
                output.quiet = False  # no monitor after all: the cell shows every line

    def _root_finished(self, tree: _Tree) -> None:
        # Lines can still follow the final state ("Finished in state ...", hook errors), so a run
        # keeps its cell for a while: until KEEP_FINISHED later runs have finished.
        with self._lock:
            self._finished.append(tree.record.id)
            while len(self._finished) > KEEP_FINISHED:
                old = self._trees.get(self._finished.popleft())
                if old is not None:
                    self._release(old)

    def _release(self, tree: _Tree) -> None:
        console = tree.runtime.console
        for run_id in tree.members:
            self._trees.pop(run_id, None)
            if console is not None:
                console.release(run_id)

    # --- lookups ------------------------------------------------------------------------------
    def find_recent(self, run_id_or_prefix: str) -> RecentRun | None:
        """A flow run started by a cell of this kernel, by id or unique id prefix."""
        matches = [r for r in self.recent if r.id.startswith(run_id_or_prefix)]
        return matches[-1] if len({r.id for r in matches}) == 1 else None

    def monitor_of(self, flow_run_id: str) -> Any:
        tree = self._trees.get(flow_run_id)
        return None if tree is None else tree.monitor


# --- the monitor widget (nbflow/jupyter/_widget.py) ---------------------------------------------


_suppressed: contextvars.ContextVar[bool] = contextvars.ContextVar("nbflow_no_monitor", default=False)


@contextlib.contextmanager
def no_monitor() -> Iterator[None]:
    """Flow runs started in this block show no monitor: ``with no_monitor(): etl()``."""
    token = _suppressed.set(True)
    try:
        yield
    finally:
        _suppressed.reset(token)


def _show_monitor(runtime: Runtime, run: FlowRun) -> Any:
    """Show a live monitor of ``run`` under the running cell; None if the widget cannot be shown.

    The one place the notebook session calls the monitor widget. A monitor that fails must not fail
    the run (this runs inside a run event): the run goes on unmonitored, and says why once.
    """
    try:
        from nbflow.jupyter._widget import RunMonitor

        return RunMonitor.attach(runtime.bus, run, show=True)
    except Exception as exc:  # noqa: BLE001 - e.g. anywidget missing, or the front-end bundle not built
        _warn_once(f"nbflow: no run monitor ({type(exc).__name__}: {exc}); the run goes on without one.")
        return None


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        print(message, file=sys.stderr)
