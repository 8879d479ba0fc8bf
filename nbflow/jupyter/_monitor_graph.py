"""The monitor's view graph: which runs belong to the watched flow run, and the nodes and edges shown.

One node per task run and subflow run until the graph has ``collapse_at`` nodes; from then on one
node per task (``task_key``) or subflow (flow name), for good. Tasks that run inside a subflow are
shown on the subflow's node. Registering runs is done in C-level passes (``map``/``compress``/
``zip``): a 10,000-task map arrives in a few batches of thousands.

Pure: no Jupyter imports. Not thread-safe by itself: ``MonitorModel`` calls it under its lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import partial
from itertools import chain, compress, repeat
from operator import add, attrgetter, eq, is_, not_
from typing import Any

from nbflow._core.events import EdgesAdded

__all__ = ["COLLAPSE_AT", "Node", "ViewGraph"]

COLLAPSE_AT = 100
"""Past this many nodes the graph shows one node per task with counts: readable, and a small DOM."""

PENDING_EDGES_LIMIT = 100_000
"""Edges kept while one of their ends is not known yet (events of another flow run, or out of order)."""

_IS_NONE = partial(is_, None)
_IS_TASK = partial(eq, "task")
_ID, _KIND = attrgetter("id"), attrgetter("kind")
_FLOW_RUN_ID, _TASK_KEY = attrgetter("flow_run_id"), attrgetter("task_key")
_UPSTREAMS, _DOWNSTREAM, _EDGE_FLOW = attrgetter("upstream_ids"), attrgetter("downstream_id"), attrgetter("flow_run_id")


class Node:
    """A node of the view graph: one run, or (collapsed) every run of one task or subflow."""

    __slots__ = ("id", "label", "kind", "run")

    def __init__(self, id: str, label: str, kind: str, run: Any) -> None:
        self.id, self.label, self.kind, self.run = id, label, kind, run  # kind: task, flow or group


class ViewGraph:
    """The runs of one flow run's tree (its tasks, its subflows and theirs) and the graph that shows them.

    ``view_of`` maps every run to the node that shows it: the run's own node, its top-level
    subflow's node, or (collapsed) its task's or flow's group node.
    """

    def __init__(self, root_id: str, collapse_at: int = COLLAPSE_AT) -> None:
        self.root_id = root_id
        self.collapse_at = collapse_at
        self.root: Any = None
        self.flows: dict[str | None, str | None] = {root_id: None}  # flow run -> its top-level subflow
        self.runs: dict[str, Any] = {}  # every task run and subflow run of the tree (``replace_runs``: a Mapping)
        self.view_of: dict[str, str] = {}
        self.nodes: dict[str, Node] = {}
        self.subflows: list[Any] = []  # top-level subflow runs
        self.collapsed = False
        self.dirty = False  # nodes or edges changed since the last ``json()``
        self._version = 0
        self._edges: list[tuple[str, str]] = []
        self._pending_edges: list[tuple[str, str]] = []  # an end not seen yet
        self._view_edges: dict[tuple[str, str], None] = {}  # an ordered set

    def owns(self, run_id: str) -> bool:
        """Whether a run is the root or one of its tree's runs."""
        return run_id in self.runs or run_id == self.root_id

    # --- growing ----------------------------------------------------------------------------------
    def add_runs(self, created: list[Any]) -> tuple[list[str], list[str]]:
        """Register new runs: subflows one by one (few), tasks in C-level passes (many).

        Returns the ids of the task runs added and the node that shows each. Runs of other flow
        runs (on the same bus) are left out. May collapse the graph: check ``collapsed``.
        """
        flows, runs = self.flows, self.runs
        kinds = list(map(_IS_TASK, map(_KIND, created)))
        for run in compress(created, map(not_, kinds)):  # flow runs, in order: a subflow before its tasks
            if run.id == self.root_id:
                self.root = run
            elif run.parent_flow_run_id in flows and run.id not in runs:
                top = flows[run.parent_flow_run_id]
                flows[run.id] = top or run.id
                runs[run.id] = run
                if top is None:
                    self.subflows.append(run)
                    self._add_node(run)
                else:
                    self.view_of[run.id] = self.view_of[top]
        tasks = list(compress(created, kinds))
        if not tasks:
            return [], []
        fids = list(map(_FLOW_RUN_ID, tasks))
        mine = list(map(flows.__contains__, fids))
        if not all(mine):  # another flow run's tasks on the same bus
            tasks, fids = list(compress(tasks, mine)), list(compress(fids, mine))
        tops = list(map(flows.get, fids))
        at_root = list(map(_IS_NONE, tops))
        inner = list(map(not_, at_root))
        top_level = list(compress(tasks, at_root))
        if top_level and not self.collapsed and len(self.nodes) + len(top_level) > self.collapse_at:
            self._collapse()
        if self.collapsed:
            views_top = list(map(add, repeat("k:"), map(_TASK_KEY, top_level)))
            for view_id in set(views_top).difference(self.nodes):
                run = top_level[views_top.index(view_id)]
                self.nodes[view_id] = Node(view_id, run.task_name, "group", None)
                self.dirty = True
        else:
            for run in top_level:
                self._add_node(run)
            views_top = list(map(_ID, top_level))
        views_inner = list(map(self.view_of.__getitem__, compress(tops, inner)))
        # Put each task's view back in the order of `tasks`.
        it_top, it_inner = iter(views_top), iter(views_inner)
        views = [next(it_top) if root else next(it_inner) for root in at_root] if views_inner else views_top
        ids = list(map(_ID, tasks))
        runs.update(zip(ids, tasks))
        self.view_of.update(zip(ids, views))
        return ids, views

    def _add_node(self, run: Any) -> None:
        """Put a top-level run on the graph (collapsing it into groups once it is too big)."""
        if not self.collapsed and len(self.nodes) >= self.collapse_at:
            self._collapse()
        if self.collapsed:
            view_id = ("f:" + run.flow_name) if run.kind == "flow" else ("k:" + run.task_key)
            if view_id not in self.nodes:
                label = run.flow_name if run.kind == "flow" else run.task_name
                self.nodes[view_id] = Node(view_id, label, "group", None)
                self.dirty = True
        else:
            view_id = run.id
            # A subflow's run name is random ("crimson-albatross"); its flow name says what it is.
            label = run.flow_name if run.kind == "flow" else run.name
            self.nodes[view_id] = Node(view_id, label, run.kind, run)
            self.dirty = True
        self.view_of[run.id] = view_id

    def _collapse(self) -> None:
        """Switch to one node per task, for good: a graph that flips back and forth is unreadable."""
        self.collapsed = True
        self.nodes, self._view_edges = {}, {}
        flows, view_of = self.flows, self.view_of
        for run in self.runs.values():  # top-level runs first: inner runs take their view
            if run.kind == "flow" and flows.get(run.id) == run.id or run.kind == "task" and flows[run.flow_run_id] is None:
                self._add_node(run)
        for run in self.runs.values():
            top = flows[run.flow_run_id] if run.kind == "task" else flows.get(run.id)
            if top is not None and top != run.id:
                view_of[run.id] = view_of[top]
        for up, down in self._edges:
            self._add_view_edge(view_of[up], view_of[down])
        self.dirty = True

    def add_edges(self, events: list[EdgesAdded]) -> None:
        """Add data dependencies; edges of other flow runs on the same bus never concern this graph."""
        if events:
            events = list(compress(events, map(self.flows.__contains__, map(_EDGE_FLOW, events))))
        if not events and not self._pending_edges:
            return
        view_of = self.view_of
        upstreams = list(map(_UPSTREAMS, events))
        ups = list(chain.from_iterable(upstreams))
        downs = list(chain.from_iterable(map(repeat, map(_DOWNSTREAM, events), map(len, upstreams))))
        pending, self._pending_edges = self._pending_edges, []
        if pending:
            ups[:0] = [u for u, _ in pending]
            downs[:0] = [d for _, d in pending]
        known = list(map(all, zip(map(view_of.__contains__, ups), map(view_of.__contains__, downs))))
        if not all(known):  # an end not announced yet: try again with the next batch
            lost = list(map(not_, known))
            self._pending_edges = list(zip(compress(ups, lost), compress(downs, lost)))[-PENDING_EDGES_LIMIT:]
            ups, downs = list(compress(ups, known)), list(compress(downs, known))
        self._edges.extend(zip(ups, downs))
        for key in set(zip(map(view_of.__getitem__, ups), map(view_of.__getitem__, downs))):
            self._add_view_edge(*key)

    def _add_view_edge(self, u: str, v: str) -> None:
        if u != v and (u, v) not in self._view_edges:
            self._view_edges[(u, v)] = None
            self.dirty = True

    def replace_runs(self, copies: Mapping[str, Any]) -> None:
        """Swap the run records for ``copies`` (same ids): the live ones hold results and parameters."""
        self.runs = copies  # type: ignore[assignment]  # read-only from now on: the run has ended
        self.subflows = [copies[r.id] for r in self.subflows]
        for node in self.nodes.values():
            if node.run is not None:
                node.run = copies[node.run.id]

    # --- reading ----------------------------------------------------------------------------------
    def top_of(self, run: Any) -> str | None:
        """The top-level subflow a run belongs to (None: it runs in the root flow run itself)."""
        if run.kind == "task":
            return self.flows[run.flow_run_id]
        top = self.flows[run.id]
        return None if top == run.id else top

    def members(self, node: Node) -> Iterable[Any]:
        """The runs a group node shows: task runs of its task, or subflow runs of its flow."""
        tasks = not node.id.startswith("f:")
        view_of = self.view_of
        return [r for r in self.runs.values() if view_of[r.id] == node.id and (r.kind == "task") == tasks]

    def json(self) -> dict[str, Any]:
        """The graph's structure as the front-end takes it; each call is a new version."""
        self._version += 1
        self.dirty = False
        nodes = [{"id": n.id, "label": n.label, "kind": n.kind} for n in self.nodes.values()]
        return {"v": self._version, "collapsed": self.collapsed, "nodes": nodes,
                "edges": [list(edge) for edge in self._view_edges]}
