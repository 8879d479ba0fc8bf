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

The parts: ``ViewGraph`` (_monitor_graph.py) knows the runs and the nodes and edges shown,
``StateLog`` (_monitor_log.py) the state log; this module counts task runs by state and turns it
all into the messages the front-end takes (deltas, keyframes, the final picture, detail panels), as
nbflow/jupyter/protocol.json describes them.

Results are never read: a completed state's ``data`` is not touched, and when the run ends the live
run records (which hold results and parameters) are swapped for small copies (``compact``).
Recorded runs (rows of the run store) are fed as events too (see _monitor_store.py).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from functools import partial
from itertools import compress, repeat, starmap
from operator import attrgetter, is_
from typing import Any

from nbflow._core.events import EdgesAdded, Event, LogEmitted, RunCreated, StateChanged
from nbflow._core.records import FlowRun
from nbflow.jupyter._monitor_graph import COLLAPSE_AT, Node, ViewGraph
from nbflow.jupyter._monitor_log import BAD, LOG_LIMIT, QUIET, RUN_LOG_LIMIT, WIRE_LOG_LIMIT, StateLog
from nbflow.jupyter._monitor_records import CompactRuns, RunRecord, error_text, format_error
from nbflow.jupyter._protocol import VERSION

__all__ = ["MonitorModel", "COLLAPSE_AT", "LOG_LIMIT", "PROTOCOL", "WIRE_LOG_LIMIT"]

PROTOCOL = VERSION
"""Version of the JSON the model produces: the version of protocol.json, which describes every message."""

DETAIL_MEMBERS = 200
"""Runs listed in the detail panel of a group or subflow node (failed and running first)."""

_FINAL = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})  # StateType is a str: both match

# C-level helpers for the batch passes.
_IS_CREATED, _IS_STATE, _IS_LOG, _IS_EDGE = (partial(is_, c) for c in (RunCreated, StateChanged, LogEmitted, EdgesAdded))
_RUN, _STATE = attrgetter("run"), attrgetter("state")
_RUN_ID, _STATE_TYPE, _CLOSING_AT = attrgetter("run.id"), attrgetter("state.type"), attrgetter("closing_at")


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
        self._clock = clock
        self._lock = threading.Lock()
        self._queue: deque[Event] = deque()
        self.feed: Callable[[Event], None] = self._queue.append
        """Subscribe this to the bus: records one event, from any thread, for the cost of an append."""
        self._graph = ViewGraph(flow_run_id, collapse_at)
        self._log = StateLog(log_limit)
        # Task runs by state, kept as counts in minus counts out (Counter.update is a C loop;
        # Counter.subtract is not), overall and per node. ``_counted``: the state each run is in.
        self._counted: dict[str, str] = {}
        self._in: Counter[str] = Counter()
        self._out: Counter[str] = Counter()
        self._in_by_view: Counter[tuple[str, str]] = Counter()
        self._out_by_view: Counter[tuple[str, str]] = Counter()
        self._changed: dict[str, Any] = {}  # task runs whose state changed since the last count
        self._types: dict[str, str] = {"Pending": "PENDING"}
        self._error_texts: dict[str, str] = {}
        self._seq = 0
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

    @property
    def collapse_at(self) -> int:
        return self._graph.collapse_at

    @property
    def collapsed(self) -> bool:
        return self._graph.collapsed

    # --- applying a batch (caller holds the lock) -------------------------------------------------
    def _drain(self) -> None:
        queue = self._queue
        count = len(queue)
        if not count:
            return
        batch = list(starmap(queue.popleft, repeat((), count)))
        classes = list(map(type, batch))
        graph = self._graph
        created = list(map(_RUN, compress(batch, map(_IS_CREATED, classes))))
        if created:
            collapsed = graph.collapsed
            ids, views = graph.add_runs(created)
            if graph.collapsed and not collapsed:
                self._regroup()
            if ids:
                self._counted.update(zip(ids, repeat("Pending")))
                self._in["Pending"] += len(ids)
                self._in_by_view.update(zip(views, repeat("Pending")))
        graph.add_edges(list(compress(batch, map(_IS_EDGE, classes))))
        logs: list[LogEmitted] = list(compress(batch, map(_IS_LOG, classes)))  # type: ignore[arg-type]
        if logs:
            self._log.keep_run_lines(logs, graph.owns)
        states = list(compress(batch, map(_IS_STATE, classes)))
        if states:  # the task runs to count again; their state is read from the run when counting
            changed = dict(zip(map(_RUN_ID, states), map(_RUN, states)))
            counted = self._counted
            self._changed.update(compress(changed.items(), map(counted.__contains__, changed)))
        # An entry per log line and per transition that is not QUIET, and one more per final state
        # that stands for its run's closing line ("Finished in state ...", see StateChanged).
        shown = (len(logs) + len(states) - sum(map(QUIET.__contains__, map(_STATE_TYPE, states)))
                 + len(states) - list(map(_CLOSING_AT, states)).count(None))
        if shown:
            self._log.add_tail(batch, classes, shown, graph.owns)

    def _regroup(self) -> None:
        """The graph just collapsed: count task runs by their new nodes, and send every node anew."""
        view_of, counted = self._graph.view_of, self._counted
        self._in_by_view = Counter(zip(map(view_of.__getitem__, counted), counted.values()))
        self._out_by_view = Counter()
        self._sent_nodes = {}

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
            views = list(map(self._graph.view_of.__getitem__, ids))
            self._out.update(old)
            self._in.update(new)
            self._out_by_view.update(zip(views, old))
            self._in_by_view.update(zip(views, new))
            self._counted.update(zip(ids, new))
        return self._in - self._out, self._in_by_view - self._out_by_view

    def _header_json(self) -> dict[str, Any]:
        root = self._graph.root
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

    def _node_json(self, node: Node, by_view: Counter[tuple[str, str]]) -> dict[str, Any]:
        run = node.run
        if run is None:
            if node.id.startswith("f:"):  # subflow runs of one flow, by their own state
                view_of = self._graph.view_of
                counts = Counter(_state_name(r) for r in self._graph.subflows if view_of[r.id] == node.id)
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
        if state is not None and state.type in BAD:
            out["err"] = self._error_text(run)
        if node.kind == "flow":
            out["c"] = {name: n for (view, name), n in by_view.items() if view == node.id and n > 0}
        return out

    def _node_look(self, node: Node, by_view: Counter[tuple[str, str]]) -> Any:
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
            root = self._graph.root
            return root is not None and root.state is not None and root.state.type in _FINAL

    def counts(self) -> dict[str, int]:
        """Task runs by state name (subflow tasks included)."""
        with self._lock:
            self._drain()
            return {name: n for name, n in self._task_counts()[0].items() if n > 0}

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
            if self._graph.dirty:
                delta["graph"] = self._graph.json()
            nodes = {}
            for node_id, node in self._graph.nodes.items():
                look = self._node_look(node, by_view)
                if self._sent_nodes.get(node_id) != look:
                    self._sent_nodes[node_id] = look
                    nodes[node_id] = self._node_json(node, by_view)
            if nodes:
                delta["nodes"] = nodes
            if self._log.unsent:
                delta["log"], skipped = self._log.take_new()
                if skipped:
                    delta["skipped"] = skipped
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
            log, skipped = self._log.take_latest(log_entries)  # new lines this message cannot carry: skipped
            nodes = self._graph.nodes
            self._sent_header = self._header_json()
            self._sent_counts = {name: [self._types[name], n] for name, n in counts.items() if n > 0}
            self._sent_nodes = {i: self._node_look(node, by_view) for i, node in nodes.items()}
            snap: dict[str, Any] = {
                "kind": "snapshot", "protocol": PROTOCOL, "seq": self._seq, "now": _r(self._clock()),
                "final": final, "run": self._sent_header, "counts": self._sent_counts, "graph": self._graph.json(),
                "nodes": {i: self._node_json(node, by_view) for i, node in nodes.items()},
                "log": log, "skipped": skipped,
            }
            if final:
                snap["details"] = {i: self._detail_json(n.run, 20) for i, n in nodes.items() if n.run is not None}
            return snap

    def detail(self, node_or_run_id: str) -> dict[str, Any] | None:
        """The detail panel of a node or run: state, timing, attempts, cache, logs, traceback."""
        with self._lock:
            self._drain()
            graph = self._graph
            node = graph.nodes.get(node_or_run_id)
            if node is not None and node.run is None:  # a group: its counts and runs, failed first
                members = sorted(graph.members(node), key=_failed_first)
                return {"id": node.id, "kind": "group", "name": node.label, "total": len(members),
                        "counts": dict(Counter(map(_state_name, members))),
                        "members": [self._member_json(r) for r in members[:DETAIL_MEMBERS]]}
            run = node.run if node is not None else graph.runs.get(node_or_run_id)
            if run is None:
                if node_or_run_id != self.flow_run_id:
                    return None
                return {**self._header_json(), "kind": "run", "logs": self._log.run_lines(self.flow_run_id, RUN_LOG_LIMIT)}
            detail = self._detail_json(run, RUN_LOG_LIMIT)
            if run.kind == "flow":
                inner = [r for r in graph.runs.values() if r is not run and graph.top_of(r) == run.id]
                detail["counts"] = dict(Counter(_state_name(r) for r in inner if r.kind == "task"))
                detail["members"] = [self._member_json(r) for r in sorted(inner, key=_failed_first)[:DETAIL_MEMBERS]]
            return detail

    def compact(self) -> None:
        """Swap live run records for copies without results or parameters (the run has ended)."""
        with self._lock:
            self._drain()
            if self.compacted:
                return
            graph = self._graph
            copies = CompactRuns(list(graph.runs.values()))
            graph.replace_runs(copies)
            self._changed = {run_id: copies[run_id] for run_id in self._changed}
            if graph.root is not None:
                graph.root = RunRecord.copy_of(graph.root)
            self._log.compact()
            self.compacted = True

    def _detail_json(self, run: Any, logs: int) -> dict[str, Any]:
        state = run.state
        name = _state_name(run)
        cache_key = getattr(run, "cache_key", None)
        detail: dict[str, Any] = {
            "id": run.id, "kind": run.kind, "name": run.name,
            "task": run.task_name if run.kind == "task" else run.flow_name,
            "state": name, "type": str(state.type) if state else "PENDING", "message": state.message if state else None,
            "start": _r(run.start_time), "end": _r(run.end_time), "attempts": run.run_count,
            "cache_key": cache_key, "cache": "hit" if name == "Cached" else "miss" if cache_key else None,
            "logs": self._log.run_lines(run.id, logs),
        }
        if state is not None and state.type in BAD:
            detail["error"] = self._error_text(run)
            data = state.data
            if isinstance(data, (BaseException, str)) and data:
                detail["traceback"] = format_error(data)
        return detail

    def _member_json(self, run: Any) -> dict[str, Any]:
        state = run.state
        out: dict[str, Any] = {"id": run.id, "name": run.name, "s": _state_name(run),
                               "t": str(state.type) if state else "PENDING"}
        if run.start_time is not None and run.end_time is not None:
            out["d"] = round(run.end_time - run.start_time, 3)
        if state is not None and state.type in BAD:
            out["err"] = self._error_text(run)
        return out


def _r(timestamp: float | None) -> float | None:
    return None if timestamp is None else round(timestamp, 3)


def _state_name(run: Any) -> str:
    return run.state.name if run.state else "Pending"


def _failed_first(run: Any) -> tuple[int, float]:
    state = run.state
    order = 0 if state is not None and state.type in BAD else 1 if state is not None and state.type == "RUNNING" else 2
    return (order, run.start_time or 0.0)
