"""What a run monitor shows, built from run events and run records: pure Python, no Jupyter imports.

Cheap on the engine's threads: ``MonitorModel.feed`` is a deque's own ``append`` (no lock, no Python
frame). Whoever reads the model next (the monitor's timer thread, five times a second) applies the
queued events in one batch.

Cheap on the reader's thread too, because a 10,000-task map must not slow the flow it watches:
events only *announce* runs, edges and log lines. States are read from the run records themselves
when a message is built, so a task that went Pending → Running → Completed between two messages
costs one look, not three updates. The per-run work is done by C-level ``map``/``zip``/``compress``
/``Counter`` passes over lists, not Python loops; finished runs are folded into counters once and
never looked at again.

The browser sees the *view graph*: one node per task run and subflow run of the flow run, until it
has ``collapse_at`` nodes; from then on one node per task (``task_key``) with counts by state. Tasks
that run inside a subflow are counted on the subflow's node.

Results are never read: a completed state's ``data`` is not touched, and when the run ends the live
run records (which hold results and parameters) are swapped for small copies (``compact``).

Recorded runs (rows of the run store) feed the same model through ``run_created``/``state_changed``/
``log_emitted``/``edge_added``, which take plain values.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from functools import partial
from itertools import compress, repeat
from operator import add, attrgetter, eq, is_, not_
from typing import Any

from nbflow._events import EdgeAdded, Event, LogEmitted, RunCreated, StateChanged
from nbflow._runs import FlowRun
from nbflow._states import State, StateType
from nbflow.jupyter._monitor_records import WIRE_TEXT_LIMIT, RunRecord, copy_runs, error_text, format_error

__all__ = ["MonitorModel", "COLLAPSE_AT", "LOG_LIMIT", "PROTOCOL"]

PROTOCOL = 1
"""Version of the JSON the model produces (extension/src/protocol.ts is the other half)."""

COLLAPSE_AT = 100
"""Past this many nodes the graph shows one node per task with counts: readable, and a small DOM."""

LOG_LIMIT = 500
"""State log entries kept (oldest dropped): the monitor shows what goes on; the run store keeps all."""

RUN_LOG_LIMIT = 200
"""Log lines kept per run for the detail panel."""

WIRE_LOG_LIMIT = 60
"""State log entries per live message; a burst beyond that is sent as a count of skipped lines."""

_FINAL = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})  # StateType is a str: both match
_BAD = frozenset({"FAILED", "CRASHED", "CANCELLED"})
_QUIET = frozenset({"PENDING", "SCHEDULED"})  # transitions not worth a state log line
_ENGINE_LOGGER = "nbflow.engine"

# C-level helpers for the batch passes.
_IS_CREATED, _IS_STATE, _IS_LOG, _IS_EDGE = (partial(is_, c) for c in (RunCreated, StateChanged, LogEmitted, EdgeAdded))
_IS_NONE = partial(is_, None)
_IS_TASK = partial(eq, "task")
_RUN, _ID, _KIND, _STATE = attrgetter("run"), attrgetter("id"), attrgetter("kind"), attrgetter("state")
_FLOW_RUN_ID, _TASK_KEY = attrgetter("flow_run_id"), attrgetter("task_key")
_RUN_ID, _STATE_TYPE = attrgetter("run.id"), attrgetter("state.type")
_UPSTREAM, _DOWNSTREAM, _EDGE_FLOW = attrgetter("upstream_id"), attrgetter("downstream_id"), attrgetter("flow_run_id")


class _Node:
    """A node of the view graph: one run, or (collapsed) every run of one task or subflow."""

    __slots__ = ("id", "label", "kind", "run")

    def __init__(self, id: str, label: str, kind: str, run: Any) -> None:
        self.id, self.label, self.kind, self.run = id, label, kind, run  # kind: task, flow or group


class MonitorModel:
    """The monitor's picture of one flow run and its subflows.

    >>> root = FlowRun("nimble-falcon", "etl", {})
    >>> model = MonitorModel(root.id)
    >>> model.feed(RunCreated(root))
    >>> model.snapshot()["run"]["name"]
    'nimble-falcon'

    Any thread may feed it or read it.
    """

    def __init__(self, flow_run_id: str, *, collapse_at: int = COLLAPSE_AT, log_limit: int = LOG_LIMIT,
                 clock: Callable[[], float] = time.time) -> None:
        self.flow_run_id = flow_run_id
        self.collapse_at = collapse_at
        self._clock = clock
        self._lock = threading.Lock()
        self._queue: deque[Event] = deque()
        self.feed: Callable[[Event], None] = self._queue.append
        """Subscribe this to the bus: records one event, from any thread, for the cost of an append."""
        self._root: Any = None
        self._records: dict[str, RunRecord] = {}  # runs fed through the plain-value API
        self._flows: dict[str | None, str | None] = {flow_run_id: None}  # flow run -> its top subflow
        self._runs: dict[str, Any] = {}  # every task run and subflow run of the tree
        self._view_of: dict[str, str] = {}  # run -> the node that shows it
        self._nodes: dict[str, _Node] = {}
        self._subflows: list[Any] = []  # top-level subflow runs
        self._collapsed = False
        # Task runs by state, kept as counts in minus counts out (Counter.update is a C loop;
        # Counter.subtract is not), overall and per node. ``_counted``: the state each run is in.
        self._counted: dict[str, str] = {}
        self._in: Counter[str] = Counter()
        self._out: Counter[str] = Counter()
        self._in_by_view: Counter[tuple[str, str]] = Counter()
        self._out_by_view: Counter[tuple[str, str]] = Counter()
        self._changed: dict[str, Any] = {}  # task runs whose state changed since the last count
        self._types: dict[str, str] = {"Pending": "PENDING"}
        self._edges: list[tuple[str, str]] = []
        self._pending_edges: list[tuple[str, str]] = []  # an end not seen yet
        self._view_edges: dict[tuple[str, str], None] = {}  # an ordered set
        self._run_logs: dict[str, list[tuple[float, int, str]]] = {}
        self._error_texts: dict[str, str] = {}
        self._log: deque[list[Any]] = deque(maxlen=log_limit)
        self._log_n = 0  # entries are numbered, so a keyframe and a delta never show a line twice
        self._new_log: deque[list[Any]] = deque(maxlen=WIRE_LOG_LIMIT)
        self._new_log_total = 0
        self._seq = 0
        self._graph_version = 0
        self._graph_dirty = False
        self._sent_header: dict[str, Any] | None = None
        self._sent_counts: dict[str, list[Any]] | None = None
        self._sent_nodes: dict[str, Any] = {}
        self.compacted = False

    @classmethod
    def from_events(cls, flow_run_id: str, events: Iterable[Event], **kwargs: Any) -> MonitorModel:
        """A model of a run from its recorded events."""
        model = cls(flow_run_id, **kwargs)
        for event in events:
            model.feed(event)
        return model

    def seed(self, flow_run: FlowRun) -> None:
        """Start from a live flow run record (its ``RunCreated`` may have gone by)."""
        self.feed(RunCreated(flow_run))

    # --- the plain-value API, for stored rows ----------------------------------------------------
    def run_created(self, run_id: str, kind: str, name: str, *, flow_run_id: str | None, key: str = "",
                    label: str = "", start: float | None = None) -> None:
        """A run exists. ``kind`` is ``"task"`` or ``"flow"``; for a flow, ``flow_run_id`` is its parent."""
        if kind == "task":
            record = RunRecord(run_id, kind, name, task_key=key or label or name, task_name=label or key or name,
                               flow_run_id=flow_run_id, start_time=start)
        else:
            record = RunRecord(run_id, kind, name, flow_name=key or label or name, parent_flow_run_id=flow_run_id,
                               start_time=start)
        self._records[run_id] = record
        self.feed(RunCreated(record))  # type: ignore[arg-type]

    def state_changed(self, run_id: str, name: str, type: str, timestamp: float, *, message: str | None = None,
                      error: BaseException | str | None = None, attempts: int | None = None,
                      cache_key: str | None = None, start: float | None = None, end: float | None = None) -> None:
        """A run entered a state; ``error`` is the exception (or the stored traceback text) of a failure."""
        record = self._records.get(run_id)
        if record is None:
            return
        state = State(StateType(type), name, message, timestamp=timestamp, **({"data": error} if error is not None else {}))
        record.state = state
        if attempts is not None:
            record.run_count = attempts
        if cache_key is not None:
            record.cache_key = cache_key
        if start is not None or (type == "RUNNING" and record.start_time is None):
            record.start_time = start or timestamp
        if end is not None or type in _FINAL:
            record.end_time = end or timestamp
        self.feed(StateChanged(record, state))  # type: ignore[arg-type]

    def log_emitted(self, run_id: str, level: int, message: str, timestamp: float, logger: str = "") -> None:
        """A log line of a run."""
        record = self._records.get(run_id)
        if record is not None:
            self.feed(LogEmitted(record, level, message, timestamp, logger))  # type: ignore[arg-type]

    def edge_added(self, upstream_id: str, downstream_id: str) -> None:
        """Run ``downstream_id`` consumes the result of run ``upstream_id``."""
        self.feed(EdgeAdded(self.flow_run_id, upstream_id, downstream_id))

    # --- applying a batch (caller holds the lock) -------------------------------------------------
    def _drain(self) -> None:
        queue = self._queue
        count = len(queue)
        if not count:
            return
        popleft = queue.popleft
        batch = [popleft() for _ in range(count)]
        classes = list(map(type, batch))
        created = list(map(_RUN, compress(batch, map(_IS_CREATED, classes))))
        if created:
            self._add_runs(created)
        edges = list(compress(batch, map(_IS_EDGE, classes)))
        if edges:  # edges of other flow runs on the same bus never concern this monitor
            edges = list(compress(edges, map(self._flows.__contains__, map(_EDGE_FLOW, edges))))
        if edges or self._pending_edges:
            self._add_edges(edges)
        logs: list[LogEmitted] = list(compress(batch, map(_IS_LOG, classes)))  # type: ignore[arg-type]
        runs, root_id = self._runs, self.flow_run_id
        for event in logs:
            # The engine's routine lines ("Finished in state ...") are in the state log; a run's own
            # lines, warnings and errors are kept per run for its detail panel.
            if event.logger != _ENGINE_LOGGER or event.level >= 30:
                run_id = event.run.id
                if run_id in runs or run_id == root_id:
                    lines = self._run_logs.setdefault(run_id, [])
                    lines.append((event.timestamp, event.level, event.message))
                    if len(lines) > RUN_LOG_LIMIT + RUN_LOG_LIMIT // 2:  # trim in batches: amortised O(1)
                        del lines[: len(lines) - RUN_LOG_LIMIT]
        states = list(compress(batch, map(_IS_STATE, classes)))
        if states:  # the task runs to count again; their state is read from the run when counting
            changed = dict(zip(map(_RUN_ID, states), map(_RUN, states)))
            counted = self._counted
            self._changed.update(compress(changed.items(), map(counted.__contains__, changed)))
        shown = len(logs) + len(states) - sum(map(_QUIET.__contains__, map(_STATE_TYPE, states)))
        if shown:
            self._log_tail(batch, classes, shown)

    def _add_runs(self, created: list[Any]) -> None:
        """Register new runs: subflows one by one (few), tasks in C-level passes (many)."""
        flows, runs = self._flows, self._runs
        kinds = list(map(_IS_TASK, map(_KIND, created)))
        for run in compress(created, map(not_, kinds)):  # flow runs, in order: a subflow before its tasks
            if run.id == self.flow_run_id:
                self._root = run
            elif run.parent_flow_run_id in flows and run.id not in runs:
                top = flows[run.parent_flow_run_id]
                flows[run.id] = top or run.id
                runs[run.id] = run
                if top is None:
                    self._subflows.append(run)
                    self._add_node(run)
                else:
                    self._view_of[run.id] = self._view_of[top]
        tasks = list(compress(created, kinds))
        if not tasks:
            return
        fids = list(map(_FLOW_RUN_ID, tasks))
        mine = list(map(flows.__contains__, fids))
        if not all(mine):  # another flow run's tasks on the same bus
            tasks, fids = list(compress(tasks, mine)), list(compress(fids, mine))
        tops = list(map(flows.get, fids))
        at_root = list(map(_IS_NONE, tops))
        inner = list(map(not_, at_root))
        top_level = list(compress(tasks, at_root))
        if top_level and not self._collapsed and len(self._nodes) + len(top_level) > self.collapse_at:
            self._collapse()
        if self._collapsed:
            views_top = list(map(add, repeat("k:"), map(_TASK_KEY, top_level)))
            for view_id in set(views_top).difference(self._nodes):
                run = top_level[views_top.index(view_id)]
                self._nodes[view_id] = _Node(view_id, run.task_name, "group", None)
                self._graph_dirty = True
        else:
            for run in top_level:
                self._add_node(run)
            views_top = list(map(_ID, top_level))
        views_inner = list(map(self._view_of.__getitem__, compress(tops, inner)))
        # Put each task's view back in the order of `tasks`.
        it_top, it_inner = iter(views_top), iter(views_inner)
        views = [next(it_top) if root else next(it_inner) for root in at_root] if views_inner else views_top
        ids = list(map(_ID, tasks))
        runs.update(zip(ids, tasks))
        self._view_of.update(zip(ids, views))
        pending = repeat("Pending", len(ids))
        self._counted.update(zip(ids, pending))
        self._in["Pending"] += len(ids)
        self._in_by_view.update(zip(views, repeat("Pending")))

    def _add_node(self, run: Any) -> None:
        """Put a top-level run on the graph (collapsing it into groups once it is too big)."""
        if not self._collapsed and len(self._nodes) >= self.collapse_at:
            self._collapse()
        if self._collapsed:
            view_id = ("f:" + run.flow_name) if run.kind == "flow" else ("k:" + run.task_key)
            if view_id not in self._nodes:
                label = run.flow_name if run.kind == "flow" else run.task_name
                self._nodes[view_id] = _Node(view_id, label, "group", None)
                self._graph_dirty = True
        else:
            view_id = run.id
            # A subflow's run name is random ("crimson-albatross"); its flow name says what it is.
            label = run.flow_name if run.kind == "flow" else run.name
            self._nodes[view_id] = _Node(view_id, label, run.kind, run)
            self._graph_dirty = True
        self._view_of[run.id] = view_id

    def _collapse(self) -> None:
        """Switch to one node per task, for good: a graph that flips back and forth is unreadable."""
        self._collapsed = True
        self._nodes, self._view_edges, self._sent_nodes = {}, {}, {}
        flows, view_of = self._flows, self._view_of
        for run in self._runs.values():  # top-level runs first: inner runs take their view
            if run.kind == "flow" and flows.get(run.id) == run.id or run.kind == "task" and flows[run.flow_run_id] is None:
                self._add_node(run)
        for run in self._runs.values():
            top = flows[run.flow_run_id] if run.kind == "task" else flows.get(run.id)
            if top is not None and top != run.id:
                view_of[run.id] = view_of[top]
        counted = self._counted
        self._in_by_view = Counter(zip(map(view_of.__getitem__, counted), counted.values()))
        self._out_by_view = Counter()
        for up, down in self._edges:
            self._add_view_edge(view_of[up], view_of[down])
        self._graph_dirty = True

    def _add_edges(self, events: list[EdgeAdded]) -> None:
        view_of = self._view_of
        ups = list(map(_UPSTREAM, events))
        downs = list(map(_DOWNSTREAM, events))
        pending, self._pending_edges = self._pending_edges, []
        if pending:
            ups[:0] = [u for u, _ in pending]
            downs[:0] = [d for _, d in pending]
        known = list(map(all, zip(map(view_of.__contains__, ups), map(view_of.__contains__, downs))))
        if not all(known):  # an end not announced yet: try again with the next batch
            lost = list(map(not_, known))
            self._pending_edges = list(zip(compress(ups, lost), compress(downs, lost)))[-100_000:]
            ups, downs = list(compress(ups, known)), list(compress(downs, known))
        self._edges.extend(zip(ups, downs))
        for key in set(zip(map(view_of.__getitem__, ups), map(view_of.__getitem__, downs))):
            self._add_view_edge(*key)

    def _add_view_edge(self, u: str, v: str) -> None:
        if u != v and (u, v) not in self._view_edges:
            self._view_edges[(u, v)] = None
            self._graph_dirty = True

    def _log_tail(self, batch: list[Event], classes: list[type], shown: int) -> None:
        """State log entries for the batch's last lines; earlier lines of a burst are only counted."""
        runs, root_id, limit = self._runs, self.flow_run_id, self._log.maxlen or LOG_LIMIT
        picked: list[Any] = []
        for i in range(len(batch) - 1, -1, -1):
            cls = classes[i]
            if cls is LogEmitted or (cls is StateChanged and batch[i].state.type not in _QUIET):  # type: ignore[union-attr]
                run_id = batch[i].run.id  # type: ignore[union-attr]
                if run_id in runs or run_id == root_id:
                    picked.append(batch[i])
                    if len(picked) >= limit:
                        break
        n = self._log_n + shown - len(picked)
        self._log_n += shown
        self._new_log_total += shown - len(picked)
        for event in reversed(picked):
            n += 1
            if event.__class__ is StateChanged:
                state = event.state
                text = f"→ {state.name}: {state.message}" if state.message else f"→ {state.name}"
                self._add_log(n, state.timestamp, event.run, "state", 40 if state.type in _BAD else 20, text)
            else:
                self._add_log(n, event.timestamp, event.run, "log", event.level, event.message)

    def _add_log(self, n: int, timestamp: float, run: Any, kind: str, level: int, text: str) -> None:
        # One line per entry: a traceback in a log line is read in the run's detail panel.
        cut = text.find("\n")
        if cut != -1:
            text = text[:cut] + " …"
        if len(text) > WIRE_TEXT_LIMIT:
            text = text[: WIRE_TEXT_LIMIT - 1] + "…"
        entry = [n, round(timestamp, 3), run.id, run.name, kind, level, text]
        self._log.append(entry)
        self._new_log.append(entry)
        self._new_log_total += 1

    # --- reading the records (caller holds the lock) ----------------------------------------------
    def _task_counts(self) -> tuple[Counter[str], Counter[tuple[str, str]]]:
        """Task runs by state, overall and per node: only runs whose state changed are looked at."""
        changed = self._changed
        if changed:
            ids, runs = list(changed), list(changed.values())
            changed.clear()
            states = list(map(_STATE, runs))
            new = list(map(getattr, states, repeat("name"), repeat("Pending")))
            self._types.update(zip(new, map(getattr, states, repeat("type"), repeat("PENDING"))))
            old = list(map(self._counted.__getitem__, ids))
            views = list(map(self._view_of.__getitem__, ids))
            self._out.update(old)
            self._in.update(new)
            self._out_by_view.update(zip(views, old))
            self._in_by_view.update(zip(views, new))
            self._counted.update(zip(ids, new))
        return self._in - self._out, self._in_by_view - self._out_by_view

    def _header_json(self) -> dict[str, Any]:
        root = self._root
        header: dict[str, Any] = {"id": self.flow_run_id, "name": "", "flow": "", "state": "Pending",
                                  "type": "PENDING", "message": None, "start": None, "end": None}
        if root is not None:
            state = root.state
            header.update(name=root.name, flow=root.flow_name, start=_r(root.start_time), end=_r(root.end_time))
            if state is not None:
                header.update(state=state.name, type=str(state.type), message=state.message)
                if header["end"] is None and state.type in _FINAL:
                    header["end"] = _r(state.timestamp)
        return header

    def _node_json(self, node: _Node, by_view: Counter[tuple[str, str]]) -> dict[str, Any]:
        run = node.run
        if run is None:
            if node.id.startswith("f:"):  # subflow runs of one flow, by their own state
                counts = Counter(r.state.name if r.state else "Pending" for r in self._subflows if self._view_of[r.id] == node.id)
                return {"c": dict(counts)}
            return {"c": {name: n for (view, name), n in by_view.items() if view == node.id and n > 0}}
        state = run.state
        out: dict[str, Any] = {"s": state.name if state else "Pending", "t": str(state.type) if state else "PENDING",
                               "a": run.run_count}
        if run.start_time is not None:
            out["st"] = _r(run.start_time)
        if run.end_time is not None:
            out["en"] = _r(run.end_time)
        if getattr(run, "cache_key", None):
            out["ck"] = run.cache_key[:16]
        if state is not None and state.type in _BAD:
            out["err"] = self._error_text(run)
        if node.kind == "flow":
            out["c"] = {name: n for (view, name), n in by_view.items() if view == node.id and n > 0}
        return out

    def _node_look(self, node: _Node, by_view: Counter[tuple[str, str]]) -> Any:
        """What decides whether a node must be sent again: its state object, or its counts."""
        if node.run is not None and node.kind == "task":
            state = node.run.state  # its name and message only: the state itself holds the result
            return (state.name, state.message, node.run.run_count) if state is not None else None
        return self._node_json(node, by_view)

    def _error_text(self, run: Any) -> str:
        text = self._error_texts.get(run.id)
        if text is None:
            text = self._error_texts[run.id] = error_text(run.state)
        return text

    # --- messages ---------------------------------------------------------------------------------
    def is_finished(self) -> bool:
        """Whether the root flow run reached a final state."""
        with self._lock:
            self._drain()
            root = self._root
            return root is not None and root.state is not None and root.state.type in _FINAL

    def counts(self) -> dict[str, int]:
        """Task runs by state name (subflow tasks included)."""
        with self._lock:
            self._drain()
            return {name: n for name, n in self._task_counts()[0].items() if n > 0}

    @property
    def collapsed(self) -> bool:
        return self._collapsed

    def take_delta(self) -> dict[str, Any] | None:
        """What changed since the last message, as one message; None when nothing did.

        Only changed nodes and new log lines; the graph's structure only when it changed.
        """
        with self._lock:
            self._drain()
            counts, by_view = self._task_counts()
            delta: dict[str, Any] = {}
            header = self._header_json()
            if header != self._sent_header:
                delta["run"] = self._sent_header = header
            counts_json = {name: [self._types[name], n] for name, n in counts.items() if n > 0}
            if counts_json != self._sent_counts:
                delta["counts"] = self._sent_counts = counts_json
            if self._graph_dirty:
                delta["graph"] = self._graph_json()
            nodes = {}
            for node_id, node in self._nodes.items():
                look = self._node_look(node, by_view)
                if self._sent_nodes.get(node_id) != look:
                    self._sent_nodes[node_id] = look
                    nodes[node_id] = self._node_json(node, by_view)
            if nodes:
                delta["nodes"] = nodes
            if self._new_log_total:
                delta["log"] = list(self._new_log)
                if self._new_log_total > len(self._new_log):
                    delta["skipped"] = self._new_log_total - len(self._new_log)
                self._new_log.clear()
                self._new_log_total = 0
            if not delta:
                return None
            self._seq += 1
            return {"kind": "delta", "seq": self._seq, "now": _r(self._clock()), **delta}

    def snapshot(self, *, final: bool = False, log_entries: int = LOG_LIMIT) -> dict[str, Any]:
        """Everything the front-end shows, as one message: a keyframe, or the saved final state.

        ``final=True`` adds the detail panel of each run on the graph, so a notebook reopened
        without its kernel still explains its failures.
        """
        with self._lock:
            self._drain()
            counts, by_view = self._task_counts()
            self._seq += 1
            log = list(self._log)[-log_entries:] if log_entries else []
            skipped = max(0, self._new_log_total - len(log))  # new lines this message cannot carry
            self._new_log.clear()
            self._new_log_total = 0
            self._sent_header = self._header_json()
            self._sent_counts = {name: [self._types[name], n] for name, n in counts.items() if n > 0}
            self._sent_nodes = {i: self._node_look(node, by_view) for i, node in self._nodes.items()}
            snap: dict[str, Any] = {
                "kind": "snapshot", "protocol": PROTOCOL, "seq": self._seq, "now": _r(self._clock()),
                "final": final, "run": self._sent_header, "counts": self._sent_counts, "graph": self._graph_json(),
                "nodes": {i: self._node_json(node, by_view) for i, node in self._nodes.items()},
                "log": log, "skipped": skipped,
            }
            if final:
                snap["details"] = {i: self._detail_json(n.run, 20) for i, n in self._nodes.items() if n.run is not None}
            return snap

    def detail(self, node_or_run_id: str) -> dict[str, Any] | None:
        """The detail panel of a node or run: state, timing, attempts, cache, logs, traceback."""
        with self._lock:
            self._drain()
            node = self._nodes.get(node_or_run_id)
            if node is not None and node.run is None:  # a group: its counts and runs, failed first
                members = [r for r in self._runs.values() if self._view_of[r.id] == node.id
                           and (r.kind == "task") == (not node.id.startswith("f:"))]
                counts = Counter(r.state.name if r.state else "Pending" for r in members)
                members.sort(key=_failed_first)
                return {"id": node.id, "kind": "group", "name": node.label, "total": len(members),
                        "counts": dict(counts), "members": [self._member_json(r) for r in members[:200]]}
            run = node.run if node is not None else self._runs.get(node_or_run_id)
            if run is None:
                if node_or_run_id != self.flow_run_id:
                    return None
                return {**self._header_json(), "kind": "run",
                        "logs": [list(x) for x in self._run_logs.get(self.flow_run_id, [])[-RUN_LOG_LIMIT:]]}
            detail = self._detail_json(run, RUN_LOG_LIMIT)
            if run.kind == "flow":
                inner = [r for r in self._runs.values() if r is not run and self._top_of(r) == run.id]
                detail["counts"] = dict(Counter(r.state.name if r.state else "Pending" for r in inner if r.kind == "task"))
                detail["members"] = [self._member_json(r) for r in sorted(inner, key=_failed_first)[:200]]
            return detail

    def compact(self) -> None:
        """Swap live run records for copies without results or parameters (the run has ended)."""
        with self._lock:
            self._drain()
            if self.compacted:
                return
            copies = copy_runs(list(self._runs.values()))
            self._runs = copies
            self._subflows = [copies[r.id] for r in self._subflows]
            self._changed = {run_id: copies[run_id] for run_id in self._changed}
            for node in self._nodes.values():
                if node.run is not None:
                    node.run = copies[node.run.id]
            if self._root is not None:
                self._root = copy_runs([self._root])[self._root.id]
            self.compacted = True

    def _top_of(self, run: Any) -> str | None:
        """The top-level subflow a run belongs to (None: it runs in the root flow run itself)."""
        if run.kind == "task":
            return self._flows[run.flow_run_id]
        top = self._flows[run.id]
        return None if top == run.id else top

    def _graph_json(self) -> dict[str, Any]:
        self._graph_version += 1
        self._graph_dirty = False
        nodes = [{"id": n.id, "label": n.label, "kind": n.kind} for n in self._nodes.values()]
        return {"v": self._graph_version, "collapsed": self._collapsed, "nodes": nodes,
                "edges": [list(edge) for edge in self._view_edges]}

    def _detail_json(self, run: Any, logs: int) -> dict[str, Any]:
        state = run.state
        name = state.name if state else "Pending"
        cache_key = getattr(run, "cache_key", None)
        detail: dict[str, Any] = {
            "id": run.id, "kind": run.kind, "name": run.name,
            "task": run.task_name if run.kind == "task" else run.flow_name,
            "state": name, "type": str(state.type) if state else "PENDING", "message": state.message if state else None,
            "start": _r(run.start_time), "end": _r(run.end_time), "attempts": run.run_count,
            "cache_key": cache_key, "cache": "hit" if name == "Cached" else "miss" if cache_key else None,
            "logs": [list(line) for line in self._run_logs.get(run.id, [])[-logs:]],
        }
        if state is not None and state.type in _BAD:
            detail["error"] = self._error_text(run)
            data = state.data
            if isinstance(data, (BaseException, str)) and data:
                detail["traceback"] = format_error(data)
        return detail

    def _member_json(self, run: Any) -> dict[str, Any]:
        state = run.state
        out: dict[str, Any] = {"id": run.id, "name": run.name, "s": state.name if state else "Pending",
                               "t": str(state.type) if state else "PENDING"}
        if run.start_time is not None and run.end_time is not None:
            out["d"] = round(run.end_time - run.start_time, 3)
        if state is not None and state.type in _BAD:
            out["err"] = self._error_text(run)
        return out


def _r(timestamp: float | None) -> float | None:
    return None if timestamp is None else round(timestamp, 3)


def _failed_first(run: Any) -> tuple[int, float]:
    state = run.state
    order = 0 if state is not None and state.type in _BAD else 1 if state is not None and state.type == "RUNNING" else 2
    return (order, run.start_time or 0.0)
