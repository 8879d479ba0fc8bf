"""What a run monitor shows, built from run events: pure Python, no Jupyter imports.

The engine emits events on worker threads, thousands per second for a big map. ``MonitorModel.feed``
only records what changed (under one short lock); ``take_delta`` runs on the monitor's own timer
thread and turns the changes into one small JSON-able message. So the cost on the engine's hot path
is a few dictionary writes per event, and the browser gets at most a handful of messages a second.

What the browser sees is the *view graph*: one node per task run (and per subflow run) of the flow
run, until it passes ``collapse_at`` nodes; from then on one node per task (``task_key``) with counts
by state. Tasks run inside a subflow are counted on the subflow's node.

The model never looks at a result: a completed state's ``data`` is not read, stringified or kept.
Only exceptions of failed states are kept (for the traceback in the detail panel).

The same model can be fed from stored rows (``run_created``/``state_changed``/``log_emitted``/
``edge_added`` take plain values), so a monitor can show a run recorded by another process.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

from nbflow._events import EdgeAdded, Event, LogEmitted, RunCreated, StateChanged
from nbflow._runs import FlowRun, TaskRun
from nbflow._states import FINAL_TYPES, StateType

__all__ = ["MonitorModel", "COLLAPSE_AT", "LOG_LIMIT", "PROTOCOL"]

PROTOCOL = 1
"""Version of the JSON the model produces; the front-end refuses versions it does not know."""

COLLAPSE_AT = 100
"""Past this many nodes the graph shows one node per task with counts (a readable picture, a small DOM)."""

LOG_LIMIT = 500
"""State log entries kept (oldest dropped): the monitor shows what is going on, the store keeps all."""

RUN_LOG_LIMIT = 200
"""Log lines kept per run for the detail panel."""

WIRE_LOG_LIMIT = 60
"""Log entries per message; a burst beyond that is summarised as a count of skipped lines."""

WIRE_TEXT_LIMIT = 400
"""Characters of a log line or error sent live; the detail panel fetches the whole line."""

TRACEBACK_LIMIT = 20_000
"""Characters of a formatted traceback; a recursion error must not make a megabyte message."""

_FINAL_NAMES = frozenset(t.value for t in FINAL_TYPES)
_QUIET_STATES = frozenset({StateType.PENDING.value, StateType.SCHEDULED.value})
_NBFLOW_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_JUPYTER_DIR = os.path.join(_NBFLOW_DIR, "jupyter")


class _Run:
    """One task run or subflow run of the monitored tree: only what the monitor shows."""

    __slots__ = (
        "id", "kind", "name", "key", "group_label", "flow_run_id", "top", "state", "type",
        "message", "start", "end", "attempts", "cache_key", "error", "error_text", "logs",
    )

    def __init__(self, id: str, kind: str, name: str, key: str, group_label: str, flow_run_id: str) -> None:
        self.id = id
        self.kind = kind  # "task" or "flow"
        self.name = name
        self.key = key  # what runs collapse by: the task key, or the subflow's flow name
        self.group_label = group_label
        self.flow_run_id = flow_run_id  # the flow run it runs in
        self.top = id  # the node that stands for it in the root flow's graph
        self.state = "Pending"
        self.type = StateType.PENDING.value
        self.message: str | None = None
        self.start: float | None = None
        self.end: float | None = None
        self.attempts = 0
        self.cache_key: str | None = None
        self.error: BaseException | str | None = None  # an exception, or a stored traceback text
        self.error_text: str | None = None
        self.logs: list[tuple[float, int, str]] | None = None


class _ViewNode:
    """A node of the view graph: one run, or (collapsed) all runs of one task."""

    __slots__ = ("id", "label", "kind", "run", "counts", "members")

    def __init__(self, id: str, label: str, kind: str, run: _Run | None) -> None:
        self.id = id
        self.label = label
        self.kind = kind  # "task", "flow" (a subflow run) or "group"
        self.run = run  # the run it shows; None for a group
        self.counts: Counter[str] = Counter()  # states of a group's members, or of a subflow's tasks
        self.members: list[str] = []  # run ids of a group (first ones only, for the detail panel)


_GROUP_MEMBERS_KEPT = 500


class MonitorModel:
    """The monitor's picture of one flow run (and its subflows), fed with run events.

    >>> from nbflow._runs import FlowRun
    >>> from nbflow._events import RunCreated
    >>> root = FlowRun("nimble-falcon", "etl", {})
    >>> model = MonitorModel(root.id)
    >>> model.feed(RunCreated(root))
    >>> model.snapshot()["run"]["name"]
    'nimble-falcon'

    ``feed`` may be called from any thread; ``take_delta``, ``snapshot`` and ``detail`` too.
    """

    def __init__(
        self,
        flow_run_id: str,
        *,
        collapse_at: int = COLLAPSE_AT,
        log_limit: int = LOG_LIMIT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.flow_run_id = flow_run_id
        self.collapse_at = collapse_at
        self._clock = clock
        self._lock = threading.Lock()
        self._header: dict[str, Any] = {
            "id": flow_run_id, "name": "", "flow": "", "state": "Pending", "type": "PENDING",
            "message": None, "start": None, "end": None,
        }
        self._root_logs: list[tuple[float, int, str]] = []
        self._flows: dict[str, str | None] = {flow_run_id: None}  # flow run id -> top subflow run id
        self._runs: dict[str, _Run] = {}
        self._counts: Counter[str] = Counter()
        self._count_types: dict[str, str] = {}
        self._view: dict[str, _ViewNode] = {}
        self._edges: list[tuple[str, str]] = []  # every run-level edge, for re-collapsing
        self._pending_edges: list[tuple[str, str]] = []  # an end not seen yet
        self._view_edges: dict[tuple[str, str], None] = {}  # ordered set
        self._collapsed = False
        self._log: deque[list[Any]] = deque(maxlen=log_limit)
        self._seq = 0
        self._graph_version = 0
        # What changed since the last delta.
        self._dirty_nodes: set[str] = set()
        self._dirty_graph = False
        self._dirty_header = False
        self._dirty_counts = False
        self._new_log: deque[list[Any]] = deque(maxlen=WIRE_LOG_LIMIT)
        self._new_log_total = 0
        self.finished = False
        """True once the root flow run reached a final state."""
        self._handlers: dict[type, Callable[[Any], None]] = {
            RunCreated: self._on_created,
            StateChanged: self._on_state,
            LogEmitted: self._on_log,
            EdgeAdded: self._on_edge,
        }

    # --- feeding -----------------------------------------------------------------------------
    def feed(self, event: Event) -> None:
        """Record one engine event (a bus subscriber: cheap, thread-safe, never raises on unknowns)."""
        handler = self._handlers.get(event.__class__)
        if handler is not None:
            handler(event)

    __call__ = feed

    @classmethod
    def from_events(cls, flow_run_id: str, events: Iterable[Event], **kwargs: Any) -> MonitorModel:
        """A model of a run that already happened, from its recorded events."""
        model = cls(flow_run_id, **kwargs)
        for event in events:
            model.feed(event)
        return model

    def seed(self, flow_run: FlowRun) -> None:
        """Start from what a live flow run record says now (for a monitor attached mid-run)."""
        self.run_created(flow_run.id, "flow", flow_run.name, flow_run_id=None, key=flow_run.flow_name,
                         start=flow_run.start_time)
        state = flow_run.state
        if state is not None:
            self._on_state(StateChanged(flow_run, state))

    def _on_created(self, event: RunCreated) -> None:
        run = event.run
        if run.__class__ is TaskRun:
            self.run_created(
                run.id, "task", run.name, flow_run_id=run.flow_run_id, key=run.task_key,
                label=run.task_name, start=run.start_time,
            )
        else:
            self.run_created(
                run.id, "flow", run.name, flow_run_id=run.parent_flow_run_id, key=run.flow_name,  # type: ignore[union-attr]
                label=run.flow_name, start=run.start_time,  # type: ignore[union-attr]
            )

    def _on_state(self, event: StateChanged) -> None:
        run, state = event.run, event.state
        data = state.data if state.type is not StateType.COMPLETED else None  # never touch results
        self.state_changed(
            run.id, state.name, state.type.value, state.timestamp, message=state.message,
            error=data if isinstance(data, BaseException) else None,
            attempts=run.run_count, cache_key=getattr(run, "cache_key", None),
            start=run.start_time, end=run.end_time,
        )

    def _on_log(self, event: LogEmitted) -> None:
        self.log_emitted(event.run.id, event.level, event.message, event.timestamp)

    def _on_edge(self, event: EdgeAdded) -> None:
        self.edge_added(event.upstream_id, event.downstream_id)

    # --- the plain-value API (events and stored rows alike) ----------------------------------
    def run_created(
        self,
        run_id: str,
        kind: str,
        name: str,
        *,
        flow_run_id: str | None,
        key: str = "",
        label: str = "",
        start: float | None = None,
    ) -> None:
        """A run exists. ``kind`` is ``"task"`` or ``"flow"``; for a flow, ``flow_run_id`` is its parent."""
        with self._lock:
            if kind == "flow" and run_id == self.flow_run_id:
                self._header.update(name=name, flow=key or label, start=start)
                self._dirty_header = True
                return
            if flow_run_id not in self._flows or run_id in self._runs:
                return  # another flow run's business
            run = _Run(run_id, kind, name, key or label or name, label or key or name, flow_run_id)
            run.start = start
            top = self._flows[flow_run_id]
            if kind == "flow":
                self._flows[run_id] = top or run_id
            self._runs[run_id] = run
            if top is not None:  # inside a subflow: counted on the subflow's node
                run.top = top
                if kind == "task":
                    self._count(run, None)
                    counts = self._subflow_counts(top)
                    if counts is not None:
                        counts[run.state] += 1
                        self._dirty_nodes.add(top)
                return
            if kind == "task":
                self._count(run, None)
            self._add_view_member(run)
            if self._pending_edges:
                self._retry_pending_edges()

    def state_changed(
        self,
        run_id: str,
        name: str,
        type: str,
        timestamp: float,
        *,
        message: str | None = None,
        error: BaseException | str | None = None,
        attempts: int | None = None,
        cache_key: str | None = None,
        start: float | None = None,
        end: float | None = None,
    ) -> None:
        """A run entered a state. ``error`` is the exception (or its stored traceback) of a failure."""
        with self._lock:
            if run_id == self.flow_run_id:
                header = self._header
                header.update(state=name, type=type, message=message)
                if header["start"] is None and (start or type == "RUNNING"):
                    header["start"] = start or timestamp
                if type in _FINAL_NAMES:
                    header["end"] = end or timestamp
                    self.finished = True
                self._dirty_header = True
                self._add_log(timestamp, run_id, header["name"], "state", 20, _transition_text(name, message))
                return
            run = self._runs.get(run_id)
            if run is None:
                return
            previous = run.state
            run.state, run.type, run.message = name, type, message
            if attempts is not None:
                run.attempts = attempts
            if cache_key is not None:
                run.cache_key = cache_key
            if run.start is None and (start or type == "RUNNING"):
                run.start = start or timestamp
            if type in _FINAL_NAMES:
                run.end = end or timestamp
            if error is not None:
                run.error, run.error_text = error, None
            if run.kind == "task":
                self._count(run, previous)
            if run.top != run.id:  # inside a subflow
                counts = self._subflow_counts(run.top) if run.kind == "task" else None
                if counts is not None:
                    counts[previous] -= 1
                    counts[name] += 1
                    self._dirty_nodes.add(run.top)
            else:
                view_id = self._view_id(run)
                if self._collapsed:
                    counts = self._view[view_id].counts
                    counts[previous] -= 1
                    counts[name] += 1
                self._dirty_nodes.add(view_id)
            if name not in _QUIET_STATES:
                self._add_log(timestamp, run_id, run.name, "state", 40 if type in ("FAILED", "CRASHED") else 20,
                              _transition_text(name, message))

    def log_emitted(self, run_id: str, level: int, message: str, timestamp: float) -> None:
        """A log line of a run in the tree."""
        with self._lock:
            if run_id == self.flow_run_id:
                name = self._header["name"]
                logs = self._root_logs
            else:
                run = self._runs.get(run_id)
                if run is None:
                    return
                name = run.name
                if run.logs is None:
                    run.logs = []
                logs = run.logs
            logs.append((timestamp, level, message))
            if len(logs) > RUN_LOG_LIMIT + RUN_LOG_LIMIT // 2:  # trim in batches: amortised O(1)
                del logs[: len(logs) - RUN_LOG_LIMIT]
            self._add_log(timestamp, run_id, name, "log", level, message)

    def edge_added(self, upstream_id: str, downstream_id: str) -> None:
        """Run ``downstream_id`` consumes the result of run ``upstream_id``."""
        with self._lock:
            if upstream_id in self._runs and downstream_id in self._runs:
                self._edges.append((upstream_id, downstream_id))
                self._add_view_edge(upstream_id, downstream_id)
            elif len(self._pending_edges) < 100_000:  # an edge of another flow run never resolves
                self._pending_edges.append((upstream_id, downstream_id))

    # --- reading -----------------------------------------------------------------------------
    def take_delta(self) -> dict[str, Any] | None:
        """What changed since the last call, as one message; None when nothing did.

        Carries only changed nodes and new log lines; the graph's structure only when it changed.
        """
        with self._lock:
            if not (self._dirty_nodes or self._dirty_graph or self._dirty_header or self._dirty_counts
                    or self._new_log_total):
                return None
            self._seq += 1
            delta: dict[str, Any] = {"kind": "delta", "seq": self._seq, "now": _ms(self._clock())}
            if self._dirty_header:
                delta["run"] = dict(self._header)
            if self._dirty_counts:
                delta["counts"] = self._counts_json()
            if self._dirty_graph:
                delta["graph"] = self._graph_json()
            if self._dirty_nodes:
                view = self._view
                delta["nodes"] = {
                    node_id: self._node_json(view[node_id]) for node_id in self._dirty_nodes if node_id in view
                }
            if self._new_log_total:
                delta["log"] = list(self._new_log)
                skipped = self._new_log_total - len(self._new_log)
                if skipped:
                    delta["skipped"] = skipped
            self._clear_dirty()
            return delta

    def snapshot(self, *, final: bool = False, log_entries: int = LOG_LIMIT) -> dict[str, Any]:
        """Everything the front-end shows, in one message (a keyframe, or the saved final state).

        ``final=True`` adds what the detail panel needs without a kernel (errors and last log lines
        of each shown run), so a notebook reopened from disk still explains its failures.
        """
        with self._lock:
            self._seq += 1
            self._clear_dirty()
            log = list(self._log)[-log_entries:] if log_entries else []
            snap: dict[str, Any] = {
                "kind": "snapshot",
                "protocol": PROTOCOL,
                "seq": self._seq,
                "now": _ms(self._clock()),
                "final": final,
                "run": dict(self._header),
                "counts": self._counts_json(),
                "graph": self._graph_json(),
                "nodes": {node_id: self._node_json(node) for node_id, node in self._view.items()},
                "log": log,
            }
            if final:
                details = {}
                for node_id, node in self._view.items():
                    if node.run is not None:
                        details[node_id] = self._detail_json(node.run, logs=20)
                snap["details"] = details
            return snap

    def detail(self, node_or_run_id: str) -> dict[str, Any] | None:
        """What the detail panel shows for a node or run: state, timing, attempts, cache, logs, traceback."""
        with self._lock:
            node = self._view.get(node_or_run_id)
            if node is not None and node.run is None:  # a group: its counts and members
                members = [self._runs[m] for m in node.members if m in self._runs]
                members.sort(key=_failed_first)
                return {
                    "id": node.id, "kind": "group", "name": node.label, "counts": dict(+node.counts),
                    "total": sum(node.counts.values()),
                    "members": [self._member_json(run) for run in members[:200]],
                }
            run = node.run if node is not None else self._runs.get(node_or_run_id)
            if run is None:
                if node_or_run_id == self.flow_run_id:
                    return {
                        **self._header, "kind": "run", "logs": [list(x) for x in self._root_logs[-RUN_LOG_LIMIT:]],
                    }
                return None
            detail = self._detail_json(run, logs=RUN_LOG_LIMIT)
            if run.kind == "flow":
                members = [r for r in self._runs.values() if r.top == run.id and r is not run]
                members.sort(key=_failed_first)
                detail["members"] = [self._member_json(r) for r in members[:200]]
                counts = Counter(r.state for r in self._runs.values() if r.top == run.id and r.kind == "task")
                detail["counts"] = dict(counts)
            return detail

    def counts(self) -> dict[str, int]:
        """Task runs by state name (subflow tasks included)."""
        with self._lock:
            return dict(+self._counts)

    @property
    def collapsed(self) -> bool:
        return self._collapsed

    # --- internals (callers hold the lock) -----------------------------------------------------
    def _count(self, run: _Run, previous: str | None) -> None:
        if previous is not None:
            self._counts[previous] -= 1
        self._counts[run.state] += 1
        self._count_types[run.state] = run.type
        self._dirty_counts = True

    def _view_id(self, run: _Run) -> str:
        if not self._collapsed:
            return run.id
        return ("f:" if run.kind == "flow" else "k:") + run.key

    def _subflow_counts(self, subflow_run_id: str) -> Counter[str] | None:
        """The task counts drawn on a subflow's node; None once collapsed (groups count subflow runs)."""
        if self._collapsed:
            return None
        node = self._view.get(subflow_run_id)
        return node.counts if node is not None else None

    def _add_view_member(self, run: _Run) -> None:
        """Put a run of the root flow on the graph (collapsing everything once there are too many)."""
        if not self._collapsed and len(self._view) >= self.collapse_at:
            self._collapse()
        view_id = self._view_id(run)
        node = self._view.get(view_id)
        if node is None:
            if self._collapsed:
                node = _ViewNode(view_id, run.group_label, "group", None)
            else:
                node = _ViewNode(view_id, run.name, run.kind, run)
            self._view[view_id] = node
            self._dirty_graph = True
        if self._collapsed:
            node.counts[run.state] += 1
            if len(node.members) < _GROUP_MEMBERS_KEPT:
                node.members.append(run.id)
        self._dirty_nodes.add(view_id)

    def _collapse(self) -> None:
        """Switch to one node per task, for good: a graph that flips back and forth is unreadable."""
        self._collapsed = True
        self._view = {}
        self._view_edges = {}
        for run in self._runs.values():
            if run.top == run.id:
                self._add_view_member(run)
        for upstream, downstream in self._edges:
            self._add_view_edge(upstream, downstream)
        self._dirty_graph = True
        self._dirty_nodes = set(self._view)

    def _add_view_edge(self, upstream_id: str, downstream_id: str) -> None:
        runs = self._runs
        u = self._view_id(runs[runs[upstream_id].top])
        v = self._view_id(runs[runs[downstream_id].top])
        if u != v and (u, v) not in self._view_edges:
            self._view_edges[(u, v)] = None
            self._dirty_graph = True

    def _retry_pending_edges(self) -> None:
        pending, self._pending_edges = self._pending_edges, []
        for upstream, downstream in pending:
            if upstream in self._runs and downstream in self._runs:
                self._edges.append((upstream, downstream))
                self._add_view_edge(upstream, downstream)
            else:
                self._pending_edges.append((upstream, downstream))

    def _add_log(self, timestamp: float, run_id: str, name: str, kind: str, level: int, text: str) -> None:
        if len(text) > WIRE_TEXT_LIMIT:
            text = text[: WIRE_TEXT_LIMIT - 1] + "…"
        entry = [_ms(timestamp), run_id, name, kind, level, text]
        self._log.append(entry)
        self._new_log.append(entry)
        self._new_log_total += 1

    def _clear_dirty(self) -> None:
        self._dirty_nodes = set()
        self._dirty_graph = self._dirty_header = self._dirty_counts = False
        self._new_log.clear()
        self._new_log_total = 0

    def _counts_json(self) -> dict[str, list[Any]]:
        return {name: [self._count_types[name], n] for name, n in self._counts.items() if n > 0}

    def _graph_json(self) -> dict[str, Any]:
        self._graph_version += 1
        nodes = []
        for node in self._view.values():
            entry: dict[str, Any] = {"id": node.id, "label": node.label, "kind": node.kind}
            if node.run is None:
                entry["n"] = sum(node.counts.values())
            nodes.append(entry)
        return {
            "v": self._graph_version,
            "collapsed": self._collapsed,
            "nodes": nodes,
            "edges": [list(edge) for edge in self._view_edges],
        }

    def _node_json(self, node: _ViewNode) -> dict[str, Any]:
        run = node.run
        if run is None:
            return {"c": dict(+node.counts)}
        out: dict[str, Any] = {"s": run.state, "t": run.type, "a": run.attempts}
        if run.start is not None:
            out["st"] = _ms(run.start)
        if run.end is not None:
            out["en"] = _ms(run.end)
        if run.cache_key is not None:
            out["ck"] = run.cache_key[:16]
        if run.error is not None or (run.message and run.type in ("FAILED", "CRASHED", "CANCELLED")):
            out["err"] = self._error_text(run)
        if node.kind == "flow":
            out["c"] = dict(+node.counts)
        return out

    def _error_text(self, run: _Run) -> str:
        if run.error_text is None:
            error = run.error
            if isinstance(error, BaseException):
                text = f"{error.__class__.__name__}: {_safe_str(error)}"
            elif isinstance(error, str) and error.strip():
                text = error.strip().splitlines()[-1]
            else:
                text = run.message or run.state
            run.error_text = text if len(text) <= WIRE_TEXT_LIMIT else text[: WIRE_TEXT_LIMIT - 1] + "…"
        return run.error_text

    def _detail_json(self, run: _Run, *, logs: int) -> dict[str, Any]:
        cache = None
        if run.state == "Cached":
            cache = "hit"
        elif run.cache_key is not None:
            cache = "miss"
        detail: dict[str, Any] = {
            "id": run.id, "kind": run.kind, "name": run.name, "task": run.group_label,
            "state": run.state, "type": run.type, "message": run.message,
            "start": _ms(run.start) if run.start is not None else None,
            "end": _ms(run.end) if run.end is not None else None,
            "attempts": run.attempts, "cache_key": run.cache_key, "cache": cache,
            "logs": [list(line) for line in (run.logs or [])[-logs:]] if logs else [],
        }
        if run.error is not None:
            detail["error"] = self._error_text(run)
            detail["traceback"] = format_error(run.error)
        elif run.type in ("FAILED", "CRASHED", "CANCELLED") and run.message:
            detail["error"] = run.message
        return detail

    def _member_json(self, run: _Run) -> dict[str, Any]:
        out: dict[str, Any] = {"id": run.id, "name": run.name, "s": run.state, "t": run.type}
        if run.start is not None and run.end is not None:
            out["d"] = round(run.end - run.start, 3)
        if run.type in ("FAILED", "CRASHED") and (run.error is not None or run.message):
            out["err"] = self._error_text(run)
        return out


def format_error(error: BaseException | str) -> str:
    """The traceback of a failure, without nbflow's own engine frames (the user's code is the story)."""
    if isinstance(error, str):
        text = error
    else:
        frames = [
            frame for frame in traceback.extract_tb(error.__traceback__)
            if not frame.filename.startswith(_NBFLOW_DIR) or frame.filename.startswith(_JUPYTER_DIR)
        ]
        lines = ["Traceback (most recent call last):\n"] if frames else []
        lines += traceback.format_list(frames)
        lines += traceback.format_exception_only(error.__class__, error)
        text = "".join(lines)
    if len(text) > TRACEBACK_LIMIT:
        text = "…\n" + text[-TRACEBACK_LIMIT:]
    return text


def _transition_text(name: str, message: str | None) -> str:
    return f"→ {name}" + (f": {message}" if message else "")


def _failed_first(run: _Run) -> tuple[int, float]:
    order = 0 if run.type in ("FAILED", "CRASHED") else 1 if run.type == "RUNNING" else 2
    return (order, run.start or 0.0)


def _safe_str(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:  # a broken __str__ must not break the monitor
        text = "<unprintable>"
    return text[:WIRE_TEXT_LIMIT]


def _ms(timestamp: float) -> float:
    return round(timestamp, 3)

