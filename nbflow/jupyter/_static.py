"""The monitor as static HTML + SVG: what a notebook shows where widgets are not live.

nbconvert's HTML, GitHub's viewer and a notebook reopened without its kernel cannot run the widget,
so the monitor also writes a plain summary of the finished run into the output. The graph is drawn
with a small layered layout in Python (no ``dot`` binary: it is not pip-installable) and embedded as
an ``<img>`` data URI, which survives the HTML sanitizers of JupyterLab and GitHub.

Pure: works on the JSON snapshot of ``MonitorModel``; imports nothing from Jupyter.
"""

from __future__ import annotations

import base64
import html
import time
from collections import defaultdict
from typing import Any

from nbflow._core.durations import format_duration

__all__ = ["PALETTE", "render_html", "render_svg", "render_text", "layered_layout"]

# Colours of states as [fill, stroke]; by state name first, then by state type. One definition: the
# widget sends it to the browser, and the static SVG uses it.
PALETTE: dict[str, dict[str, list[str]]] = {
    "names": {
        "Retrying": ["#fde68a", "#d97706"],
        "Cached": ["#99f6e4", "#0d9488"],
        "TimedOut": ["#fed7aa", "#ea580c"],
        "NotReady": ["#fee2e2", "#f87171"],
    },
    "types": {
        "SCHEDULED": ["#e0e7ff", "#6366f1"],
        "PENDING": ["#f3f4f6", "#9ca3af"],
        "RUNNING": ["#bfdbfe", "#2563eb"],
        "COMPLETED": ["#bbf7d0", "#16a34a"],
        "FAILED": ["#fecaca", "#dc2626"],
        "CRASHED": ["#f5d0fe", "#a21caf"],
        "CANCELLED": ["#e5e7eb", "#4b5563"],
    },
}

_STATE_ORDER = ["Completed", "Cached", "Failed", "TimedOut", "NotReady", "Crashed", "Cancelled",
                "Running", "Retrying", "Pending", "Scheduled"]
_KNOWN_TYPES = {
    "Completed": "COMPLETED", "Cached": "COMPLETED", "Failed": "FAILED", "TimedOut": "FAILED",
    "NotReady": "FAILED", "Running": "RUNNING", "Retrying": "RUNNING", "Crashed": "CRASHED",
    "Cancelled": "CANCELLED", "Scheduled": "SCHEDULED", "Pending": "PENDING",
}
_FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
_MAX_NODES = 300  # beyond this the picture is unreadable anyway (the live graph collapses at 100)
_TASK_H, _GROUP_H, _GAP_X, _GAP_Y, _PAD = 26, 38, 36, 10, 8
_FONT = "system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif"


def colours(name: str | None, type_: str | None) -> list[str]:
    return PALETTE["names"].get(name or "") or PALETTE["types"].get(type_ or "") or PALETTE["types"]["PENDING"]


def _ordered(names: Any) -> list[str]:
    rank = {name: i for i, name in enumerate(_STATE_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def _look(state: dict[str, Any] | None, types: dict[str, str]) -> tuple[str, str]:
    """The state a node shows: its run's, or for a group the one that matters most."""
    if not state:
        return "Pending", "PENDING"
    if state.get("s"):
        return state["s"], state.get("t", "PENDING")
    counts = {k: v for k, v in (state.get("c") or {}).items() if v > 0}
    by_type: dict[str, int] = defaultdict(int)
    for name, n in counts.items():
        by_type[types.get(name) or _KNOWN_TYPES.get(name, "PENDING")] += n
    total = sum(counts.values())
    for type_, name in (("RUNNING", "Running"), ("CRASHED", "Crashed"), ("FAILED", "Failed"), ("CANCELLED", "Cancelled")):
        if by_type.get(type_):
            return name, type_
    if total and by_type.get("COMPLETED") == total:
        return ("Cached" if counts.get("Cached") == total else "Completed"), "COMPLETED"
    return ("Running", "RUNNING") if by_type.get("COMPLETED") else ("Pending", "PENDING")


def _node_size(node: dict[str, Any]) -> tuple[float, float]:
    chars = min(len(node["label"]), 32) + (7 if node["kind"] == "group" else 0)
    return max(70.0, min(230.0, chars * 6.3 + 22)), float(_TASK_H if node["kind"] == "task" else _GROUP_H)


def layered_layout(
    nodes: list[str], edges: list[tuple[str, str]], sizes: dict[str, tuple[float, float]]
) -> tuple[dict[str, tuple[float, float]], float, float]:
    """Left-to-right layered layout: node centres, width and height.

    Layers are longest paths from the sources; within a layer, nodes are ordered by the mean
    position of their neighbours (a few sweeps), which removes most crossings of pipeline graphs.

    >>> pos, w, h = layered_layout(["a", "b"], [("a", "b")], {"a": (70, 26), "b": (70, 26)})
    >>> pos["a"][0] < pos["b"][0]
    True
    """
    known = set(nodes)
    preds: dict[str, list[str]] = defaultdict(list)
    succs: dict[str, list[str]] = defaultdict(list)
    for u, v in edges:
        if u in known and v in known and u != v:
            preds[v].append(u)
            succs[u].append(v)
    layer: dict[str, int] = {}
    for start in nodes:  # iterative DFS: deep chains must not hit the recursion limit
        if start in layer:
            continue
        stack, on_path = [(start, iter(preds[start]))], {start}
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                on_path.discard(node)
                layer[node] = max((layer[p] + 1 for p in preds[node] if p in layer), default=0)
            elif nxt not in layer and nxt not in on_path:  # on_path: a cycle; ignore that edge
                on_path.add(nxt)
                stack.append((nxt, iter(preds[nxt])))
    columns: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for node in nodes:
        columns[layer[node]].append(node)
    for sweep in range(4):
        forward = sweep % 2 == 0
        order = range(1, len(columns)) if forward else range(len(columns) - 2, -1, -1)
        for i in order:
            neighbour_col = columns[i - 1] if forward else columns[i + 1]
            index = {n: k for k, n in enumerate(neighbour_col)}
            links = preds if forward else succs
            here = {n: k for k, n in enumerate(columns[i])}  # a node without neighbours keeps its place

            def barycentre(n: str, index: dict[str, int] = index, links: dict[str, list[str]] = links,
                           here: dict[str, int] = here) -> float:
                ks = [index[m] for m in links[n] if m in index]
                return sum(ks) / len(ks) if ks else float(here[n])

            columns[i].sort(key=barycentre)
    heights = [sum(sizes[n][1] for n in col) + _GAP_Y * max(0, len(col) - 1) for col in columns]
    total_h = max(heights, default=0.0)
    pos: dict[str, tuple[float, float]] = {}
    x = float(_PAD)
    for col, col_h in zip(columns, heights):
        col_w = max((sizes[n][0] for n in col), default=0.0)
        y = _PAD + (total_h - col_h) / 2
        for n in col:
            h = sizes[n][1]
            pos[n] = (x + col_w / 2, y + h / 2)
            y += h + _GAP_Y
        x += col_w + _GAP_X
    return pos, x - _GAP_X + _PAD, total_h + 2 * _PAD


def render_svg(snapshot: dict[str, Any]) -> str:
    """The task graph of a snapshot as a standalone SVG document ("" when there are no nodes)."""
    graph = snapshot.get("graph") or {}
    nodes = list(graph.get("nodes") or [])[:_MAX_NODES]
    if not nodes:
        return ""
    states = snapshot.get("nodes") or {}
    types = {name: t for name, (t, _n) in (snapshot.get("counts") or {}).items()}
    by_id = {n["id"]: n for n in nodes}
    edges = [(u, v) for u, v in graph.get("edges") or [] if u in by_id and v in by_id]
    sizes = {n["id"]: _node_size(n) for n in nodes}
    pos, width, height = layered_layout(list(by_id), edges, sizes)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="{_FONT}" font-size="11">',
        '<defs><marker id="a" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto"><path d="M0,0L10,5L0,10z" fill="#9ca3af"/></marker></defs>',
        '<g fill="none" stroke="#9ca3af">',
    ]
    for u, v in edges:
        (x1, y1), (x2, y2) = pos[u], pos[v]
        x1 += sizes[u][0] / 2
        x2 -= sizes[v][0] / 2
        mid = (x1 + x2) / 2
        out.append(f'<path d="M{x1:.1f},{y1:.1f}C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}" marker-end="url(#a)"/>')
    out.append("</g>")
    for node in nodes:
        node_id = node["id"]
        cx, cy = pos[node_id]
        w, h = sizes[node_id]
        x, y = cx - w / 2, cy - h / 2
        state = states.get(node_id)
        name, type_ = _look(state, types)
        fill, stroke = colours(name, type_)
        dash = ' stroke-dasharray="4 2"' if name in ("Cached", "NotReady") else ""
        label = node["label"] if len(node["label"]) <= 32 else node["label"][:31] + "…"
        counts = (state or {}).get("c") or {}
        total = sum(counts.values())
        if node["kind"] == "group":
            label = f"{label[:22]} ×{total}"
        tip = f"{node['label']}: {name}" + (f" — {state['err']}" if state and state.get("err") else "")
        out.append(f"<g><title>{html.escape(tip)}</title>")
        if node["kind"] == "flow":
            out.append(f'<rect x="{x + 3:.1f}" y="{y - 3:.1f}" width="{w:.1f}" height="{h:.1f}" rx="2" fill="{fill}" stroke="{stroke}"/>')
        rx = 2 if node["kind"] == "flow" else 6
        out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="{rx}" fill="{fill}" '
                   f'stroke="{stroke}" stroke-width="1.2"{dash}/>')
        ty = cy + 4 if node["kind"] == "task" else y + 15
        out.append(f'<text x="{cx:.1f}" y="{ty:.1f}" text-anchor="middle" fill="#111827">{html.escape(label)}</text>')
        if node["kind"] != "task" and total:
            bx, by, bw = x + 7, y + h - 12, w - 14
            out.append(f'<rect x="{bx:.1f}" y="{by:.1f}" width="{bw:.1f}" height="5" rx="2" fill="#00000014"/>')
            for state_name in _ordered(counts):
                n = counts[state_name]
                if n <= 0:
                    continue
                seg = bw * n / total
                colour = colours(state_name, types.get(state_name) or _KNOWN_TYPES.get(state_name))[1]
                out.append(f'<rect x="{bx:.1f}" y="{by:.1f}" width="{max(seg, 0.5):.1f}" height="5" fill="{colour}"/>')
                bx += seg
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def _elapsed(run: dict[str, Any], now: float | None) -> float | None:
    if run.get("start") is None:
        return None
    end = run.get("end") or now or time.time()
    return max(0.0, end - run["start"])


def render_text(snapshot: dict[str, Any]) -> str:
    """One line for terminals and logs: ``Flow run 'x' (etl): Completed in 3.2 s · 10 tasks: Completed 10``."""
    run = snapshot.get("run") or {}
    counts = snapshot.get("counts") or {}
    total = sum(n for _t, n in counts.values())
    parts = ", ".join(f"{name} {counts[name][1]}" for name in _ordered(counts))
    took = format_duration(_elapsed(run, snapshot.get("now")))
    verb = "in" if run.get("end") is not None else "for"
    line = f"Flow run {run.get('name')!r} ({run.get('flow')}): {run.get('state')}" + (f" {verb} {took}" if took else "")
    return line + (f" · {total} task run{'s' if total != 1 else ''}: {parts}" if total else " · no task runs")


def render_html(snapshot: dict[str, Any], *, failures: int = 10, log_lines: int = 30) -> str:
    """A readable, self-contained summary of a run (inline styles only; no scripts)."""
    run = snapshot.get("run") or {}
    counts = snapshot.get("counts") or {}
    esc = html.escape
    fill, stroke = colours(run.get("state"), run.get("type"))
    total = sum(n for _t, n in counts.values())
    done = sum(n for t, n in counts.values() if t in _FINAL)
    took = format_duration(_elapsed(run, snapshot.get("now")))
    parts = [
        f'<div data-nbflow-static="{esc(str(run.get("id", "")))}" style="font-family:{esc(_FONT)};font-size:12px;'
        'border:1px solid #e5e7eb;border-radius:6px;padding:8px 10px;max-width:100%;box-sizing:border-box">',
        f'<div><span style="display:inline-block;padding:1px 8px;border-radius:10px;border:1px solid {stroke};'
        f'background:{fill};font-weight:600;font-size:11px;color:#111827">{esc(str(run.get("state", "")))}</span> '
        f'<b>{esc(str(run.get("flow", "")))}</b> · {esc(str(run.get("name", "")))}'
        f'<span style="color:#6b7280"> · {esc(took)}</span></div>',
    ]
    if total:
        parts.append('<div style="display:flex;height:6px;border-radius:3px;overflow:hidden;margin:8px 0 6px;background:#f3f4f6">')
        for name in _ordered(counts):
            type_, n = counts[name]
            parts.append(f'<div title="{esc(name)}: {n}" style="flex-grow:{n};background:{colours(name, type_)[1]}"></div>')
        parts.append("</div><div>")
        chips = []
        for name in _ordered(counts):
            type_, n = counts[name]
            chips.append(f'<span style="color:{colours(name, type_)[1]}">●</span> {esc(name)} {n}')
        parts.append(" &nbsp; ".join(chips))
        parts.append(f' &nbsp; <span style="color:#6b7280">{done}/{total} task runs finished</span></div>')
    svg = render_svg(snapshot)
    if svg:
        data = base64.b64encode(svg.encode()).decode()
        parts.append(f'<div style="margin-top:8px;overflow:auto;max-height:480px"><img alt="task graph" '
                     f'style="max-width:100%" src="data:image/svg+xml;base64,{data}"/></div>')
    bad = [
        (node_id, state) for node_id, state in (snapshot.get("nodes") or {}).items()
        if state.get("err") and state.get("t") in ("FAILED", "CRASHED")
    ]
    if bad:
        labels = {n["id"]: n["label"] for n in (snapshot.get("graph") or {}).get("nodes") or []}
        details = snapshot.get("details") or {}
        parts.append(f"<details open><summary>Failed ({len(bad)})</summary>")
        for node_id, state in bad[:failures]:
            tb = (details.get(node_id) or {}).get("traceback") or state["err"]
            parts.append(f'<div style="margin-top:4px"><b>{esc(labels.get(node_id, node_id))}</b> · {esc(state["s"])}'
                         f'<pre style="white-space:pre-wrap;font-size:11px;margin:2px 0;color:#b91c1c">{esc(tb[-3000:])}</pre></div>')
        parts.append("</details>")
    log = (snapshot.get("log") or [])[-log_lines:]
    if log:
        rows = []
        for _n, t, _run, name, _kind, level, message in log:
            stamp = time.strftime("%H:%M:%S", time.localtime(t)) + f".{int((t % 1) * 1000):03d}"
            colour = "#b91c1c" if level >= 40 else "#b45309" if level >= 30 else "inherit"
            rows.append(f'<div><span style="color:#6b7280">{stamp}</span> <b>{esc(name)}</b> '
                        f'<span style="color:{colour}">{esc(message)}</span></div>')
        parts.append(f'<details><summary>State log (last {len(log)})</summary><div style="font-family:monospace;'
                     f'font-size:11px;white-space:pre-wrap">{"".join(rows)}</div></details>')
    parts.append("</div>")
    return "".join(parts)
