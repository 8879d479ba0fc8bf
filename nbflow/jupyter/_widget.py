"""``RunMonitor``: the live run monitor widget shown under a notebook cell.

Events reach ``MonitorModel`` on the engine's threads; a timer thread per live monitor sends what
changed as one custom message at most every ``interval`` seconds (a delta, or every few seconds a
keyframe that lets a reloaded page catch up). When the run ends, the final picture goes into the
synced ``snapshot`` trait (so a notebook saved with widget state shows it) and into a static HTML
output next to the widget (for nbconvert, GitHub and notebooks reopened without widget state). The
front-end reaches the browser once per kernel, not once per monitor (see _assets.py).

Imported lazily (it imports IPython, ipywidgets and anywidget); ``import nbflow`` never loads it.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import anywidget
import traitlets
from ipywidgets import widget_serialization

from nbflow._core.events import Event, EventBus
from nbflow._core.records import FlowRun
from nbflow._core.threads import start_thread
from nbflow.exceptions import ArgumentTypeError, NbflowError
from nbflow.jupyter._assets import MonitorAssets, check_bundle, graphviz_source, loader_source, shared_assets
from nbflow.jupyter._monitor_model import WIRE_LOG_LIMIT, MonitorModel
from nbflow.jupyter._static import PALETTE, render_html, render_text

__all__ = ["RunMonitor", "monitor"]

_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
FINAL_LOG_ENTRIES = 200
"""State log entries kept in the final picture (it is saved in the notebook with the widget state)."""

_graphviz_sent = False  # pushed to the front-end with the first monitor of this kernel process


class RunMonitor(anywidget.AnyWidget):  # type: ignore[misc]
    """Live monitor of one flow run: header, counts, task graph, state log and task details.

    Build one with ``RunMonitor.attach(bus, flow_run)`` before the run starts (it then misses
    nothing), or ``RunMonitor.from_events(flow_run_id, events)`` for a recorded run.
    """

    _esm = loader_source()  # the front-end itself comes once per kernel, with ``assets`` (see _assets.py)
    assets = traitlets.Instance(MonitorAssets, allow_none=True).tag(sync=True, **widget_serialization)
    _uid = traitlets.Unicode("").tag(sync=True)
    snapshot = traitlets.Dict().tag(sync=True)
    """The last full picture sent as state: at creation, and the final one once the run ended."""
    palette = traitlets.Dict().tag(sync=True)

    def __init__(
        self,
        model: MonitorModel,
        *,
        interval: float = 0.2,
        keyframe_every: float = 3.0,
        finish_grace: float = 0.5,
    ) -> None:
        check_bundle()
        self._model = model
        finished = model.is_finished()
        super().__init__(
            assets=shared_assets(),
            _uid=uuid.uuid4().hex,
            snapshot=model.snapshot(final=finished, log_entries=WIRE_LOG_LIMIT),
            palette=PALETTE,
        )
        self.interval = interval
        self.keyframe_every = keyframe_every
        self.finish_grace = finish_grace
        self.messages_sent = 0
        """Custom messages and final state updates sent to the front-end."""
        self._flush_lock = threading.Lock()
        self._last_keyframe = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._finished = False
        self._finished_at: float | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._static_id = f"nbflow-monitor-{self._uid}"
        self._shown = False
        self._parent: dict[str, Any] | None = None  # the header of the cell that showed the monitor
        self._cell_ended = True  # that cell ended: later outputs go with whatever cell runs then
        self._post_execute: Callable[[], None] | None = None
        self._published = threading.Event()  # the final picture is out (see ``wait``)
        self.on_msg(self._on_front_end_message)
        _monitors[model.flow_run_id] = self

    # --- building ---------------------------------------------------------------------------
    @classmethod
    def attach(cls, bus: EventBus, flow_run: FlowRun, *, show: bool = True, **kwargs: Any) -> RunMonitor:
        """A live monitor of ``flow_run``, fed by ``bus``; attach before the run starts to miss nothing.

        >>> monitor = RunMonitor.attach(runtime.bus, flow_run)   # doctest: +SKIP
        >>> flow.run(parameters, flow_run=flow_run)              # doctest: +SKIP
        >>> monitor.finish()                                     # doctest: +SKIP
        """
        model = MonitorModel(flow_run.id)
        model.seed(flow_run)
        monitor = cls(model, **kwargs)
        monitor._unsubscribe = bus.subscribe(model.feed)  # a deque append: nothing else on the hot path
        if show:
            monitor.show()
        monitor.start()
        monitor._watch_cell()
        return monitor

    @classmethod
    def from_events(cls, flow_run_id: str, events: Iterable[Event], *, show: bool = False, **kwargs: Any) -> RunMonitor:
        """A monitor of a run already recorded (e.g. read back from the run store)."""
        monitor = cls(MonitorModel.from_events(flow_run_id, events), **kwargs)
        if show:
            monitor.show()
        monitor.finish()
        return monitor

    @classmethod
    def from_model(cls, model: MonitorModel, *, show: bool = False, live: bool = False,
                   poll: Callable[[], None] | None = None, poll_every: float = 1.0, **kwargs: Any) -> RunMonitor:
        """A monitor of a model fed by someone else. ``live``: keep sending updates until the run
        ends, calling ``poll()`` (e.g. read the run store) every ``poll_every`` seconds."""
        monitor = cls(model, **kwargs)
        monitor._poll, monitor.poll_every = poll, poll_every
        if show:
            monitor.show()
        if live and not model.is_finished():
            monitor.start()
        else:
            monitor.finish()
        return monitor

    @property
    def model(self) -> MonitorModel:
        return self._model

    @property
    def finished(self) -> bool:
        """True once the run ended and the monitor stopped (its final picture is on its way)."""
        return self._finished

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ended, the final picture went out (widget state and static summary) and
        the monitor let go of the run's results.

        For a run that ends in the background: a notebook executed by nbconvert or papermill keeps only
        what arrives while one of its cells runs, so end such a notebook with ``monitor.wait()``.
        Returns False if ``timeout`` seconds passed first.

        >>> shown = nbflow.monitor("nimble-falcon")   # doctest: +SKIP
        >>> shown.wait()                               # doctest: +SKIP
        True
        """
        return self._published.wait(timeout)

    # --- showing ----------------------------------------------------------------------------
    def show(self) -> None:
        """Display the widget and, next to it, the static summary that stands in where widgets can't run."""
        from IPython import get_ipython
        from IPython.display import display

        ip = get_ipython()
        pub = getattr(ip, "display_pub", None)
        self._parent = dict(getattr(pub, "parent_header", None) or {}) or None
        display(self._widget_bundle(), raw=True)
        display(self._static_bundle(), raw=True, display_id=self._static_id)
        self._shown = True
        self._watch_cell()
        global _graphviz_sent  # once per kernel process; a page loaded later asks for it ("graphviz?")
        if not _graphviz_sent:
            _graphviz_sent = True
            self._send_graphviz()

    def _widget_bundle(self) -> dict[str, Any]:
        return {
            _WIDGET_MIME: {"version_major": 2, "version_minor": 1, "model_id": self.model_id},
            "text/plain": repr(self),
        }

    def _static_bundle(self) -> dict[str, Any]:
        snap = self.snapshot
        return {"text/html": render_html(snap), "text/plain": render_text(snap)}

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return self._widget_bundle()

    def __repr__(self) -> str:
        run = self.snapshot.get("run") or {}
        return f"RunMonitor(flow run {run.get('name')!r} of flow {run.get('flow')!r})"

    # --- live updates -----------------------------------------------------------------------
    def start(self) -> None:
        """Start the timer thread that sends coalesced updates (idempotent)."""
        if self._thread is None and not self._finished:
            self._thread = threading.Thread(target=self._run_timer, name="nbflow-monitor", daemon=True)
            start_thread(self._thread)

    def _watch_cell(self) -> None:
        """Note when the running cell ends (a one-shot ``post_execute`` hook), and finish then if the
        run has ended: its final picture is then part of the cell's own output.

        A run still going is left to the timer thread, which publishes its end with whatever cell runs
        at that moment (see ``_update_static``).
        """
        if threading.current_thread() is not threading.main_thread():
            return
        from IPython import get_ipython

        ip = get_ipython()
        if ip is None:
            return
        self._cell_ended = False
        if self._post_execute is not None:  # shown again in the same cell
            return

        def post_execute() -> None:
            with contextlib.suppress(ValueError):
                ip.events.unregister("post_execute", post_execute)
            self._post_execute = None
            self._cell_ended = True
            if self._model.is_finished():
                self.finish()

        self._post_execute = post_execute
        ip.events.register("post_execute", post_execute)

    _poll: Callable[[], None] | None = None
    poll_every = 1.0

    def _run_timer(self) -> None:
        next_poll = 0.0
        while not self._stop.wait(self.interval):
            try:
                if self._poll is not None and time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self.poll_every
                    self._poll()
                self.flush()
                ended = self._finished_at
                if ended is None and self._model.is_finished():
                    ended = self._finished_at = time.monotonic()
                if ended is not None and time.monotonic() - ended >= self.finish_grace:
                    self.finish()  # late log lines (hooks, "Finished in state") are in by now
                    return
            except Exception as exc:  # noqa: BLE001 - a monitor must never take the kernel down
                import sys

                print(f"nbflow monitor stopped: {exc!r}", file=sys.stderr)
                return

    def flush(self) -> bool:
        """Send what changed since the last message, if anything; returns whether a message went out."""
        with self._flush_lock:
            if self._finished:
                return False
            message = self._model.take_delta()
            now = time.monotonic()
            if message is not None and now - self._last_keyframe >= self.keyframe_every:
                # Now and then the whole picture instead: a page reloaded mid-run catches up.
                skipped = message.get("skipped", 0)
                message = self._model.snapshot(log_entries=WIRE_LOG_LIMIT)
                message["skipped"] += skipped
                self._last_keyframe = now
            if message is None:
                return False
            self._send_custom(message)
            return True

    def finish(self) -> None:
        """Stop live updates and publish the final picture (trait + static output). Idempotent."""
        with self._flush_lock:
            if self._finished:
                return
            self._finished = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        try:
            # Read from the live run records: the same picture as from their result-less copies, and
            # the cell does not wait while 10,000 of them are copied (see ``_let_go``).
            self.snapshot = self._model.snapshot(final=True, log_entries=FINAL_LOG_ENTRIES)
            self.messages_sent += 1
            if self._shown:
                self._update_static()
        finally:
            self._let_go()

    def _let_go(self) -> None:
        """Swap the live run records, which hold results and parameters, for copies without them; then
        ``wait`` returns (also if that failed: nothing more will come, ``wait`` must not hang).

        At the end of a cell (the main thread) the copy is made a timer tick later on a thread of its
        own, once the cell's reply is out: copying 10,000 task runs takes ~20 ms the cell need not wait
        for. Elsewhere (the timer thread: a run that ended in the background) it is made at once.
        """
        def compact() -> None:
            try:
                self._model.compact()
            finally:
                self._published.set()

        if threading.current_thread() is threading.main_thread():
            later = threading.Timer(self.interval, compact)
            later.name, later.daemon = "nbflow-monitor-let-go", True
            start_thread(later)
        else:
            compact()

    def close(self) -> None:
        if hasattr(self, "_flush_lock"):  # also called by __del__ of a half-built widget
            self.finish()
        super().close()

    def _update_static(self) -> None:
        from IPython import get_ipython
        from IPython.display import update_display

        ip = get_ipython()
        pub = getattr(ip, "display_pub", None)
        token = None
        # From the timer thread while the cell that showed the monitor still runs, send the update as
        # part of that cell. Once it ended, the update goes with whatever cell runs now: JupyterLab,
        # Notebook 7 and VS Code apply an update by its display id whatever cell it comes with, and
        # nbclient (nbconvert, papermill) reads only the messages of the cell it is running.
        if (self._parent and not self._cell_ended and threading.current_thread() is not threading.main_thread()
                and hasattr(pub, "set_thread_parent")):
            token = pub.set_thread_parent(self._parent)  # type: ignore[union-attr]
        try:
            update_display(self._static_bundle(), raw=True, display_id=self._static_id)
        finally:
            if token is not None:
                pub.reset_thread_parent(token)  # type: ignore[union-attr]

    def _send_custom(self, message: dict[str, Any]) -> None:
        if self.comm is None:
            return
        self.send(message)
        self.messages_sent += 1

    def _send_graphviz(self) -> None:
        source = graphviz_source()
        if source is not None and self.comm is not None:
            self.send({"kind": "graphviz", "source": source})

    def _on_front_end_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("kind")
        if kind == "detail" and isinstance(content.get("id"), str):
            self._send_custom({"kind": "detail", "id": content["id"], "detail": self._model.detail(content["id"])})
        elif kind == "graphviz?":
            self._send_graphviz()


# --- showing a monitor by hand (the notebook session shows one for each run a cell starts) -----

_monitors: weakref.WeakValueDictionary[str, RunMonitor] = weakref.WeakValueDictionary()


def monitor(run: FlowRun | str) -> RunMonitor:
    """Show a monitor of a flow run under the current cell: ``nbflow.monitor(run_or_id)``.

    ``run`` is a ``FlowRun``, or a flow run id, unique id prefix or run name. A run of this kernel
    that already has a monitor shows it again; a ``FlowRun`` still running in this process is
    followed live from now on; anything else is read from the run store, and followed while it
    runs (in a worker, or another process).

    >>> state = etl(return_state=True)          # doctest: +SKIP
    >>> nbflow.monitor("nimble-falcon")          # doctest: +SKIP
    """
    from nbflow._engine.runtime import get_runtime
    from nbflow.jupyter._monitor_store import load_model

    runtime = get_runtime()
    if isinstance(run, FlowRun):
        existing = _monitors.get(run.id)
        if existing is not None:
            existing.show()
            return existing
        if run.state is None or not run.state.is_final():
            return RunMonitor.attach(runtime.bus, run, show=True)
        ref = run.id
    elif isinstance(run, str):
        ref = run
    else:
        raise ArgumentTypeError(f"nbflow.monitor() takes a FlowRun or a flow run id or name, not {type(run).__name__}.")
    existing = _monitors.get(ref)
    if existing is not None:
        existing.show()
        return existing
    store = runtime.store
    if store is None:
        raise NbflowError(
            f"Cannot look up flow run {ref!r}: the run store is off (NBFLOW_STORE_ENABLED=0). "
            "Pass the FlowRun object of a run of this kernel, or turn the store on."
        )
    with store.reading(flush=True) as conn:
        model, follower = load_model(conn, ref)
    existing = _monitors.get(model.flow_run_id)
    if existing is not None:
        existing.show()
        return existing

    def poll() -> None:
        with store.reading() as conn:
            follower.poll(conn)

    return RunMonitor.from_model(model, show=True, live=not follower.finished, poll=poll)
