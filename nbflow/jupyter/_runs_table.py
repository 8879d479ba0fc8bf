"""``%flow runs``: the run history as an HTML table, with a picker that opens a run's monitor.

The table is plain HTML (it stays readable in a saved notebook, nbconvert and GitHub); the picker is
a small ipywidgets bar under it, for live kernels.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nbflow._core.durations import format_duration

__all__ = ["RunRow", "row_of", "render_table", "monitor_picker"]

SHORT_ID = 8
"""Characters of a run id shown; ``%flow monitor`` and ``%flow rerun`` accept such a prefix."""

# [fill, stroke] by state name, then by type: the monitor's palette, repeated here so that this
# module does not import the widget's modules.
_NAMES = {"Retrying": ["#fde68a", "#d97706"], "Cached": ["#99f6e4", "#0d9488"],
          "TimedOut": ["#fed7aa", "#ea580c"], "NotReady": ["#fee2e2", "#f87171"]}
_TYPES = {"SCHEDULED": ["#e0e7ff", "#6366f1"], "PENDING": ["#f3f4f6", "#9ca3af"],
          "RUNNING": ["#bfdbfe", "#2563eb"], "COMPLETED": ["#bbf7d0", "#16a34a"],
          "FAILED": ["#fecaca", "#dc2626"], "CRASHED": ["#f5d0fe", "#a21caf"],
          "CANCELLED": ["#e5e7eb", "#4b5563"]}


@dataclass(frozen=True)
class RunRow:
    """One flow run as the table shows it, from a live record or a stored one."""

    id: str
    name: str
    flow_name: str
    state: str
    state_type: str
    message: str | None
    start: float | None
    end: float | None
    rerun_of: str | None = None

    @property
    def short_id(self) -> str:
        return self.id[:SHORT_ID]

    @property
    def finished(self) -> bool:
        return self.state_type in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def row_of(run: Any) -> RunRow:
    """A ``RunRow`` of a live ``FlowRun`` or of a stored ``FlowRunRecord`` (``nbflow.runs``)."""
    state = run.state
    if state is None:
        name, type_, message = "Pending", "PENDING", None
    else:  # a State, or a stored StateRecord: both have these three
        name, type_, message = state.name, str(getattr(state.type, "value", state.type)), state.message
    return RunRow(
        id=run.id, name=run.name, flow_name=run.flow_name, state=name, state_type=type_, message=message,
        start=_seconds(run.start_time), end=_seconds(run.end_time), rerun_of=run.rerun_of,
    )


def _seconds(moment: float | datetime | None) -> float | None:
    """A timestamp, from the engine's seconds or a stored record's datetime."""
    return moment.timestamp() if isinstance(moment, datetime) else moment


def _duration(row: RunRow, now: float) -> str:
    if row.start is None:
        return ""
    text = format_duration(max(0.0, (row.end if row.end is not None else now) - row.start))
    return text if row.finished else text + " …"


def _started(start: float | None, now: float) -> str:
    if start is None:
        return ""
    fmt = "%H:%M:%S" if time.localtime(start)[:3] == time.localtime(now)[:3] else "%Y-%m-%d %H:%M"
    return time.strftime(fmt, time.localtime(start))


def _pill(row: RunRow) -> str:
    fill, stroke = _NAMES.get(row.state) or _TYPES.get(row.state_type) or _TYPES["PENDING"]
    title = f' title="{html.escape(row.message)}"' if row.message else ""
    return (f'<span{title} style="background:{fill};border:1px solid {stroke};border-radius:9px;'
            f'padding:0 7px;white-space:nowrap">{html.escape(row.state)}</span>')


def render_table(rows: Iterable[RunRow], flow_name: str | None = None, now: float | None = None) -> str:
    """The run history as one HTML table, newest first."""
    now = time.time() if now is None else now
    rows = list(rows)
    what = f" of flow {html.escape(flow_name)!s}" if flow_name else ""
    if not rows:
        return f"<p><em>No flow runs{what} yet.</em></p>"
    cell = 'style="padding:2px 8px;text-align:left"'
    head = "".join(f"<th {cell}>{h}</th>" for h in ("Flow run", "Flow", "State", "Started", "Duration", "Open"))
    body = []
    for row in rows:
        rerun = f' <small title="rerun of {html.escape(row.rerun_of)}">(rerun)</small>' if row.rerun_of else ""
        body.append(
            "<tr>"
            f"<td {cell}><b>{html.escape(row.name)}</b>{rerun} <code style=\"opacity:.7\">{row.short_id}</code></td>"
            f"<td {cell}>{html.escape(row.flow_name)}</td>"
            f"<td {cell}>{_pill(row)}</td>"
            f"<td {cell}>{_started(row.start, now)}</td>"
            f"<td {cell} align=\"right\">{_duration(row, now)}</td>"
            f"<td {cell}><code>%flow monitor {row.short_id}</code></td>"
            "</tr>"
        )
    caption = f'<caption style="text-align:left;font-weight:600">{len(rows)} latest flow run{"s" if len(rows) != 1 else ""}{what}</caption>'
    return (f'<table class="nbflow-runs" style="border-collapse:collapse;font-size:13px">{caption}'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def render_text(rows: Iterable[RunRow], now: float | None = None) -> str:
    """The same table as plain text (terminals, ``text/plain``)."""
    now = time.time() if now is None else now
    lines = [f"{r.short_id}  {r.name:<24} {r.flow_name:<20} {r.state:<10} {_duration(r, now)}" for r in rows]
    return "\n".join(lines) or "No flow runs yet."


class RunsTable:
    """What ``%flow runs`` displays: the HTML table (and plain text where HTML is not shown)."""

    def __init__(self, rows: Iterable[RunRow], flow_name: str | None = None) -> None:
        self.rows = list(rows)
        self.flow_name = flow_name

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        return {"text/html": render_table(self.rows, self.flow_name), "text/plain": render_text(self.rows)}


def monitor_picker(rows: list[RunRow], open_monitor: Callable[[str], Any]) -> Any:
    """A live bar under the table: pick a run, press the button, its monitor opens below."""
    try:
        import ipywidgets as w
    except ImportError:  # the table says how to open one with %flow monitor
        return None
    if not rows:
        return None
    picker = w.Dropdown(options=[(f"{r.name} · {r.flow_name} · {r.state} · {r.short_id}", r.id) for r in rows],
                        description="Run", layout=w.Layout(width="auto"))
    button = w.Button(description="Open monitor", icon="eye")
    out = w.Output()

    def clicked(_button: Any) -> None:
        out.clear_output()
        with out:
            open_monitor(picker.value)

    button.on_click(clicked)
    return w.VBox([w.HBox([picker, button]), out])
